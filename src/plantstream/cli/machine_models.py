"""``plantstream detect machine train|list|delete``: a machine's model (multivariate detection)
trained on its normal period, listed, taken out of force; versioned as over the API."""

from __future__ import annotations

import getpass
import json
from typing import Annotated

import typer
from rich.console import Console

from plantstream.api.times import parse_time
from plantstream.cli.detect import _connect
from plantstream.detect import machine_models as models
from plantstream.detect.config import current_config
from plantstream.store import machine_models as store

app = typer.Typer(help="Machine models: a machine's signals judged together (PCA T^2 and Q).")
console = Console()


def _author() -> str:
    return f"cli:{getpass.getuser()}"


@app.command()
def train(
    facility: Annotated[str, typer.Argument(help="facility id")],
    machine: Annotated[str, typer.Argument(help="machine (device) id")],
    from_: Annotated[str, typer.Option("--from", help="normal period start, RFC 3339")],
    to: Annotated[str, typer.Option("--to", help="normal period end (not included), RFC 3339")],
    signal: Annotated[
        list[str] | None,
        typer.Option("--signal", help="a signal to judge (repeat); all numeric gauges if none"),
    ] = None,
) -> None:
    """Train the machine's model on its stored readings of [from, to) and put it in force."""
    start, end = parse_time(from_), parse_time(to)
    with _connect() as conn:
        tuning = current_config(conn)[1].tuning
        trained = models.train(
            conn,
            facility=facility,
            machine=machine,
            start=start,
            end=end,
            signals=signal or None,
            author=_author(),
            bucket_seconds=tuning.bucket_seconds,
            min_readings=tuning.bucket_min_readings,
        )
    model = trained.model
    console.print(
        f"{facility}/{machine} model version {trained.version}: {len(model.signals)} signals "
        f"({', '.join(model.signals)}), {len(model.components)} components, "
        f"{trained.buckets} buckets of {trained.per_bucket} from {trained.readings} readings; "
        f"T^2 limit {model.t2_limit:.4g}, Q limit {model.q_limit:.4g}",
        highlight=False,
    )


@app.command("list")
def list_(facility: Annotated[str, typer.Argument(help="facility id")]) -> None:
    """The facility's machine models in force, as JSON."""
    with _connect() as conn:
        rows = store.in_force(conn=conn, facility=facility, limit=models.MAX_MODELS_PER_FACILITY)
    console.print_json(json.dumps([models.summary(r) for r in rows], default=str))


@app.command()
def delete(
    facility: Annotated[str, typer.Argument(help="facility id")],
    machine: Annotated[str, typer.Argument(help="machine (device) id")],
) -> None:
    """Take the machine's model out of force (recorded as a version)."""
    with _connect() as conn:
        version = models.remove(conn, facility=facility, machine=machine, author=_author())
    console.print(f"{facility}/{machine} model removed (version {version})", highlight=False)
