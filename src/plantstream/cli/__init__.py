"""The ``plantstream`` command line."""

from plantstream.cli.app import app, main

__all__ = ["app", "main"]
