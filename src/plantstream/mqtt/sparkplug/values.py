"""The metrics of one Sparkplug payload into readings: the host's hot loop, per birth's bindings.

Values keep their type: integers exact (Int64 beyond 2**53), booleans as ``bool``, strings as
text; the facility's signal catalog decides what a signal takes (``validate_fields``).
Metrics flagged ``is_historical`` go to ``Outcome.history``, judged by ``history_window``
(how far back the history path takes readings), not to the live readings.
"""

from __future__ import annotations

from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.model import (
    DEFAULT_CATALOG,
    Reading,
    SignalCatalog,
    TimeWindow,
    Value,
    validate_fields,
)
from plantstream.mqtt.outcome import Outcome
from plantstream.mqtt.sparkplug.bindings import Binding, Bound
from plantstream.mqtt.sparkplug.sparkplug_b_pb2 import Payload

_FLOATS = frozenset({"float_value", "double_value"})
_INTEGERS = frozenset({"int_value", "long_value"})
_TYPED = frozenset({"boolean_value", "string_value"})  # never on the double fast path


class MetricReader:
    """Reads payloads' metrics against a birth's bindings, in a time window and a catalog."""

    def __init__(
        self,
        *,
        window: TimeWindow,
        history_window: TimeWindow | None = None,
        catalog: SignalCatalog = DEFAULT_CATALOG,
    ) -> None:
        self.window = window
        self.history_window = history_window or window
        self.catalog = catalog

    def read(
        self,
        bound: Bound,
        facility: str,
        p: Payload,
        received_us: int,
        out: Outcome,
        *,
        birth: bool,
    ) -> bool:
        """The readings of ``p``'s metrics into ``out``; True if an alias was not in the birth.

        A null metric of a birth defines the metric and carries no reading (no value yet); a
        null in data is refused ``null_value``.

        The loop touches as few fields as it can (each costs on a busy core): the alias, which
        value is set, the value, the timestamp (0 or absent: the payload's), is_historical.
        A double signal's float value in range and in the window is taken inline; anything
        else (a typed signal, a unit to check, history) goes through ``validate_fields``.
        """
        payload_ms = int(p.timestamp) if p.HasField("timestamp") else received_us // 1000
        ts_low = received_us - self.window.max_past_us
        ts_high = received_us + self.window.max_future_us
        by_alias, by_name = bound.by_alias, bound.by_name
        readings = out.readings
        unknown = False
        for m in p.metrics:
            alias = m.alias
            b = by_alias.get(alias) if alias or m.HasField("alias") else by_name.get(m.name)
            if b is None:
                out.rejected[ErrorCode.UNKNOWN_ALIAS] += 1
                unknown = True
                continue
            kind = m.WhichOneof("value")
            if b.fast and kind == "double_value":  # the common case, in as few steps as it can
                v = m.double_value
                ts_us = (m.timestamp or payload_ms) * 1000
                if not m.is_historical:
                    if b.convert is not None:
                        v = b.convert(v)
                    if b.low <= v <= b.high and ts_low <= ts_us <= ts_high:
                        readings.append(Reading(b.machine, b.signal, ts_us, v + 0.0, b.quality))
                        continue
            if b.control:
                continue
            if b.refuse is not None:
                out.rejected[b.refuse] += 1
                continue
            value: Value
            if kind in _FLOATS:
                value = float(getattr(m, kind))
            elif kind in _INTEGERS:
                raw = getattr(m, kind)
                bits = b.signed_bits
                value = raw - (1 << bits) if bits and raw >= 1 << (bits - 1) else raw
            elif kind == "boolean_value":
                value = bool(m.boolean_value)
            elif kind == "string_value":
                value = m.string_value
            elif kind is None:
                if not birth:
                    out.rejected[ErrorCode.NULL_VALUE] += 1
                continue
            else:
                out.rejected[ErrorCode.UNSUPPORTED_DATATYPE] += 1
                continue
            ts_us = (m.timestamp or payload_ms) * 1000
            if m.is_historical:
                self._history(b, facility, ts_us, value, received_us, out)
                continue
            if b.fast and kind not in _TYPED:
                v = float(value)
                if b.convert is not None:
                    v = b.convert(v)
                if b.low <= v <= b.high and ts_low <= ts_us <= ts_high:
                    readings.append(Reading(b.machine, b.signal, ts_us, v + 0.0, b.quality))
                    continue
            reading = self._validated(b, facility, ts_us, value, received_us, self.window, out)
            if reading is not None:
                readings.append(reading)
        return unknown

    def _history(  # noqa: PLR0917 - one metric's fields, from the hot loop
        self,
        b: Binding,
        facility: str,
        ts_us: int,
        value: Value,
        received_us: int,
        out: Outcome,
    ) -> None:
        """An ``is_historical`` metric into ``out.history``, judged by the history window."""
        out.historical += 1
        window = self.history_window
        reading = self._validated(b, facility, ts_us, value, received_us, window, out)
        if reading is not None:
            out.history.append(reading)

    def _validated(  # noqa: PLR0917 - one metric's fields, from the hot loop
        self,
        b: Binding,
        facility: str,
        ts_us: int,
        value: Value,
        received_us: int,
        window: TimeWindow,
        out: Outcome,
    ) -> Reading | None:
        """The metric as a reading checked in full (types, units, range, ``window``); None,
        counted in ``out.rejected`` by its code, when it is refused."""
        try:
            return validate_fields(
                device=b.machine,
                metric=b.signal,
                ts_us=int(ts_us),
                value=value,
                unit=b.unit,
                quality=b.quality,
                received_us=received_us,
                window=window,
                facility=facility,
                catalog=self.catalog,
            )
        except InvalidInputError as exc:
            out.rejected[exc.code] += 1
            return None
