"""Plain JSON topics for simple devices: ``plantstream/v1/{facility}/{device}[/{signal}]``.

``.../{facility}/{device}`` carries the ``POST /v1/readings`` body (its ``facility`` must be the
topic's, each reading's ``device`` the topic's: ``device_mismatch`` otherwise);
``.../{facility}/{device}/{signal}`` carries one value (its signal's type: a number, an
integer, true/false or a string), bare or as
``{"value": v, "ts": "RFC 3339", "unit": u, "quality": q}`` (no ``ts``: the time it arrived,
which a redelivery cannot repeat, so a device that needs exactly-once sends ``ts``). The
broker's ACL confines a client to its facility's topics; the bridge checks the facility here
again against the facilities it serves.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.model import TimeWindow, check_id, parse_batch, to_epoch_us, validate_fields
from plantstream.model.signals import DEFAULT_CATALOG, SignalCatalog, per_batch
from plantstream.mqtt.outcome import Outcome

PREFIX = "plantstream/v1/"


class _Value(msgspec.Struct, forbid_unknown_fields=True):
    value: bool | int | float | str
    ts: datetime | None = None
    unit: str | None = None
    quality: str = "good"


_value = msgspec.json.Decoder(bool | int | float | str | _Value)


class PlainTopics:
    """JSON messages on ``plantstream/v1/#`` in, outcomes out."""

    def __init__(
        self,
        *,
        window: TimeWindow,
        max_readings: int,
        facilities: frozenset[str] = frozenset(),
        catalog: SignalCatalog = DEFAULT_CATALOG,
    ) -> None:
        self.catalog = catalog  # each facility's signals (the runtime's StoreCatalog)
        self.window = window
        self.max_readings = max_readings
        self.facilities = facilities

    def handle(self, topic: str, payload: bytes, received_us: int) -> Outcome:
        """The outcome of one message; bad input is refused whole or per reading, never raised."""
        try:
            parts = topic.removeprefix(PREFIX).split("/")
            if not topic.startswith(PREFIX) or len(parts) not in (2, 3):
                raise InvalidInputError(
                    ErrorCode.INVALID_TOPIC,
                    "topics are plantstream/v1/{facility}/{device}[/{signal}]",
                )
            facility, device = parts[0], parts[1]
            check_id(facility, "facility")
            check_id(device, "device")
            if self.facilities and facility not in self.facilities:
                raise InvalidInputError(
                    ErrorCode.FORBIDDEN_FACILITY, f"this bridge does not take {facility!r}"
                )
            if len(parts) == 3:
                return self._one_value(facility, device, parts[2], payload, received_us)
            return self._batch(facility, device, payload, received_us)
        except InvalidInputError as exc:
            return Outcome.refused(exc.code, exc.message)

    def _batch(self, facility: str, device: str, payload: bytes, received_us: int) -> Outcome:
        batch = parse_batch(
            payload,
            received_us=received_us,
            window=self.window,
            max_readings=self.max_readings,
            catalog=per_batch(self.catalog),
        )
        if batch.facility != facility:
            raise InvalidInputError(
                ErrorCode.FORBIDDEN_FACILITY,
                f"the body names facility {batch.facility!r}, the topic {facility!r}",
            )
        out = Outcome(facility=facility)
        for reject in batch.rejected:
            out.rejected[reject.code] += 1
        for reading in batch.readings:
            if reading.device == device:
                out.readings.append(reading)
            else:
                out.rejected[ErrorCode.DEVICE_MISMATCH] += 1
        return out

    def _one_value(
        self, facility: str, device: str, signal: str, payload: bytes, received_us: int
    ) -> Outcome:
        try:
            item = _value.decode(payload)
        except msgspec.DecodeError as exc:
            raise InvalidInputError(
                ErrorCode.UNDECODABLE_PAYLOAD, f"expected a number or {{'value': ...}}: {exc}"
            ) from None
        if not isinstance(item, _Value):
            item = _Value(item)
        if item.ts is not None and item.ts.tzinfo is None:
            raise InvalidInputError(
                ErrorCode.TIMESTAMP_WITHOUT_OFFSET, "ts needs a UTC offset (RFC 3339)"
            )
        ts_us = received_us if item.ts is None else to_epoch_us(item.ts)
        out = Outcome(facility=facility)
        try:
            reading = validate_fields(
                device=device,
                metric=signal,
                ts_us=ts_us,
                value=item.value,
                unit=item.unit,
                quality=item.quality,
                received_us=received_us,
                window=self.window,
                facility=facility,
                catalog=self.catalog,
            )
        except InvalidInputError as exc:  # a bad reading, counted as HTTP's 202 would report it
            out.rejected[exc.code] += 1
        else:
            out.readings.append(reading)
        return out
