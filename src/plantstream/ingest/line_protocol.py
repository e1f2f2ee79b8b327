"""The InfluxDB line protocol as an ingest format (``fmt="line"``), for Telegraf, Node-RED and
the ``influxdb-client`` libraries: each field of a line becomes one reading.

The mapping (docs/line-protocol.md): the facility is the request's bucket (v2) or database
(v1), or the key's own facility; a ``facility`` tag must agree with it. The device is the
``device`` or ``machine`` tag, else the measurement. The signal is the field key (``signal=field``)
or ``<measurement>_<field>`` (``signal=measurement_field``). Tags ``unit`` and ``quality`` mean
what they mean in JSON; any other tag is refused per line (``unmapped_tag``): dropping it would
merge two series into one sensor and lose one of them silently.

A request's own parameters (facility, precision, naming) travel in a first header line that
the adapter writes with ``line_payload`` (a ``#`` comment to line protocol), since a codec
sees only bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.ingest.line_parse import Line, LineSyntaxError, StringValue, parse_line
from plantstream.model import ParsedBatch, Reading, Reject, TimeWindow, ValueType, check_id
from plantstream.model.readings import validate_fields
from plantstream.model.signals import DEFAULT_CATALOG, SignalCatalog, SignalDef
from plantstream.model.values import Value

HEADER = "#plantstream-line"
NS_PER_UNIT = {"ns": 1, "n": 1, "us": 1_000, "u": 1_000, "ms": 1_000_000,
               "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}  # fmt: skip
SIGNAL_NAMING = ("field", "measurement_field")
DEVICE_TAGS = ("device", "machine")
_KNOWN_TAGS = frozenset({"facility", "unit", "quality", *DEVICE_TAGS})


class LineProtocolError(InvalidInputError):
    """The body is not line protocol at ``line`` (1-based, of the body): nothing was accepted."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(ErrorCode.INVALID_LINE_PROTOCOL, f"unable to parse line {line}: {message}")
        self.line = line


@dataclass(frozen=True, slots=True)
class LineOptions:
    """What the adapter knows about a request beside its body."""

    facility: str | None = None
    precision: str = "ns"
    signal: str = "field"


def line_payload(body: bytes, options: LineOptions) -> bytes:
    """The payload of ``fmt="line"``: a header line with ``options``, then the body unchanged."""
    if options.precision not in NS_PER_UNIT:
        raise InvalidInputError(
            ErrorCode.INVALID_REQUEST,
            f"precision must be one of {', '.join(NS_PER_UNIT)}",
        )
    if options.signal not in SIGNAL_NAMING:
        raise InvalidInputError(
            ErrorCode.INVALID_REQUEST, "signal naming is field or measurement_field"
        )
    if options.facility is not None:
        check_id(options.facility, "facility (bucket or db)")
    facility = options.facility or ""
    head = f"{HEADER} facility={facility} precision={options.precision} signal={options.signal}\n"
    return head.encode() + body


def _options(header: str) -> LineOptions:
    values = dict(part.partition("=")[::2] for part in header.split(" ")[1:])
    return LineOptions(
        facility=values.get("facility") or None,
        precision=values.get("precision", "ns"),
        signal=values.get("signal", "field"),
    )


def split_payload(payload: bytes) -> tuple[LineOptions, list[tuple[int, Line]]]:
    """The options and each line of a ``line_payload``, with its 1-based number in the body.

    Raises ``LineProtocolError`` at the first line that breaks the syntax, or
    ``InvalidInputError`` for a payload without the adapter's header or not UTF-8.
    """
    head, _, body = payload.partition(b"\n")
    if not head.startswith(HEADER.encode()):
        raise InvalidInputError(ErrorCode.UNDECODABLE_RECORD, "not a line protocol payload")
    options = _options(head.decode("ascii", "replace"))
    if options.precision not in NS_PER_UNIT or options.signal not in SIGNAL_NAMING:
        raise InvalidInputError(ErrorCode.UNDECODABLE_RECORD, "bad line protocol header")
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        bad = body[: exc.start].count(b"\n") + 1
        raise LineProtocolError(bad, "not valid UTF-8") from None
    lines: list[tuple[int, Line]] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        text_line = raw.strip(" \t\r")
        if not text_line or text_line[0] == "#":
            continue
        try:
            lines.append((number, parse_line(text_line)))
        except LineSyntaxError as exc:
            raise LineProtocolError(number, f"{exc}: {text_line[:80]!r}") from None
    return options, lines


def reading_lines(payload: bytes) -> list[tuple[int, str]]:
    """For each reading ``decode`` makes of ``payload``, by index: its line number and field."""
    _, lines = split_payload(payload)
    return [(number, key) for number, line in lines for key in line.fields]


class LineProtocolCodec:
    """``fmt="line"``: a ``line_payload`` into the readings of one facility."""

    name = "line"

    def decode(
        self,
        payload: bytes,
        *,
        received_us: int,
        window: TimeWindow,
        max_readings: int,
        catalog: SignalCatalog = DEFAULT_CATALOG,
    ) -> ParsedBatch:
        options, lines = split_payload(payload)
        facility = options.facility or _facility_from_tags(lines)
        check_id(facility, "facility")
        total = sum(len(line.fields) for _, line in lines)
        if not total:
            raise InvalidInputError(ErrorCode.EMPTY_BATCH, "the body holds no line")
        if total > max_readings:
            raise InvalidInputError(
                ErrorCode.BATCH_TOO_LARGE, f"at most {max_readings} fields per request"
            )
        scale = NS_PER_UNIT[options.precision]
        readings: list[Reading] = []
        rejected: list[Reject] = []
        index = 0
        ts_low, ts_high = received_us - window.max_past_us, received_us + window.max_future_us
        by_field = options.signal == "field"
        for number, line in lines:
            refusal = _line_refusal(line, facility)
            ts_us = received_us if line.timestamp is None else line.timestamp * scale // 1000
            device = line.tags.get("device") or line.tags.get("machine") or line.measurement
            unit = line.tags.get("unit")
            quality = line.tags.get("quality", "good")
            plain = refusal is None and quality == "good" and ts_low <= ts_us <= ts_high
            plain = plain and _valid_id(device)
            for key, value in line.fields.items():
                metric = key if by_field else f"{line.measurement}_{key}"
                spec = catalog.get(facility, metric)
                if (  # the ordinary field, checked inline; anything else gets its reason below
                    plain
                    and spec is not None
                    and spec.value_type is ValueType.DOUBLE
                    and type(value) is float
                    and (unit is None or unit == spec.unit)
                    and (spec.low is None or spec.low <= value)
                    and (spec.high is None or value <= spec.high)
                ):
                    readings.append(Reading(device, metric, ts_us, value + 0.0, 0))
                    index += 1
                    continue
                where = f"line {number}, field {key[:64]!r}"
                try:
                    if refusal is not None:
                        raise refusal
                    readings.append(
                        validate_fields(
                            device=device,
                            metric=metric,
                            ts_us=ts_us,
                            value=_field_value(value, spec),
                            unit=unit,
                            quality=quality,
                            received_us=received_us,
                            window=window,
                            facility=facility,
                            catalog=catalog,
                        )
                    )
                except InvalidInputError as exc:
                    rejected.append(Reject(index, ErrorCode(exc.code), f"{where}: {exc.message}"))
                index += 1
        return ParsedBatch(facility, readings, rejected)


def _valid_id(value: str) -> bool:
    try:
        check_id(value, "device")  # remembered per value: cheap for the devices of a plant
    except InvalidInputError:
        return False
    return True


def _facility_from_tags(lines: list[tuple[int, Line]]) -> str:
    for _, line in lines:
        if "facility" in line.tags:
            return line.tags["facility"]
    raise InvalidInputError(
        ErrorCode.INVALID_REQUEST,
        "no facility: give the bucket (v2) or db (v1) parameter, a facility tag, "
        "or use a key of one facility",
    )


def _line_refusal(line: Line, facility: str) -> InvalidInputError | None:
    """Why every reading of ``line`` is refused, or None."""
    extra = sorted(set(line.tags) - _KNOWN_TAGS)
    if extra:
        return InvalidInputError(
            ErrorCode.UNMAPPED_TAG,
            f"tag {extra[0][:64]!r} has no place in facility/device/signal; known tags: "
            f"{', '.join(sorted(_KNOWN_TAGS))}",
        )
    tagged = line.tags.get("facility")
    if tagged is not None and tagged != facility:
        return InvalidInputError(
            ErrorCode.FORBIDDEN_FACILITY,
            f"the facility tag {tagged[:64]!r} is not the request's facility {facility!r}",
        )
    return None


_TEXT = frozenset({ValueType.STRING, ValueType.STATE})


def _field_value(value: float | int | bool | StringValue, spec: SignalDef | None) -> Value:
    """A field as its signal's value: a string field for a string or state signal, an
    integer (``1i``) for an int64 one and a boolean for a bool one as they are; any other
    numeric field as a float, which ``validate_fields`` checks against the signal (a field of
    no known signal goes as it is: its refusal is ``unknown_metric``, not its type)."""
    if spec is None:
        return value.text if isinstance(value, StringValue) else value
    if isinstance(value, StringValue) and spec.value_type in _TEXT:
        return value.text
    if isinstance(value, bool) and spec.value_type is ValueType.BOOL:
        return value
    if type(value) is int and spec.value_type is ValueType.INT64:
        return value
    return _number(value)


def _number(value: float | int | bool | StringValue) -> float:
    """A numeric field as a float; a string field is refused but for a string or state signal."""
    if isinstance(value, StringValue):
        raise InvalidInputError(
            ErrorCode.UNSUPPORTED_VALUE_TYPE,
            "a string field is accepted only for a string or state signal: send numbers, "
            "integers (1i) or booleans",
        )
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        raise InvalidInputError(
            ErrorCode.UNSUPPORTED_VALUE_TYPE,
            "integer beyond 2**53: it cannot be stored exactly as a double yet",
        )
    return float(value)
