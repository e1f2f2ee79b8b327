"""A plant model file (YAML or JSON) parsed into a ``PlantModel``, with line-precise errors.

The format (docs/plant-model.md)::

    facility: plant-a
    unknown_signals: refuse          # or register
    signals: [...]                   # signals of the facility outside any machine type
    machine_types:
      - name: press
        signals:
          - {name: ram_force, unit: kN, accepted_units: [N], range: [0, 5000]}
          - temperature              # a signal declared elsewhere, or a default one
    areas:
      - id: stamping
        lines:
          - id: line-1
            machines: [{id: press-001, type: press, name: Press 1}]
        machines: [...]              # machines of the area outside any line
    lines: [...]                     # lines outside any area
    machines: [...]                  # machines outside any area

Every issue is reported (up to ``fields.MAX_ISSUES``) as ``file:line:column: path: what``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from plantstream.model import plant
from plantstream.model.fields import Fields, Issue
from plantstream.model.located import Located, parse_document
from plantstream.model.plant import Area, Line, Machine, MachineType, PlantModel
from plantstream.model.signalfile import read_signal
from plantstream.model.signals import DEFAULT_SIGNALS, SignalDef, UnknownSignalPolicy

TOP_KEYS = ("facility", "unknown_signals", "signals", "machine_types", "areas", "lines", "machines")


@dataclass(frozen=True, slots=True)
class ParsedModel:
    model: PlantModel
    warnings: list[Issue] = field(default_factory=list)


def parse_model(text: str | bytes, *, source: str, fmt: str | None = None) -> ParsedModel:
    """The model in ``text``; raises ``InvalidModelError`` listing every issue with its line."""
    root = parse_document(text, source=source, fmt=fmt)
    return _Builder(Fields(source)).build(root)


class _Builder:
    def __init__(self, f: Fields) -> None:
        self.f = f
        self.signals: dict[str, tuple[SignalDef, int]] = {}  # with the line declaring it
        self.types: dict[str, MachineType] = {}
        self.type_nodes: dict[str, Located] = {}
        self.areas: dict[str, Area] = {}
        self.lines: dict[str, Line] = {}
        self.machines: dict[str, Machine] = {}
        self.machine_types: list[tuple[Located, str, str]] = []  # to resolve after all types

    def build(self, root: Located) -> ParsedModel:
        f = self.f
        keys = f.mapping(root, "", TOP_KEYS, required=("facility",))
        if keys is None:
            f.raise_if_any()
            raise AssertionError  # pragma: no cover - raise_if_any raised
        facility = f.ident(keys.get("facility"), "facility", "a facility") or ""
        policy = f.choice(keys.get("unknown_signals"), "unknown_signals", UnknownSignalPolicy)
        for i, node in enumerate(f.sequence(keys.get("signals"), "signals", plant.MAX_SIGNALS)):
            self._declare(node, f"signals[{i}]")
        self._types(keys.get("machine_types"))
        self._places(keys, "", area=None)
        for node, path, type_name in self.machine_types:
            if type_name not in self.types:
                f.fail(node, path, f"machine type {type_name!r} is not declared")
        f.raise_if_any()
        model = PlantModel(
            facility=facility,
            unknown_signals=policy or UnknownSignalPolicy.REFUSE,
            signals={name: signal for name, (signal, _) in self.signals.items()},
            machine_types=self.types,
            areas=self.areas,
            lines=self.lines,
            machines=self.machines,
        )
        return ParsedModel(model, sorted(f.warnings))

    def _declare(self, node: Located, path: str) -> str | None:
        """A signal defined at ``node`` (a mapping) or named there (a reference); its name."""
        if isinstance(node.value, dict):
            signal = read_signal(self.f, node, path)
            if signal is None:
                return None
            known = self.signals.get(signal.name)
            if known is not None and known[0] != signal:
                self.f.fail(
                    node,
                    path,
                    f"signal {signal.name!r} is declared differently on line {known[1]}: "
                    "a facility has one definition per signal name",
                )
            elif known is None:
                if len(self.signals) >= plant.MAX_SIGNALS:
                    self.f.fail(node, path, f"more than {plant.MAX_SIGNALS} signals")
                self.signals[signal.name] = (signal, node.line)
            return signal.name
        return self.f.ident(node, path, "a signal name")

    def _types(self, node: Located | None) -> None:
        f = self.f
        references: list[tuple[Located, str, str]] = []
        for i, item in enumerate(f.sequence(node, "machine_types", plant.MAX_MACHINE_TYPES)):
            path = f"machine_types[{i}]"
            keys = f.mapping(item, path, ("name", "description", "signals"), required=("name",))
            if keys is None:
                continue
            name = f.ident(keys.get("name"), f"{path}.name", "a machine type")
            description = f.text(keys.get("description"), f"{path}.description", limit=500)
            names: list[str] = []
            entries = f.sequence(keys.get("signals"), f"{path}.signals", plant.MAX_SIGNALS)
            for j, entry in enumerate(entries):
                signal = self._declare(entry, f"{path}.signals[{j}]")
                if signal is None:
                    continue
                if signal in names:
                    f.fail(entry, f"{path}.signals[{j}]", f"{signal!r} is listed twice")
                    continue
                names.append(signal)
                if not isinstance(entry.value, dict):
                    references.append((entry, f"{path}.signals[{j}]", signal))
            if name is None:
                continue
            if name in self.types:
                f.fail(item, f"{path}.name", f"{name!r} is declared twice")
                continue
            self.types[name] = MachineType(name, description, tuple(names))
        for entry, path, signal in references:  # after every type: a reference may look ahead
            if signal not in self.signals:
                if signal in DEFAULT_SIGNALS:
                    self.signals[signal] = (DEFAULT_SIGNALS[signal], entry.line)
                else:
                    f.fail(entry, path, f"signal {signal!r} is declared nowhere in this file")

    def _places(self, keys: dict[str, Located], path: str, *, area: str | None) -> None:
        """The lines and machines under the facility (``area`` None) or an area."""
        f, prefix = self.f, f"{path}." if path else ""
        if area is None:
            for i, node in enumerate(f.sequence(keys.get("areas"), "areas", plant.MAX_AREAS)):
                self._area(node, f"areas[{i}]")
        for i, node in enumerate(f.sequence(keys.get("lines"), f"{prefix}lines", plant.MAX_LINES)):
            self._line(node, f"{prefix}lines[{i}]", area=area)
        self._machines(keys.get("machines"), f"{prefix}machines", area=area, line=None)

    def _area(self, node: Located, path: str) -> None:
        keys = self.f.mapping(node, path, ("id", "name", "lines", "machines"), required=("id",))
        if keys is None:
            return
        area = self.f.ident(keys.get("id"), f"{path}.id", "an area id")
        name = self.f.text(keys.get("name"), f"{path}.name", limit=plant.MAX_TEXT)
        if area is not None and self._unique(self.areas, area, keys["id"], f"{path}.id"):
            self.areas[area] = Area(area, name)
        self._places(keys, path, area=area)

    def _line(self, node: Located, path: str, *, area: str | None) -> None:
        keys = self.f.mapping(node, path, ("id", "name", "machines"), required=("id",))
        if keys is None:
            return
        line = self.f.ident(keys.get("id"), f"{path}.id", "a line id")
        name = self.f.text(keys.get("name"), f"{path}.name", limit=plant.MAX_TEXT)
        if line is not None and self._unique(self.lines, line, keys["id"], f"{path}.id"):
            if len(self.lines) >= plant.MAX_LINES:
                self.f.fail(node, path, f"more than {plant.MAX_LINES} lines")
            self.lines[line] = Line(line, area, name)
        self._machines(keys.get("machines"), f"{path}.machines", area=area, line=line)

    def _machines(
        self, node: Located | None, path: str, *, area: str | None, line: str | None
    ) -> None:
        f = self.f
        for i, item in enumerate(f.sequence(node, path, plant.MAX_MACHINES)):
            at = f"{path}[{i}]"
            keys = f.mapping(item, at, ("id", "name", "type"), required=("id",))
            if keys is None:
                continue
            machine = f.ident(keys.get("id"), f"{at}.id", "a machine id")
            name = f.text(keys.get("name"), f"{at}.name", limit=plant.MAX_TEXT)
            type_name = f.ident(keys.get("type"), f"{at}.type", "a machine type")
            if type_name is not None:
                self.machine_types.append((keys["type"], f"{at}.type", type_name))
            if machine is None or not self._unique(self.machines, machine, keys["id"], f"{at}.id"):
                continue
            if len(self.machines) >= plant.MAX_MACHINES:
                f.fail(item, at, f"more than {plant.MAX_MACHINES} machines")
                return
            self.machines[machine] = Machine(machine, type_name, area, line, name)

    def _unique(self, known: Mapping[str, object], key: str, node: Located, path: str) -> bool:
        if key in known:
            self.f.fail(node, path, f"{key!r} is declared twice (ids are unique in a facility)")
            return False
        return True


__all__ = ["TOP_KEYS", "ParsedModel", "parse_model"]
