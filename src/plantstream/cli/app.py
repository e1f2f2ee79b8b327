"""``plantstream``: the root command and its sub-commands, wired in one place."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from plantstream.errors import PlantstreamError

app = typer.Typer(
    name="plantstream",
    help="Secure industrial sensor data: ingest, stream, store, detect, dashboard.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)


def _register() -> None:
    from plantstream.cli import (
        db,
        demo,
        detect,
        edge,
        evaluate,
        import_cmd,
        keys,
        machine_models,
        model,
        serve,
        services,
        simulate,
    )

    app.add_typer(db.app, name="db")
    app.add_typer(services.app, name="services")
    app.add_typer(keys.app, name="keys")
    app.add_typer(detect.app, name="detect")
    detect.app.add_typer(machine_models.app, name="machine")
    app.add_typer(edge.app, name="edge")
    app.add_typer(model.app, name="model")
    app.command("serve")(serve.serve)
    app.command("simulate")(simulate.simulate)
    app.command("demo")(demo.demo)
    app.command("evaluate")(evaluate.evaluate)
    app.command("import")(import_cmd.import_files)


_register()


def main() -> None:
    """Entry point: run the app and turn our own errors into one clean line and exit 2."""
    try:
        app()
    except PlantstreamError as exc:
        err_console.print(f"[red]error:[/red] {exc}", soft_wrap=True)  # one line for scripts
        sys.exit(2)
