"""How a file's columns become readings: the timestamp column, the facility and device, and
the signals (wide: one column per signal; long: a metric column and a value column).

Given by ``plantstream import`` flags or a small YAML file (docs/history.md); every problem is
an ``InvalidInputError(invalid_mapping)`` naming the key or flag.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.model import check_id

_KEYS = {
    "facility",
    "ts_column",
    "timezone",
    "device",
    "device_column",
    "metric_column",
    "value_column",
    "signals",
    "ambiguous",
    "delimiter",
}
AMBIGUOUS_CHOICES = ("reject", "earliest", "latest")


def mapping_error(message: str) -> InvalidInputError:
    return InvalidInputError(ErrorCode.INVALID_MAPPING, message)


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """Which column holds what. ``signals`` maps a wide file's column to its signal name
    (empty, in wide form: every column that is not the timestamp or device column, by its own
    name); ``metric_column`` + ``value_column`` make the file long form instead.

    ``timezone`` is the IANA zone of timestamps without an offset (None: such a timestamp
    is refused with ``timestamp_without_offset``); ``ambiguous`` says what a local time the
    DST fall-back repeats becomes (refused with ``ambiguous_local_time`` by default).
    """

    facility: str
    ts_column: str = "ts"
    timezone: str | None = None
    device: str | None = None
    device_column: str | None = None
    metric_column: str | None = None
    value_column: str | None = None
    signals: dict[str, str] = field(default_factory=dict)
    ambiguous: str = "reject"
    delimiter: str = ","  # of a CSV file (``;`` in many European exports)

    @property
    def long(self) -> bool:
        return self.metric_column is not None

    def checked(self) -> ColumnMapping:
        """This mapping, or ``invalid_mapping`` saying what is wrong with it."""
        _check_id(self.facility, "facility")
        if (self.device is None) == (self.device_column is None):
            raise mapping_error("give exactly one of --device (one device) or --device-column")
        if self.device is not None:
            _check_id(self.device, "device")
        if (self.metric_column is None) != (self.value_column is None):
            raise mapping_error("long form needs both --metric-column and --value-column")
        if self.long and self.signals:
            raise mapping_error("signal columns are for wide files; a long file names them per row")
        for column, name in self.signals.items():
            _check_id(name, f"signal of column {column!r}")
        if len(self.delimiter) != 1 or self.delimiter in '\r\n"':
            raise mapping_error("the delimiter must be one character (not a quote or newline)")
        if self.ambiguous not in AMBIGUOUS_CHOICES:
            raise mapping_error(f"ambiguous must be one of {', '.join(AMBIGUOUS_CHOICES)}")
        if self.timezone is not None:
            try:
                zoneinfo.ZoneInfo(self.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise mapping_error(f"unknown timezone {self.timezone!r} (an IANA name)") from None
        return self

    def signal_columns(self, names: list[str]) -> dict[str, str]:
        """A wide file's signal columns (column -> signal) among its column ``names``."""
        taken = {self.ts_column, self.device_column}
        if self.signals:
            missing = [c for c in self.signals if c not in names]
            if missing:
                raise mapping_error(f"the file has no column {missing[0]!r}")
            return dict(self.signals)
        chosen = {c: c for c in names if c not in taken}
        if not chosen:
            raise mapping_error("the file has no signal columns")
        return chosen

    def required_columns(self) -> list[str]:
        columns = [self.ts_column, self.device_column, self.metric_column, self.value_column]
        return [c for c in columns if c is not None]

    def with_overrides(self, **overrides: Any) -> ColumnMapping:
        """A copy with the given fields set (flags beat the mapping file); None is ignored."""
        given = {k: v for k, v in overrides.items() if v is not None and v != {}}
        return replace(self, **given)


def _check_id(value: str, what: str) -> None:
    try:
        check_id(value, what)
    except InvalidInputError as exc:
        raise mapping_error(exc.message) from None


def load_mapping(path: Path, **overrides: Any) -> ColumnMapping:
    """The mapping in YAML file ``path``, with ``overrides`` (flags) on top; checked."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise mapping_error(f"cannot read mapping file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise mapping_error(f"mapping file {path} is not valid YAML{where}") from None
    if not isinstance(document, dict):
        raise mapping_error(f"mapping file {path} must be a mapping of keys to values")
    unknown = sorted(set(map(str, document)) - _KEYS)
    if unknown:
        raise mapping_error(
            f"mapping file {path}: unknown key {unknown[0]!r}; known: {sorted(_KEYS)}"
        )
    signals = document.get("signals", {})
    if not isinstance(signals, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in signals.items()
    ):
        raise mapping_error(f"mapping file {path}: signals must map column names to signal names")
    for key in _KEYS - {"signals"}:
        if key in document and not isinstance(document[key], str):
            raise mapping_error(f"mapping file {path}: {key} must be a string")
    fields: dict[str, Any] = {k: v for k, v in document.items() if k != "signals"}
    fields.setdefault("facility", overrides.get("facility") or "")
    base = ColumnMapping(**fields, signals=dict(signals))
    return base.with_overrides(**overrides).checked()
