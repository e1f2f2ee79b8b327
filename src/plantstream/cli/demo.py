"""``plantstream demo``: the README's first command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from plantstream.demo import DemoOptions, run_demo

console = Console()


def demo(
    duration: Annotated[float, typer.Option("--duration", min=5, help="seconds to run")] = 60,
    facilities: Annotated[int, typer.Option("--facilities", min=1, max=50)] = 2,
    machines: Annotated[
        int, typer.Option("--machines", min=1, max=200, help="machines per facility")
    ] = 6,
    rate: Annotated[float, typer.Option("--rate", min=1, help="readings per second")] = 2000,
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8080,
    data_dir: Annotated[Path, typer.Option("--data-dir", envvar="PLANTSTREAM_DATA_DIR")] = Path(
        ".plantstream"
    ),
    summary_json: Annotated[
        Path | None, typer.Option("--summary-json", help="also write the summary here")
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    faults: Annotated[int | None, typer.Option("--faults", min=0)] = None,
    live: Annotated[bool, typer.Option("--live/--no-live", help="live terminal view")] = True,
    sparkplug_machines: Annotated[
        int,
        typer.Option(
            "--sparkplug-machines",
            min=0,
            max=200,
            help="machines per facility publishing Sparkplug B through the embedded MQTT broker",
        ),
    ] = 1,
    opcua: Annotated[
        bool,
        typer.Option(
            "--opcua/--no-opcua",
            help="one machine behind an OPC UA server, collected by the edge agent",
        ),
    ] = False,
) -> None:
    """Run the whole platform on embedded servers with a simulated plant and injected faults."""
    options = DemoOptions(
        duration,
        facilities,
        machines,
        rate,
        port,
        data_dir,
        seed,
        faults,
        live,
        sparkplug_machines=sparkplug_machines,
        opcua=opcua,
    )
    summary = run_demo(options, console)
    table = Table(title="summary", show_header=False)
    for key in (
        "readings_sent",
        "accepted",
        "rejected",
        "stored",
        "dead_lettered",
        "duplicates",
        "balanced",
        "alerts",
    ):
        table.add_row(key.replace("_", " "), str(summary[key]))
    for path, books in summary["paths"].items():  # type: ignore[attr-defined]
        table.add_row(f"via {path}", ", ".join(f"{k} {v}" for k, v in books.items()))
    for kind, entry in summary["alerts_by_fault_type"].items():  # type: ignore[attr-defined]
        table.add_row(f"fault {kind}", f"{entry['detected']}/{entry['injected']} detected")
    console.print(table)
    if summary_json is not None:
        summary_json.write_text(json.dumps(summary, indent=2) + "\n")
        console.print(f"summary written to {summary_json}")
    if not summary["balanced"]:
        console.print("[red]the books do not balance[/red]")
        raise typer.Exit(1)
