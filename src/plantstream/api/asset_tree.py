"""A facility's model and the devices it has heard from, shaped as the ``/v1/assets`` tree."""

from __future__ import annotations

from collections.abc import Mapping

from plantstream.api import asset_shapes as shapes
from plantstream.model.plant import PlantModel

TREE_MAX_MACHINES = 10_000  # in one answer; more: the counts only, and the paged list


def build_tree(
    model: PlantModel,
    *,
    observed: Mapping[str, list[str]],
    with_machines: bool,
    limit: int = TREE_MAX_MACHINES,
) -> shapes.Assets:
    """The tree; ``observed`` is each device's metrics (devices absent from the model are
    unplaced). Machines are listed only when asked and when at most ``limit``."""
    unplaced = sorted(d for d in observed if d not in model.machines)
    total = len(model.machines) + len(unplaced)
    listed = with_machines and total <= limit

    def machine(machine_id: str) -> shapes.Machine:
        m = model.machines.get(machine_id)
        declared = model.machine_types[m.machine_type].signals if m and m.machine_type else ()
        sent = [s for s in observed.get(machine_id, []) if s not in declared]
        return shapes.Machine(
            id=machine_id,
            name=m.name if m else "",
            type=m.machine_type if m else None,
            area=m.area if m else None,
            line=m.line if m else None,
            placed=m is not None,
            signals=[*declared, *sent],
        )

    by_place: dict[tuple[str, str | None], list[str]] = {}
    for m in model.machines.values():
        by_place.setdefault(("line", m.line) if m.line else ("area", m.area), []).append(m.id)

    def machines_at(place: tuple[str, str | None]) -> list[shapes.Machine] | None:
        return [machine(i) for i in sorted(by_place.get(place, []))] if listed else None

    def line(line_id: str) -> shapes.Line:
        ln = model.lines[line_id]
        return shapes.Line(
            id=ln.id,
            name=ln.name,
            area=ln.area,
            machine_count=len(by_place.get(("line", ln.id), [])),
            machines=machines_at(("line", ln.id)),
        )

    lines_of: dict[str | None, list[str]] = {}
    for ln in model.lines.values():
        lines_of.setdefault(ln.area, []).append(ln.id)
    areas = [
        shapes.Area(
            id=a.id,
            name=a.name,
            lines=[line(i) for i in sorted(lines_of.get(a.id, []))],
            machine_count=len(by_place.get(("area", a.id), [])),
            machines=machines_at(("area", a.id)),
        )
        for a in sorted(model.areas.values(), key=lambda a: a.id)
    ]
    return shapes.Assets(
        facility=model.facility,
        unknown_signals=model.unknown_signals.value,
        signals=[shapes.Signal.of(s) for _, s in sorted(model.signals.items())],
        machine_types=[
            shapes.MachineType(name=t.name, description=t.description, signals=list(t.signals))
            for _, t in sorted(model.machine_types.items())
        ],
        areas=areas,
        lines=[line(i) for i in sorted(lines_of.get(None, []))],
        machines=machines_at(("area", None)),
        unplaced=[machine(d) for d in unplaced] if listed else None,
        machine_total=total,
        truncated=not listed,
    )


__all__ = ["TREE_MAX_MACHINES", "build_tree"]
