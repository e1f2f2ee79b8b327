"""``plantstream model apply|show|export|unclassified``: a facility's plant hierarchy and signal
catalog, and the signals its ``register`` policy let in for review."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import psycopg
import typer
import yaml
from rich.console import Console

from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.model.located import MAX_DOCUMENT_BYTES
from plantstream.model.plantdiff import summary
from plantstream.model.plantexport import model_document
from plantstream.model.plantfile import parse_model
from plantstream.runtime import Runtime
from plantstream.settings import load_settings
from plantstream.store import assets, signal_defs

app = typer.Typer(help="The plant model: areas, lines, machines, machine types and signals.")
console = Console(highlight=False, markup=False)  # ids and names are printed as they are
err = Console(stderr=True, highlight=False, markup=False)


def _connect() -> psycopg.Connection:
    runtime = Runtime(load_settings())
    runtime.migrate()
    return runtime.connect()


@app.command()
def apply(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a YAML or JSON file")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would change")] = False,
) -> None:
    """Make a facility's model what FILE describes; print what was created, changed, removed.

    The file describes the facility whole: what it no longer lists is removed. Applying it
    again changes nothing (and says so).
    """
    if path.stat().st_size > MAX_DOCUMENT_BYTES:
        raise InvalidInputError(
            ErrorCode.INVALID_MODEL, f"{path} is larger than {MAX_DOCUMENT_BYTES} bytes"
        )
    parsed = parse_model(path.read_bytes(), source=str(path))
    for line, column, _, message in parsed.warnings:
        err.print(f"note: {path}:{line}:{column}: {message}", soft_wrap=True)
    model = parsed.model
    with _connect() as conn:
        changes = assets.apply_model(conn=conn, model=model, dry_run=dry_run)
    for change in changes:
        console.print(f"  {change}")
    verb = "would change" if dry_run else "applied"
    if changes:
        console.print(f"{model.facility}: {verb}: {summary(changes)}")
    else:
        console.print(f"{model.facility}: no change ({path} is what the store holds)")


@app.command()
def show(
    facility: Annotated[
        str, typer.Option("--facility", help="one facility; all when left out")
    ] = "",
) -> None:
    """The hierarchy of a facility (or of every facility with a model), as a tree."""
    with _connect() as conn:
        names = [facility] if facility else assets.facilities(conn=conn)
        models = [assets.load_model(conn=conn, facility=name) for name in names]
    for model in models:
        console.print(
            f"{model.facility}  (unknown signals: {model.unknown_signals}, "
            f"{len(model.signals)} signals, {len(model.machine_types)} machine types)"
        )
        by_place: dict[tuple[str, str | None], list[str]] = {}
        for m in model.machines.values():
            place = ("line", m.line) if m.line else ("area", m.area)
            by_place.setdefault(place, []).append(f"{m.id}  [{m.machine_type or '-'}]  {m.name}")
        lines_by_area: dict[str | None, list[str]] = {}
        for line in model.lines.values():
            lines_by_area.setdefault(line.area, []).append(line.id)
        for area in [*model.areas.values(), None]:
            area_id = area.id if area else None
            indent = "    " if area else "  "
            if area is not None:
                console.print(f"  area {area.id}  {area.name}".rstrip())
            for line_id in lines_by_area.get(area_id, []):
                console.print(f"{indent}line {line_id}  {model.lines[line_id].name}".rstrip())
                for text in by_place.get(("line", line_id), []):
                    console.print(f"{indent}  {text}".rstrip())
            for text in by_place.get(("area", area_id), []):
                console.print(f"{indent}{text}".rstrip())


@app.command()
def export(
    facility: Annotated[str, typer.Option("--facility", help="the facility")],
    fmt: Annotated[str, typer.Option("--format", help="yaml or json")] = "yaml",
) -> None:
    """Print a facility's model as a file ``model apply`` takes back unchanged."""
    if fmt not in ("yaml", "json"):
        raise InvalidInputError(ErrorCode.INVALID_REQUEST, "--format is yaml or json")
    with _connect() as conn:
        document = model_document(assets.load_model(conn=conn, facility=facility))
    if fmt == "json":
        print(json.dumps(document, indent=2))
    else:
        print(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), end="")


@app.command()
def unclassified(
    facility: Annotated[str, typer.Option("--facility", help="the facility")],
) -> None:
    """The signals the facility's register policy let in and no model declares yet: declare
    each in the model file (``model apply``) and it leaves this list."""
    with _connect() as conn:
        policy = signal_defs.facility_policy(conn=conn, facility=facility)
        found = signal_defs.review(conn=conn, facility=facility)
    console.print(f"{facility}: unknown signals: {policy or 'refuse'}; {len(found)} unclassified")
    for u in found:
        more = u.devices - len(u.sample_devices)
        devices = ", ".join(u.sample_devices) + (f" and {more} more" if more > 0 else "")
        first = u.first_seen.isoformat(timespec="seconds")
        console.print(f"  {u.name}  first seen {first}  from {devices or 'no device yet'}")
