"""The plant hierarchy of one facility: areas, lines, machines, machine types and signals.

ISA-95 names: a facility (site) holds areas, an area holds lines, a line holds machines; areas
and lines are optional, so a machine may sit directly under its facility or area. A machine
type (profile) declares the signals its machines send; the facility's signal catalog is every
signal its types and its own ``signals`` list declare. A machine's id is the ``device`` its
readings carry. These values are what a model file is parsed into, what the store keeps and
what ``plantstream model apply`` compares.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from plantstream.errors import InvalidModelError
from plantstream.model.signals import DEFAULT_SIGNALS, SignalDef, UnknownSignalPolicy


@dataclass(frozen=True, slots=True)
class Area:
    id: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Line:
    id: str
    area: str | None = None
    name: str = ""


@dataclass(frozen=True, slots=True)
class Machine:
    """One machine; ``line`` implies its area (``area`` is then the line's own)."""

    id: str
    machine_type: str | None = None
    area: str | None = None
    line: str | None = None
    name: str = ""


@dataclass(frozen=True, slots=True)
class MachineType:
    """A profile: the names of the signals every machine of the type sends."""

    name: str
    description: str = ""
    signals: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PlantModel:
    """Everything declared for one facility, keyed by id (dict order is the file's order)."""

    facility: str
    unknown_signals: UnknownSignalPolicy = UnknownSignalPolicy.REFUSE
    signals: dict[str, SignalDef] = field(default_factory=dict)
    machine_types: dict[str, MachineType] = field(default_factory=dict)
    areas: dict[str, Area] = field(default_factory=dict)
    lines: dict[str, Line] = field(default_factory=dict)
    machines: dict[str, Machine] = field(default_factory=dict)


def resolved(model: PlantModel, *, source: str = "model") -> PlantModel:
    """``model`` with the default signals its types name added to its signals.

    A model parsed from a file is resolved already; one built in code may name a default
    signal without declaring it. Raises ``InvalidModelError`` for a reference to nothing
    (a signal, machine type, area or line that is not declared).
    """
    missing: list[tuple[int, int, str, str]] = []
    signals = dict(model.signals)
    for t in model.machine_types.values():
        for name in t.signals:
            if name not in signals and name in DEFAULT_SIGNALS:
                signals[name] = DEFAULT_SIGNALS[name]
            elif name not in signals:
                missing.append((0, 0, t.name, f"machine type {t.name!r}: no signal {name!r}"))
    for line in model.lines.values():
        if line.area is not None and line.area not in model.areas:
            missing.append((0, 0, line.id, f"line {line.id!r}: no area {line.area!r}"))
    for m in model.machines.values():
        for what, ref, known in (
            ("machine type", m.machine_type, model.machine_types),
            ("area", m.area, model.areas),
            ("line", m.line, model.lines),
        ):
            if ref is not None and ref not in known:
                missing.append((0, 0, m.id, f"machine {m.id!r}: no {what} {ref!r}"))
        if m.line is not None and m.line in model.lines and model.lines[m.line].area != m.area:
            missing.append((0, 0, m.id, f"machine {m.id!r}: its area is not its line's"))
    if missing:
        raise InvalidModelError(source, missing[:100])
    return model if signals == model.signals else replace(model, signals=signals)


# the bounds of one facility's model (a model file or document); each is checked with an error
MAX_AREAS = 1_000
MAX_LINES = 10_000
MAX_MACHINES = 100_000
MAX_MACHINE_TYPES = 1_000
MAX_SIGNALS = 10_000
MAX_STATES = 256
MAX_TEXT = 500  # display names and descriptions
MAX_PROPERTIES = 32

__all__ = [
    "MAX_AREAS",
    "MAX_LINES",
    "MAX_MACHINES",
    "MAX_MACHINE_TYPES",
    "MAX_PROPERTIES",
    "MAX_SIGNALS",
    "MAX_STATES",
    "MAX_TEXT",
    "Area",
    "Line",
    "Machine",
    "MachineType",
    "PlantModel",
    "resolved",
]
