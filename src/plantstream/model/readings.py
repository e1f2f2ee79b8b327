"""Readings, their wire forms and their validation: one place for ingest and processor alike.

Every rejection carries a machine-readable code from ``RejectCode`` and a human message.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec
import numpy as np
import numpy.typing as npt

from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.model import units
from plantstream.model.metrics import QUALITIES
from plantstream.model.signals import (
    DEFAULT_CATALOG,
    SignalCatalog,
    SignalDef,
    UnknownSignalPolicy,
    ValueType,
)
from plantstream.model.values import (
    MAX_MAGNITUDE,
    TEXT_LUT,
    TYPE_CODES,
    Value,
    coerce_value,
    typed_at,
)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
_ID = re.compile(ID_PATTERN[1:-1])  # used with fullmatch: "$" would let "id\n" pass
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

Identifier = Annotated[str, msgspec.Meta(max_length=64)]


# why a body or a reading was refused: the one code list, shared with every other refusal
RejectCode = ErrorCode


class ReadingIn(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One reading as a client sends it."""

    device: str
    metric: str
    ts: datetime
    # a number, an integer (exact: int64 counters), a boolean or a string (state, text)
    value: bool | int | float | str
    # UNSET (not None) for a field the client left out: the duplicate-key check counts them
    unit: str | msgspec.UnsetType | None = msgspec.UNSET
    quality: str | msgspec.UnsetType = msgspec.UNSET
    # the source's own quality code (OPC UA StatusCode uint32, Sparkplug quality), kept as is
    quality_code: int | msgspec.UnsetType = msgspec.UNSET


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/readings`` body with every reading well-typed (the fast path)."""

    facility: str
    readings: list[ReadingIn]


class LooseBatchIn(msgspec.Struct, forbid_unknown_fields=True):
    """The same body with readings left raw, to report each bad reading on its own."""

    facility: str
    readings: list[msgspec.Raw]


class Reading(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A validated reading in canonical units; ``ts_us`` is microseconds since the epoch.

    ``value`` has the Python type of ``value_type``: float (double), int (int64, exact),
    bool, or str (string, state). ``quality_code`` is the source's raw code, if it sent one.
    """

    device: str
    metric: str
    ts_us: int
    value: Value
    quality: int = 0
    value_type: ValueType = ValueType.DOUBLE
    quality_code: int | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """A reading that was refused, by its index in the batch."""

    index: int
    code: RejectCode
    reason: str


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """How far from the receiving clock a reading's timestamp may be."""

    max_past_us: int = 7 * 24 * 3600 * 1_000_000
    max_future_us: int = 600 * 1_000_000


@dataclass(slots=True)
class ParsedBatch:
    facility: str
    readings: list[Reading]
    rejected: list[Reject]


def to_epoch_us(ts: datetime) -> int:
    """Exact microseconds since the epoch for an aware datetime."""
    return (ts - _EPOCH) // _MICROSECOND


def from_epoch_us(ts_us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ts_us)


def now_us() -> int:
    return to_epoch_us(datetime.now(UTC))


@functools.lru_cache(maxsize=65536)
def is_valid_id(value: str) -> bool:
    # ids repeat endlessly (a plant has a few thousand devices): remember the verdicts
    return _ID.fullmatch(value) is not None


def check_id(value: str, what: str) -> None:
    """Raise ``InvalidInputError(invalid_id)`` unless ``value`` is an allowed identifier."""
    if not is_valid_id(value):
        raise InvalidInputError(
            RejectCode.INVALID_ID,
            f"{what} must be 1-64 characters of A-Z a-z 0-9 _ . : -, "
            "starting with a letter or digit",
        )


QUALITY_CODE_MAX = 2**32 - 1  # OPC UA StatusCode is a uint32; Sparkplug's quality fits


def signal_for(catalog: SignalCatalog, facility: str, metric: str, unit: str | None) -> SignalDef:
    """The signal ``metric`` of ``facility``; an unknown one per the facility's policy.

    Raises ``InvalidInputError(unknown_metric)`` under the ``refuse`` policy (the default);
    under ``register`` the reading is taken as an unclassified double in its own unit.
    """
    spec = catalog.get(facility, metric)
    if spec is not None:
        return spec
    if catalog.policy(facility) is UnknownSignalPolicy.REGISTER:
        check_id(metric, "metric")
        return SignalDef(metric, unit=unit or "", unclassified=True)
    raise InvalidInputError(RejectCode.UNKNOWN_METRIC, f"unknown metric {metric[:64]!r}")


def _check_quality(quality: str | int, quality_code: int | None) -> int:
    if isinstance(quality, str):
        code = QUALITIES.get(quality)
        if code is None:
            raise InvalidInputError(
                RejectCode.UNKNOWN_QUALITY, "quality must be one of good, uncertain, bad"
            )
    elif quality in (0, 1, 2):
        code = quality
    else:
        raise InvalidInputError(RejectCode.UNKNOWN_QUALITY, "quality code must be 0, 1 or 2")
    if quality_code is not None and not (0 <= quality_code <= QUALITY_CODE_MAX):
        raise InvalidInputError(
            RejectCode.UNKNOWN_QUALITY, f"quality_code must be within 0..{QUALITY_CODE_MAX}"
        )
    return code


def validate_fields(
    *,
    device: str,
    metric: str,
    ts_us: int,
    value: Value,
    unit: str | None,
    quality: str | int,
    received_us: int,
    window: TimeWindow,
    facility: str = "",
    catalog: SignalCatalog = DEFAULT_CATALOG,
    quality_code: int | None = None,
) -> Reading:
    """Validate one reading's fields and return it in canonical units and its signal's type.

    Raises ``InvalidInputError`` with the first problem found. ``received_us`` is when the
    reading reached plantstream: the time window is measured from it, so a record that waited
    in the stream is judged as it was when it arrived. The signal comes from ``catalog``
    (``facility``'s definitions); its unit conversions from ``model/units.py``.
    """
    check_id(device, "device")
    spec = signal_for(catalog, facility, metric, unit)
    if unit is not None and unit != spec.unit and (unit not in spec.accepted_units):
        raise InvalidInputError(
            RejectCode.UNKNOWN_UNIT,
            f"unit {str(unit)[:16]!r} is not one of {', '.join(spec.units)} for {metric}",
        )
    typed = coerce_value(spec, value)
    if unit is not None and unit != spec.unit:
        if spec.value_type is not ValueType.DOUBLE:
            pair = units.linear(unit, spec.unit)
            if pair != (1.0, 0.0):
                raise InvalidInputError(
                    RejectCode.UNKNOWN_UNIT, f"{metric} values are not converted from {unit!r}"
                )
        else:
            typed = units.convert(float(typed), unit, spec.unit)
    if spec.numeric and not isinstance(typed, bool):
        low, high = _low(spec), _high(spec)
        if not (low <= typed <= high):  # type: ignore[operator]
            raise InvalidInputError(
                RejectCode.VALUE_OUT_OF_RANGE,
                f"{metric} must be within {low:g}..{high:g} {spec.unit}",
            )
    quality_value = _check_quality(quality, quality_code)
    if ts_us < received_us - window.max_past_us:
        raise InvalidInputError(RejectCode.TIMESTAMP_TOO_OLD, "timestamp is too far in the past")
    if ts_us > received_us + window.max_future_us:
        raise InvalidInputError(
            RejectCode.TIMESTAMP_IN_FUTURE, "timestamp is too far in the future"
        )
    if isinstance(typed, float):
        typed += 0.0  # -0.0 -> 0.0
    return Reading(device, metric, ts_us, typed, quality_value, spec.value_type, quality_code)


def validate_columns(
    *,
    facility: str,
    device: str,
    metrics: list[str],
    metric_idx: npt.NDArray[np.uint8],
    ts_us: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    quality: npt.NDArray[np.uint8],
    received_us: int,
    window: TimeWindow,
    catalog: SignalCatalog = DEFAULT_CATALOG,
    vtype: npt.NDArray[np.uint8] | None = None,
    ints: npt.NDArray[np.int64] | None = None,
    texts: npt.NDArray[np.object_] | None = None,
    qcode: npt.NDArray[np.int64] | None = None,
    memo: dict[tuple[str, tuple[str, ...]], MetricTables] | None = None,
) -> tuple[npt.NDArray[np.bool_], list[tuple[int, InvalidInputError]]]:
    """Re-check one device's readings, already in canonical form, column-wise.

    Returns a mask of the valid readings and, for each invalid one, its index and the
    ``InvalidInputError`` that ``validate_fields`` gives it. The vectorised test is the
    common case; ``validate_fields`` stays the one place that words each reason. NaN fails
    every comparison, so it never slips through. ``vtype`` (None: all doubles) says each
    reading's value type (``model/values.py`` codes); ints and texts hold the exact values.
    ``memo`` (one per batch: the catalog does not change within it) keeps the per-signal
    tables of each (facility, metric list) across the batch's devices.
    """
    n = len(ts_us)
    if not (is_valid_id(facility) and is_valid_id(device)):
        what = "facility" if not is_valid_id(facility) else "device"
        error = InvalidInputError(RejectCode.INVALID_ID, f"{what} is not an allowed identifier")
        return np.zeros(n, dtype=bool), [(i, error) for i in range(n)]
    key = (facility, tuple(metrics))
    tables = memo.get(key) if memo is not None else None
    if tables is None:
        tables = metric_tables(catalog, facility, metrics)
        if memo is not None:
            memo[key] = tables
    idx = np.minimum(metric_idx, len(metrics)).astype(np.intp)
    row_type = vtype if vtype is not None else np.zeros(n, dtype=np.uint8)
    ok = valid_mask(
        tables,
        idx,
        row_type,
        values=values,
        ts_us=ts_us,
        received_us=received_us,
        window=window,
        quality=quality,
        qcode=qcode,
        texts=texts,
    )
    rejects: list[tuple[int, InvalidInputError]] = []
    for i in np.flatnonzero(~ok).tolist():
        index = int(idx[i])
        code = int(row_type[i])
        try:
            validate_fields(
                device=device,
                metric=metrics[index] if index < len(metrics) else f"#{index}",
                ts_us=int(ts_us[i]),
                value=typed_at(code, float(values[i]), ints, texts, i),
                unit=None,
                quality=int(quality[i]),
                received_us=received_us,
                window=window,
                facility=facility,
                catalog=catalog,
                quality_code=None if qcode is None or qcode[i] < 0 else int(qcode[i]),
            )
        except InvalidInputError as exc:
            rejects.append((i, exc))
        else:  # the two checks disagree (a value of another type): refuse rather than guess
            rejects.append(
                (i, InvalidInputError(RejectCode.INVALID_READING, "value of the wrong type"))
            )
    return ok, rejects


def valid_mask(
    tables: MetricTables,
    idx: npt.NDArray[np.intp],
    row_type: npt.NDArray[np.uint8],
    *,
    values: npt.NDArray[np.float64],
    ts_us: npt.NDArray[np.int64],
    received_us: int | npt.NDArray[np.int64],
    window: TimeWindow,
    quality: npt.NDArray[np.uint8],
    qcode: npt.NDArray[np.int64] | None,
    texts: npt.NDArray[np.object_] | None,
) -> npt.NDArray[np.bool_]:
    """Which readings pass, column-wise: ``idx`` indexes ``tables`` (one record's, or a
    batch's tables side by side), ``received_us`` is one time or one per reading. The one
    place the vectorised rules are written: ``validate_columns`` (a record) and the
    processor's batch check (``processor/decode.py``) both call it."""
    known, numeric, low, high, want = tables
    ranged = numeric[idx]
    wanted = want[idx]
    ok: npt.NDArray[np.bool_] = (
        (wanted == row_type)
        & (wanted != UNKNOWN_TYPE)  # a metric without a signal is never valid, whatever its type
        & (~ranged | ((low[idx] <= values) & (values <= high[idx])))
        & (ts_us >= received_us - window.max_past_us)
        & (ts_us <= received_us + window.max_future_us)
        & (quality <= 2)
    )
    if qcode is not None:
        ok &= qcode <= QUALITY_CODE_MAX
    if texts is not None:
        for i in np.flatnonzero(ok & TEXT_LUT[row_type]).tolist():
            spec = known[int(idx[i])]
            if spec is not None and not _text_ok(spec, texts[i]):
                ok[i] = False
    return ok


_RANGED = frozenset({ValueType.DOUBLE, ValueType.INT64})
# per metric of a record (and one past the end): its signal, ranged or not, low, high, type code
# (UNKNOWN_TYPE for a name without a signal: a record may carry that code too, so it is
# refused by itself, not by the type comparison)
UNKNOWN_TYPE = 255
MetricTables = tuple[
    list[SignalDef | None],
    npt.NDArray[np.bool_],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.uint8],
]


def metric_tables(catalog: SignalCatalog, facility: str, metrics: list[str]) -> MetricTables:
    """What ``validate_columns`` checks per metric index, built once per metric list."""
    known: list[SignalDef | None] = []
    for name in metrics:
        try:
            known.append(signal_for(catalog, facility, name, None))
        except InvalidInputError:
            known.append(None)
    known.append(None)  # None: index past the table
    numeric = [m is not None and m.value_type in _RANGED for m in known]
    low = np.array([_low(m) if ok else -np.inf for m, ok in zip(known, numeric, strict=True)])
    high = np.array([_high(m) if ok else np.inf for m, ok in zip(known, numeric, strict=True)])
    low[[i for i, m in enumerate(known) if m is None]] = np.inf  # unknown: never valid
    want = np.array(
        [TYPE_CODES[m.value_type] if m else UNKNOWN_TYPE for m in known], dtype=np.uint8
    )
    return known, np.array(numeric), low, high, want


def _low(spec: SignalDef | None) -> float:
    """A signal's lowest plausible value: its declared one, never below ``-MAX_MAGNITUDE``."""
    return -MAX_MAGNITUDE if spec is None or spec.low is None else max(spec.low, -MAX_MAGNITUDE)


def _high(spec: SignalDef | None) -> float:
    return MAX_MAGNITUDE if spec is None or spec.high is None else min(spec.high, MAX_MAGNITUDE)


value_bounds = (_low, _high)  # for the adapters' own fast paths (Sparkplug)


def _text_ok(spec: SignalDef, text: object) -> bool:
    try:
        coerce_value(spec, text)  # type: ignore[arg-type]
    except InvalidInputError:
        return False
    return True


def _validate_in(  # noqa: PLR0917 - the hot loop calls it positionally
    facility: str,
    reading: ReadingIn,
    received_us: int,
    window: TimeWindow,
    ts_low: int,
    ts_high: int,
    catalog: SignalCatalog,
) -> Reading:
    ts = reading.ts
    if ts.tzinfo is None:
        raise InvalidInputError(
            RejectCode.TIMESTAMP_WITHOUT_OFFSET,
            "timestamp needs a UTC offset (RFC 3339), e.g. 2026-01-01T12:00:00Z",
        )
    # whole seconds from the float are exact at these magnitudes; microseconds from the field
    ts_us = math.floor(ts.timestamp()) * 1_000_000 + ts.microsecond
    spec = catalog.get(facility, reading.metric)
    value = reading.value
    unit = None if reading.unit is msgspec.UNSET else reading.unit
    quality_name = "good" if reading.quality is msgspec.UNSET else reading.quality
    quality = QUALITIES.get(quality_name)
    if (  # the ordinary reading, checked inline; anything else gets the exact reason below
        spec is not None
        and type(value) is float
        and spec.value_type is ValueType.DOUBLE
        and reading.quality_code is msgspec.UNSET
        and (unit is None or unit == spec.unit)
        # _low(spec) <= value <= _high(spec), without two calls per reading (NaN fails it)
        and -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE
        and (spec.low is None or spec.low <= value)
        and (spec.high is None or value <= spec.high)
        and ts_low <= ts_us <= ts_high
        and quality is not None
        and is_valid_id(reading.device)
    ):
        return Reading(reading.device, reading.metric, ts_us, value + 0.0, quality)
    return validate_fields(
        device=reading.device,
        metric=reading.metric,
        ts_us=ts_us,
        value=value,
        unit=unit,
        quality=quality_name,
        received_us=received_us,
        window=window,
        facility=facility,
        catalog=catalog,
        quality_code=None if reading.quality_code is msgspec.UNSET else reading.quality_code,
    )


_MICROS = operator.attrgetter("microsecond")
_NO_UNIT: frozenset[object] = frozenset({msgspec.UNSET, None})
_QUALITY_OF: dict[object, int] = {msgspec.UNSET: QUALITIES["good"]}
_QUALITY_OF.update(QUALITIES)


def _stamps_us(stamps: list[datetime]) -> npt.NDArray[np.int64] | None:
    """Each timestamp in microseconds exactly as ``_validate_in`` computes it (whole seconds
    from the float, microseconds from the field); None if one has no UTC offset.

    Not deduplicated by instant: an aware datetime's hash costs more than its ``timestamp``.
    """
    if None in {ts.tzinfo for ts in stamps}:
        return None
    n = len(stamps)
    seconds = np.fromiter(map(datetime.timestamp, stamps), dtype=np.float64, count=n)
    micros = np.fromiter(map(_MICROS, stamps), dtype=np.int64, count=n)
    return np.floor(seconds).astype(np.int64) * 1_000_000 + micros


def _validate_bulk(
    facility: str,
    items: Sequence[ReadingIn | Reject],
    ts_low: int,
    ts_high: int,
    catalog: SignalCatalog,
) -> list[Reading] | None:
    """The readings of a batch that is all the ordinary case, checked a column at a time;
    None if any reading might not be (then each is judged on its own, with its reason).

    The ordinary reading is the one ``_validate_in`` passes inline: a plain float of a known
    double signal in its own unit (or none), a named quality or none, no quality code, a
    valid device id, a timestamp with an offset inside the window. Each field is read out
    with ``map`` (no Python frame per reading) and judged once per distinct value (metrics,
    units, devices, qualities, offsets) or with numpy (values, timestamps): the same tests,
    so a batch this passes is exactly what the per-reading path would accept.
    """
    n = len(items)
    # list and set comprehensions, not map(attrgetter): half the cost on Python 3.11
    if {type(r) for r in items} != {ReadingIn}:
        return None
    rs: Sequence[ReadingIn] = items  # type: ignore[assignment]  # just checked
    if {r.quality_code for r in rs} != {msgspec.UNSET}:
        return None
    values = [r.value for r in rs]
    if {type(v) for v in values} != {float}:
        return None
    qualities = {r.quality for r in rs}
    if not qualities <= _QUALITY_OF.keys():
        return None
    metrics = [r.metric for r in rs]
    distinct = set(metrics)
    units = {r.unit for r in rs}
    pairs = (
        {(m, None) for m in distinct}
        if units <= _NO_UNIT
        else {(m, u) for m in distinct for u in units}
        if len(distinct) == 1
        else {(r.metric, r.unit) for r in rs}
    )
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    for metric, unit in pairs:
        spec = catalog.get(facility, metric)
        if (
            spec is None
            or spec.value_type is not ValueType.DOUBLE
            or (unit not in _NO_UNIT and unit != spec.unit)
        ):
            return None
        low[metric], high[metric] = _low(spec), _high(spec)
    devices = [r.device for r in rs]
    if not all(map(is_valid_id, set(devices))):
        return None
    ts_us = _stamps_us([r.ts for r in rs])
    if ts_us is None or not (ts_low <= int(ts_us.min()) and int(ts_us.max()) <= ts_high):
        return None
    column = np.array(values, dtype=np.float64)
    lows: float | npt.NDArray[np.float64]
    highs: float | npt.NDArray[np.float64]
    if len(low) == 1:
        lows, highs = next(iter(low.values())), next(iter(high.values()))
    else:
        lows = np.array([low[m] for m in metrics], dtype=np.float64)
        highs = np.array([high[m] for m in metrics], dtype=np.float64)
    if not bool(np.all((lows <= column) & (column <= highs))):  # NaN fails it
        return None
    quality: list[int] | itertools.repeat[int] = (
        itertools.repeat(_QUALITY_OF[qualities.pop()], n)
        if len(qualities) == 1
        else [_QUALITY_OF[r.quality] for r in rs]
    )
    # + 0.0: -0.0 -> 0.0, as the per-reading path does
    return list(map(Reading, devices, metrics, ts_us.tolist(), (column + 0.0).tolist(), quality))


_batch_decoder = msgspec.json.Decoder(BatchIn)
_loose_decoder = msgspec.json.Decoder(LooseBatchIn)
_reading_decoder = msgspec.json.Decoder(ReadingIn)


_READING_KEYS = (b'"device"', b'"metric"', b'"ts"', b'"value"')
_BATCH_KEYS = (b'"facility"', b'"readings"')


def _quotes_without_repeats(batch: BatchIn) -> int:
    """The ``"`` a body of no escapes holds when it decodes to ``batch`` and repeats no key:
    two per key and two per string value (``ts`` is always a string: ``strict`` decoding)."""
    rs, unset = batch.readings, msgspec.UNSET
    units = sum(1 for r in rs if r.unit is not unset)
    unit_texts = sum(1 for r in rs if type(r.unit) is str)
    qualities = sum(1 for r in rs if r.quality is not unset)
    codes = sum(1 for r in rs if r.quality_code is not unset)
    texts = sum(1 for r in rs if type(r.value) is str)
    # "facility", "readings", the facility; per reading its 4 keys, device, metric and ts
    keys, strings = 2 + 4 * len(rs) + units + qualities + codes, 1 + 3 * len(rs)
    return 2 * (keys + strings + unit_texts + qualities + texts)


def _may_repeat_a_key(body: bytes, batch: BatchIn) -> bool:
    """False only if no object of a well-typed ``body`` can hold the same key twice.

    JSON decoders (msgspec included) keep the last of repeated keys, so ``{"value": 1,
    "value": 999}`` would pass as 999 while another reader of the same bytes sees 1. In a
    body without a backslash every ``"`` opens or closes a key or a string value, and a
    repeated key adds at least two that the decoded batch does not account for: so when the
    body holds exactly as many as ``batch`` needs, none repeats (one pass over the body, a
    quarter of the cost of counting each key name). A body with escapes is judged by key
    name: every key a reading holds is a ``"name"`` run of bytes unless it is spelled with
    ``\\u`` escapes, so when no name occurs more often than the readings that hold it, none
    repeats. Only a body that fails its check is parsed again, exactly.
    """
    if b"\\" not in body:
        return body.count(b'"') != _quotes_without_repeats(batch)
    if b"\\u" in body:
        return True
    if any(body.count(key) > 1 for key in _BATCH_KEYS):
        return True
    n = len(batch.readings)
    if any(body.count(key) > n for key in _READING_KEYS):
        return True
    codes = body.count(b'"quality_code"')
    if codes and codes > sum(1 for r in batch.readings if r.quality_code is not msgspec.UNSET):
        return True
    units = body.count(b'"unit"')
    if units and units > sum(1 for r in batch.readings if r.unit is not msgspec.UNSET):
        return True
    qualities = body.count(b'"quality"')
    return bool(qualities) and qualities > sum(
        1 for r in batch.readings if r.quality is not msgspec.UNSET
    )


def repeated_keys(raw: bytes) -> list[str]:
    """The keys that the outermost JSON object of ``raw`` names more than once (exact)."""
    outermost: list[str] = []

    def note_repeats(pairs: list[tuple[str, object]]) -> None:
        # called innermost first, so the last call is the outermost object
        nonlocal outermost
        seen: set[str] = set()
        outermost = [k for k, _ in pairs if k in seen or seen.add(k)]  # type: ignore[func-returns-value]

    try:
        json.loads(raw, object_pairs_hook=note_repeats)
    except (ValueError, RecursionError):
        return []  # msgspec has already judged the syntax; only repeats matter here
    return outermost


def _refuse_repeats(raw: bytes, where: str) -> None:
    repeats = repeated_keys(raw)
    if repeats:
        raise InvalidInputError(
            RejectCode.DUPLICATE_KEY, f"{where} names {repeats[0]!r} more than once"
        )


def _decode_body(body: bytes) -> tuple[str, list[ReadingIn | Reject]]:
    try:
        batch = _batch_decoder.decode(body)
        if not _may_repeat_a_key(body, batch):
            return batch.facility, list(batch.readings)
    except msgspec.DecodeError:
        pass  # one bad reading spoils the typed decode: redo it reading by reading
    except RecursionError:
        raise InvalidInputError(RejectCode.INVALID_JSON, "body is nested too deeply") from None
    except UnicodeDecodeError:  # msgspec reports bad UTF-8 in strings this way
        raise InvalidInputError(RejectCode.INVALID_JSON, "body is not valid UTF-8") from None
    try:
        loose = _loose_decoder.decode(body)
    except RecursionError:
        raise InvalidInputError(RejectCode.INVALID_JSON, "body is nested too deeply") from None
    except msgspec.ValidationError as exc:
        raise InvalidInputError(RejectCode.INVALID_BODY, f"invalid body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidInputError(RejectCode.INVALID_JSON, f"body is not valid JSON: {exc}") from None
    _refuse_repeats(body, "the body")
    items: list[ReadingIn | Reject] = []
    for index, raw in enumerate(loose.readings):
        try:
            _refuse_repeats(bytes(raw), "the reading")
            items.append(_reading_decoder.decode(raw))
        except InvalidInputError as exc:
            items.append(Reject(index, RejectCode(exc.code), exc.message))
        except msgspec.DecodeError as exc:
            items.append(Reject(index, RejectCode.INVALID_READING, str(exc)))
        except RecursionError:
            items.append(Reject(index, RejectCode.INVALID_READING, "nested too deeply"))
    return loose.facility, items


def parse_batch(
    body: bytes,
    *,
    received_us: int,
    window: TimeWindow,
    max_readings: int,
    catalog: SignalCatalog = DEFAULT_CATALOG,
) -> ParsedBatch:
    """Decode and validate a ``POST /v1/readings`` body.

    A body that is not a batch at all raises ``InvalidInputError``; a batch with some bad
    readings returns the good ones and a ``Reject`` for each bad one, by index. Signals are
    checked against ``catalog`` (the facility's definitions; the default catalog if none).
    """
    facility, items = _decode_body(body)
    return validate_batch(
        facility,
        items,
        received_us=received_us,
        window=window,
        max_readings=max_readings,
        catalog=catalog,
    )


def validate_batch(
    facility: str,
    items: Sequence[ReadingIn | Reject],
    *,
    received_us: int,
    window: TimeWindow,
    max_readings: int,
    catalog: SignalCatalog = DEFAULT_CATALOG,
) -> ParsedBatch:
    """Validate a decoded batch (of any wire format): the readings of ``facility``, each a
    ``ReadingIn`` or already a ``Reject`` (it did not decode), in request order."""
    check_id(facility, "facility")
    if not items:
        raise InvalidInputError(RejectCode.EMPTY_BATCH, "readings must not be empty")
    if len(items) > max_readings:
        raise InvalidInputError(
            RejectCode.BATCH_TOO_LARGE, f"at most {max_readings} readings per request"
        )
    ts_low = received_us - window.max_past_us
    ts_high = received_us + window.max_future_us
    bulk = _validate_bulk(facility, items, ts_low, ts_high, catalog)
    if bulk is not None:
        return ParsedBatch(facility, bulk, [])
    return validate_each(facility, items, received_us, window, catalog)


def validate_each(
    facility: str,
    items: Sequence[ReadingIn | Reject],
    received_us: int,
    window: TimeWindow,
    catalog: SignalCatalog,
) -> ParsedBatch:
    """``items`` judged reading by reading, each refusal with its own reason (the reference
    the column-wise check of ``validate_batch`` agrees with)."""
    readings: list[Reading] = []
    rejected: list[Reject] = []
    ts_low = received_us - window.max_past_us
    ts_high = received_us + window.max_future_us
    for index, item in enumerate(items):
        if isinstance(item, Reject):
            rejected.append(item)
            continue
        try:
            readings.append(
                _validate_in(facility, item, received_us, window, ts_low, ts_high, catalog)
            )
        except InvalidInputError as exc:
            rejected.append(Reject(index, RejectCode(exc.code), exc.message))
    return ParsedBatch(facility, readings, rejected)
