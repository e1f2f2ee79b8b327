"""A ``PlantModel`` written back as a model document (what ``plantstream model export`` prints).

The document parses back into the same model: every signal is declared once under
``signals`` and machine types name theirs; defaults are left out so the file stays short.
"""

from __future__ import annotations

from typing import Any

from plantstream.model.plant import Machine, PlantModel
from plantstream.model.signalfile import KINDS
from plantstream.model.signals import STRING_MAX_LENGTH, SignalDef, ValueType


def signal_document(s: SignalDef) -> dict[str, Any]:
    """One signal as a mapping of the model file (defaults left out)."""
    out: dict[str, Any] = {"name": s.name}
    if s.value_type is not ValueType.DOUBLE:
        out["type"] = s.value_type.value
    if s.kind is not KINDS[s.value_type][0]:
        out["kind"] = s.kind.value
    if s.unit:
        out["unit"] = s.unit
    if s.accepted_units:
        out["accepted_units"] = list(s.accepted_units)
    if s.low is not None:
        out["low"] = s.low
    if s.high is not None:
        out["high"] = s.high
    if s.states:
        out["states"] = list(s.states)
    if s.wrap is not None:
        out["wrap"] = s.wrap
    if s.max_length != STRING_MAX_LENGTH:
        out["max_length"] = s.max_length
    if s.description:
        out["description"] = s.description
    if s.properties:
        out["properties"] = dict(s.properties)
    return out


def _machine(m: Machine) -> dict[str, Any]:
    out: dict[str, Any] = {"id": m.id}
    if m.name:
        out["name"] = m.name
    if m.machine_type:
        out["type"] = m.machine_type
    return out


def model_document(model: PlantModel) -> dict[str, Any]:
    """The model as a document ``parse_model`` reads back into an equal model.

    Unclassified signals (let in by the ``register`` policy, awaiting review) are left out:
    declaring them is the review.
    """
    doc: dict[str, Any] = {
        "facility": model.facility,
        "unknown_signals": model.unknown_signals.value,
    }
    declared = [s for s in model.signals.values() if not s.unclassified]
    if declared:
        doc["signals"] = [signal_document(s) for s in declared]
    if model.machine_types:
        doc["machine_types"] = [
            {
                "name": t.name,
                **({"description": t.description} if t.description else {}),
                "signals": list(t.signals),
            }
            for t in model.machine_types.values()
        ]

    placed: dict[tuple[str | None, str | None], list[dict[str, Any]]] = {}
    for m in model.machines.values():  # grouped once: a plant has thousands of machines
        placed.setdefault((None if m.line else m.area, m.line), []).append(_machine(m))

    def machines(area: str | None, line: str | None) -> list[dict[str, Any]]:
        return placed.get((None if line else area, line), [])

    def lines(area: str | None) -> list[dict[str, Any]]:
        out = []
        for line in model.lines.values():
            if line.area == area:
                entry: dict[str, Any] = {
                    "id": line.id,
                    **({"name": line.name} if line.name else {}),
                }
                entry["machines"] = machines(area, line.id)
                out.append(entry)
        return out

    areas = []
    for area in model.areas.values():
        entry: dict[str, Any] = {"id": area.id, **({"name": area.name} if area.name else {})}
        for key, value in (("lines", lines(area.id)), ("machines", machines(area.id, None))):
            if value:
                entry[key] = value
        areas.append(entry)
    for key, value in (
        ("areas", areas),
        ("lines", lines(None)),
        ("machines", machines(None, None)),
    ):
        if value:
            doc[key] = value
    return doc


__all__ = ["model_document", "signal_document"]
