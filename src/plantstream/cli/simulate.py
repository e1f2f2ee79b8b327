"""``plantstream simulate``: the plant simulator posting to any ingest endpoint."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from plantstream.simulate import Gateway, Plant

console = Console()


def simulate(
    url: Annotated[str, typer.Option("--url", help="base URL of an ingest endpoint")],
    key: Annotated[
        str, typer.Option("--key", help="an ingest key (or admin key)", envvar="PLANTSTREAM_KEY")
    ],
    rate: Annotated[float, typer.Option("--rate", min=1, help="readings per second")] = 1000,
    duration: Annotated[float, typer.Option("--duration", min=1, help="seconds")] = 60,
    facilities: Annotated[int, typer.Option("--facilities", min=1)] = 1,
    machines: Annotated[int, typer.Option("--machines", min=1)] = 8,
    faults: Annotated[int, typer.Option("--faults", min=0, help="faults to inject")] = 3,
    seed: Annotated[int, typer.Option("--seed")] = 7,
) -> None:
    """Simulate facilities plant-01.. of machines (with labeled faults) and post their readings.

    Prints what was sent and answered as JSON. Exits 0 when every batch was finally
    accepted (after retries of push-back and of failed connections), else 1 with a summary of
    the batches that were not.
    """
    import time

    plant = Plant(seed=seed, facilities=facilities, machines=machines)
    plant.schedule_faults(start=time.time(), duration=duration, count=faults)
    gateway = Gateway(url=url, keys={"*": key}, plant=plant, rate=rate)
    stats = gateway.run(duration=duration)
    stats.faults = plant.faults
    console.print_json(json.dumps(stats.as_dict()))
    if stats.failed_batches:
        Console(stderr=True).print(stats.summary(), markup=False, highlight=False)
        raise typer.Exit(1)
