"""``plantstream edge``: run the plant-side agent, check its config, browse an OPC UA server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    help="The plant-side collector (OPC UA, Modbus) with store-and-forward to plantstream.",
    invoke_without_command=True,
)
console = Console()
err = Console(stderr=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="the edge.yaml to use", show_default=False)
]


@app.callback()
def edge(
    ctx: typer.Context,
    config: ConfigOption = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "INFO",
) -> None:
    """Run the agent with --config (until SIGTERM or Ctrl-C), or one of the commands below."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        err.print("give --config edge.yaml (or a command: check, browse)")
        raise typer.Exit(2)
    from plantstream.edge.run import run_agent

    run_agent(config, log_level=log_level)


@app.command()
def check(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Argument(help="the edge.yaml to check (or --config before check)")
    ] = None,
) -> None:
    """Validate a config without running it: errors with file:line:column, then warnings."""
    from plantstream.edge import load_config, warnings_for

    path = config or (ctx.parent.params.get("config") if ctx.parent else None)
    if path is None:
        err.print("give the config to check: plantstream edge check edge.yaml")
        raise typer.Exit(2)
    from plantstream.edge.opcua_security import check_files

    settings = load_config(path)
    for note in warnings_for(settings):
        err.print(f"warning: {note}", markup=False, highlight=False)
    for problem in check_files(settings):  # here: maybe checked on another machine than its own
        err.print(f"warning: {problem} (the agent will not start)", markup=False, highlight=False)
    signals = sum(len(s.signals) for s in settings.sources)
    console.print(f"ok: {len(settings.sources)} sources, {signals} signals", highlight=False)


@app.command()
def browse(
    endpoint: Annotated[str, typer.Argument(help="opc.tcp://host:port/path")],
    max_depth: Annotated[int, typer.Option("--max-depth", min=1)] = 6,
) -> None:
    """List an OPC UA server's variables as a config skeleton (printed as YAML)."""
    import asyncio

    from plantstream.edge.browse import browse as run_browse

    console.print(
        asyncio.run(run_browse(endpoint, max_depth=max_depth)), markup=False, highlight=False
    )
