"""``plantstream demo``: the whole platform on embedded servers with a simulated plant."""

from plantstream.demo.options import DemoOptions
from plantstream.demo.runner import run_demo

__all__ = ["DemoOptions", "run_demo"]
