"""Run the agent from a config file until SIGTERM or SIGINT (the CLI and ``python -m`` entry).

``python -m plantstream.edge --config edge.yaml`` does what ``plantstream edge --config`` does
without loading the server's packages: it starts in a fraction of the time on a small box.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from plantstream.errors import PlantstreamError


def run_agent(config_path: Path, *, log_level: str = "INFO") -> None:
    """Validate, then run until a stop signal; raises ``ConfigError`` for a bad config or key."""
    from plantstream.edge.agent import Agent
    from plantstream.edge.config import load_config, resolve_key
    from plantstream.edge.logs import configure

    config = load_config(config_path)
    key = resolve_key(config.destination)
    configure(log_level)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Agent(config, key).run(stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m plantstream.edge", description=__doc__)
    parser.add_argument("--config", "-c", type=Path, required=True)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    try:
        run_agent(args.config, log_level=args.log_level)
    except PlantstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
