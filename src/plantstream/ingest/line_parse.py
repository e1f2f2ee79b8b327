"""The InfluxDB line protocol's syntax: one line into measurement, tags, fields and timestamp.

Only the syntax lives here (escapes, value types); what a line means to plantstream is
``line_protocol.py``'s. A line that breaks the syntax raises ``LineSyntaxError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1

_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INT = re.compile(r"[+-]?\d+")
_UINT = re.compile(r"\d+")
_TRUE = frozenset({"t", "T", "true", "True", "TRUE"})
_FALSE = frozenset({"f", "F", "false", "False", "FALSE"})


class LineSyntaxError(ValueError):
    """A line that is not line protocol; ``str()`` says what is wrong, as InfluxDB words it."""


@dataclass(frozen=True, slots=True)
class StringValue:
    """A string field value (``"..."``), unescaped; kept apart so it is never taken for a number."""

    text: str


FieldValue = float | int | bool | StringValue


@dataclass(frozen=True, slots=True)
class Line:
    """One parsed line: ``timestamp`` is the raw integer in the request's precision, or None."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    timestamp: int | None


def parse_line(line: str) -> Line:
    """Parse one non-empty, non-comment line (without its newline)."""
    plain = "\\" not in line and '"' not in line  # the common line: no escapes, no strings
    parts = line.split(" ") if plain else _split_unescaped(line, " ")
    if len(parts) < 2 or "" in parts[:2]:
        raise LineSyntaxError("missing fields" if len(parts) < 2 or not parts[1] else "bad spaces")
    if len(parts) > 3:
        raise LineSyntaxError("invalid field format: unescaped space or more than one timestamp")
    series = _split_unescaped(parts[0], ",") if "\\" in parts[0] else parts[0].split(",")
    measurement = _unescape(series[0])
    if not measurement:
        raise LineSyntaxError("missing measurement")
    tags: dict[str, str] = {}
    for pair in series[1:]:
        key, value = _pair(pair, "tag")
        if key in tags:
            raise LineSyntaxError(f"duplicate tag {key[:64]!r}")
        tags[key] = _unescape(value)
    fields: dict[str, FieldValue] = {}
    for pair in (
        _split_unescaped(parts[1], ",")
        if "\\" in parts[1] or '"' in parts[1]
        else parts[1].split(",")
    ):
        key, raw = _pair(pair, "field")
        if key in fields:
            raise LineSyntaxError(f"duplicate field {key[:64]!r}")
        fields[key] = _field_value(raw)
    timestamp = None
    if len(parts) == 3 and parts[2] != "":
        if not _INT.fullmatch(parts[2]):
            raise LineSyntaxError(f"bad timestamp {parts[2][:32]!r}")
        timestamp = int(parts[2])
        if not INT64_MIN <= timestamp <= INT64_MAX:
            raise LineSyntaxError("timestamp out of range")
    return Line(measurement, tags, fields, timestamp)


def _pair(pair: str, what: str) -> tuple[str, str]:
    key, sep, value = _partition_unescaped(pair, "=")
    if not sep:
        raise LineSyntaxError(f"invalid {what} format: no '=' in {pair[:64]!r}")
    if not key:
        raise LineSyntaxError(f"missing {what} key")
    if not value:
        raise LineSyntaxError(f"missing {what} value")
    return _unescape(key), value


def _field_value(raw: str) -> FieldValue:
    if raw[0] == '"':
        if len(raw) < 2 or raw[-1] != '"' or _ends_escaped(raw[:-1]):
            raise LineSyntaxError("unterminated string field value")
        return StringValue(re.sub(r'\\([\\"])', r"\1", raw[1:-1]))
    last = raw[-1]
    if last == "i" and _INT.fullmatch(raw, 0, len(raw) - 1):
        value = int(raw[:-1])
        if not INT64_MIN <= value <= INT64_MAX:
            raise LineSyntaxError(f"integer field value out of range: {raw[:32]}")
        return value
    if last == "u" and _UINT.fullmatch(raw, 0, len(raw) - 1):
        value = int(raw[:-1])
        if value > UINT64_MAX:
            raise LineSyntaxError(f"unsigned field value out of range: {raw[:32]}")
        return value
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    if _FLOAT.fullmatch(raw):
        return float(raw)
    raise LineSyntaxError(f"invalid field value {raw[:32]!r}")


def _ends_escaped(text: str) -> bool:
    """Whether the last character of ``text`` is a backslash that escapes what follows."""
    count = len(text) - len(text.rstrip("\\"))
    return count % 2 == 1


def _split_unescaped(text: str, sep: str) -> list[str]:
    """``text`` split at each ``sep`` not escaped by a backslash nor inside a string value."""
    parts, start, i, quoted = [], 0, 0, False
    n = len(text)
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n:
            i += 2
            continue
        if char == '"' and (quoted or (i > 0 and text[i - 1] == "=")):
            quoted = not quoted
        elif char == sep and not quoted:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if quoted:
        raise LineSyntaxError("unterminated string field value")
    parts.append(text[start:])
    return parts


def _partition_unescaped(text: str, sep: str) -> tuple[str, str, str]:
    if "\\" not in text:
        return text.partition(sep)
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == sep:
            return text[:i], sep, text[i + 1 :]
        i += 1
    return text, "", ""


_ESCAPED = re.compile(r"\\([ ,=])")


def _unescape(text: str) -> str:
    """Measurement, tag and field names: ``\\ ``, ``\\,`` and ``\\=`` stand for the character;
    any other backslash is literal, as the spec says."""
    return _ESCAPED.sub(r"\1", text) if "\\" in text else text
