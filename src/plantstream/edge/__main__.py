"""``python -m plantstream.edge --config edge.yaml``: the agent without the server's imports."""

from plantstream.edge.run import main

main()
