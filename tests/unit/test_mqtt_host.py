"""The Sparkplug B host's rules, message by message: seq, bdSeq, aliases, types, names."""

from __future__ import annotations

import time

import pytest

from plantstream.errors import ConfigError, ErrorCode
from plantstream.model import (
    DEFAULT_SIGNALS,
    FixedCatalog,
    SignalDef,
    SignalKind,
    TimeWindow,
    ValueType,
)
from plantstream.mqtt.outcome import Outcome
from plantstream.mqtt.plain import PlainTopics
from plantstream.mqtt.sparkplug import edge
from plantstream.mqtt.sparkplug.host import SparkplugHost
from plantstream.mqtt.sparkplug.mapping import NameRule
from plantstream.mqtt.sparkplug.sparkplug_b_pb2 import Payload
from plantstream.store.sparkplug_state import BirthState


class MemoryBirths:
    """The births a restarted host would find (as Redis keeps them)."""

    def __init__(self) -> None:
        self.births: dict[str, BirthState] = {}

    def load(self, key: str) -> BirthState | None:
        return self.births.get(key)

    def devices(self, facility: str, node: str) -> list[str]:
        return [k for k in self.births if k.startswith(node + "/")]


NOW_MS = int(time.time() * 1000)
NOW_US = NOW_MS * 1000
METRICS = {"temperature": (1, 20.0), "spindle/pressure": (2, 1.0)}


def _host(store: MemoryBirths | None = None, **kw) -> SparkplugHost:
    return SparkplugHost(rule=NameRule(), window=TimeWindow(), store=store or MemoryBirths(), **kw)


def _born(host: SparkplugHost) -> None:
    host.handle(
        "spBv1.0/f1/NBIRTH/e1", edge.node_birth(bdseq=3, timestamp_ms=NOW_MS, metrics={}), NOW_US
    )
    dbirth = edge.device_birth(
        seq=1, timestamp_ms=NOW_MS, metrics=METRICS, units={"temperature": "degF"}
    )
    host.handle("spBv1.0/f1/DBIRTH/e1/d1", dbirth, NOW_US)


def _ddata(seq: int, values=((1, 212.0), (2, 2.5))) -> bytes:
    return edge.data(seq=seq, timestamp_ms=NOW_MS, values=[(a, v, NOW_MS) for a, v in values])


def test_data_by_alias_lands_on_the_mapped_machine_in_canonical_units():
    host = _host()
    _born(host)
    out = host.handle("spBv1.0/f1/DDATA/e1/d1", _ddata(2), NOW_US)
    assert out.facility == "f1"
    assert [(r.device, r.metric, round(r.value, 6)) for r in out.readings] == [
        ("e1.d1", "temperature", 100.0),
        ("e1.d1.spindle", "pressure", 2.5),
    ]
    assert out.rebirths == []


def test_a_seq_gap_asks_for_one_rebirth_and_a_redelivery_does_not():
    host = _host(rebirth_interval=60)
    _born(host)
    assert host.handle("spBv1.0/f1/DDATA/e1/d1", _ddata(2), NOW_US).rebirths == []
    assert host.handle("spBv1.0/f1/DDATA/e1/d1", _ddata(2), NOW_US).rebirths == []  # again
    gap = host.handle("spBv1.0/f1/DDATA/e1/d1", _ddata(7), NOW_US)
    assert gap.rebirths == [("f1", "e1")]
    assert len(gap.readings) == 2  # the data itself is good
    assert host.handle("spBv1.0/f1/DDATA/e1/d1", _ddata(20), NOW_US).rebirths == []  # 60 s


def test_seq_wraps_after_255():
    host = _host()
    _born(host)
    for seq in range(2, 300):
        assert host.handle("spBv1.0/f1/DDATA/e1/d1", _ddata(seq), NOW_US).rebirths == []


def test_an_unknown_alias_or_node_parks_the_message_and_asks_for_a_rebirth():
    host = _host()
    out = host.handle("spBv1.0/f1/DDATA/e1/d1", _ddata(5), NOW_US)
    assert out.park == "sparkplug:node:f1/e1"
    assert out.rebirths == [("f1", "e1")]
    assert out.readings == []
    _born(host)
    assert host.ready("spBv1.0/f1/DDATA/e1/d1")
    bad = host.handle("spBv1.0/f1/DDATA/e1/d1", _ddata(2, values=((9, 1.0),)), NOW_US)
    assert bad.park == "sparkplug:node:f1/e1"


def test_a_restarted_host_goes_on_from_the_stored_birth():
    store = MemoryBirths()
    first = _host(store)
    _born(first)
    for key, state in {
        **first.handle(
            "spBv1.0/f1/NBIRTH/e1",
            edge.node_birth(bdseq=3, timestamp_ms=NOW_MS, metrics={}),
            NOW_US,
        ).births
    }.items():
        store.births[key] = state
    dbirth = edge.device_birth(seq=1, timestamp_ms=NOW_MS, metrics=METRICS)
    store.births.update(first.handle("spBv1.0/f1/DBIRTH/e1/d1", dbirth, NOW_US).births)
    second = _host(store)
    out = second.handle("spBv1.0/f1/DDATA/e1/d1", _ddata(2), NOW_US)
    assert len(out.readings) == 2
    assert out.rebirths == []


def test_ndeath_with_another_bdseq_is_an_old_will_and_ignored():
    host = _host()
    _born(host)
    old = host.handle("spBv1.0/f1/NDEATH/e1", edge.node_death(bdseq=2, timestamp_ms=NOW_MS), NOW_US)
    assert old.deaths == {}
    dead = host.handle(
        "spBv1.0/f1/NDEATH/e1", edge.node_death(bdseq=3, timestamp_ms=NOW_MS), NOW_US
    )
    assert set(dead.deaths) == {"sparkplug:node:f1/e1", "sparkplug:node:f1/e1/d1"}
    assert host.stale() == 2
    later = host.handle("spBv1.0/f1/DDATA/e1/d1", _ddata(2), NOW_US)
    assert later.park is not None  # a dead node's data waits for its rebirth


TYPED = FixedCatalog(
    {
        **DEFAULT_SIGNALS,
        "mode": SignalDef("mode", ValueType.STATE, SignalKind.STATE, states=("auto", "manual")),
        "running": SignalDef("running", ValueType.BOOL),
        "energy": SignalDef("energy", ValueType.INT64, SignalKind.COUNTER, unit="Wh"),
        "serial": SignalDef("serial", ValueType.STRING, max_length=8),
    }
)


def _typed_birth(host: SparkplugHost, *metrics: tuple[str, int, int, str, object]) -> Outcome:
    host.handle(
        "spBv1.0/f1/NBIRTH/e1", edge.node_birth(bdseq=0, timestamp_ms=NOW_MS, metrics={}), NOW_US
    )
    p = Payload(timestamp=NOW_MS, seq=1)
    for name, alias, datatype, field, value in metrics:
        m = p.metrics.add(name=name, alias=alias, datatype=datatype)
        if field == "null":
            m.is_null = True
        else:
            setattr(m, field, value)
    return host.handle("spBv1.0/f1/DBIRTH/e1/d1", p.SerializeToString(), NOW_US)


def test_values_keep_their_type_integers_exact_beyond_2_53():
    host = _host(catalog=TYPED)
    out = _typed_birth(
        host,
        ("current", 1, 3, "int_value", (1 << 32) - 5),  # Int32 -5, two's complement
        ("energy", 2, 4, "long_value", 2**53 + 1),  # Int64 beyond what a float holds
        ("running", 3, 11, "boolean_value", True),
        ("mode", 4, 12, "string_value", "auto"),
        ("serial", 5, 14, "string_value", "SN-42"),  # Text
    )
    got = {r.metric: (r.value, r.value_type) for r in out.readings}
    assert got == {
        "current": (-5.0, ValueType.DOUBLE),
        "energy": (2**53 + 1, ValueType.INT64),
        "running": (True, ValueType.BOOL),
        "mode": ("auto", ValueType.STATE),
        "serial": ("SN-42", ValueType.STRING),
    }
    assert type(got["energy"][0]) is int
    assert out.rejected == {}
    # data by alias keeps the types too, and a negative Int64 is exact
    p = Payload(timestamp=NOW_MS, seq=2)
    p.metrics.add(alias=2, long_value=(1 << 64) - (2**60 + 3))
    p.metrics.add(alias=4, string_value="manual")
    p.metrics.add(alias=3, boolean_value=False)
    data = host.handle("spBv1.0/f1/DDATA/e1/d1", p.SerializeToString(), NOW_US)
    assert [r.value for r in data.readings] == [-(2**60 + 3), "manual", False]


def test_a_value_its_signal_does_not_take_is_refused_with_a_code():
    host = _host(catalog=TYPED)
    out = _typed_birth(
        host,
        ("humidity", 1, 11, "boolean_value", True),  # a double signal: not a boolean
        ("mode", 2, 12, "string_value", "turbo"),  # not one of its states
        ("serial", 3, 12, "string_value", "far too long"),  # past max_length
        ("energy", 4, 8, "long_value", 2**64 - 1),  # UInt64 past int64
        ("running", 5, 13, "long_value", NOW_MS),  # DateTime
        ("pressure", 6, 10, "null", None),  # a birth's null: a definition, no reading
    )
    assert out.readings == []
    assert out.rejected == {
        ErrorCode.INVALID_READING: 1,
        ErrorCode.UNKNOWN_STATE: 1,
        ErrorCode.VALUE_TOO_LONG: 1,
        ErrorCode.VALUE_OUT_OF_RANGE: 1,
        ErrorCode.UNSUPPORTED_DATATYPE: 1,
    }
    p = Payload(timestamp=NOW_MS, seq=2)
    p.metrics.add(alias=6, is_null=True)
    data = host.handle("spBv1.0/f1/DDATA/e1/d1", p.SerializeToString(), NOW_US)
    assert data.rejected == {ErrorCode.NULL_VALUE: 1}


def _historical(host: SparkplugHost) -> Outcome:
    _born(host)
    p = Payload(timestamp=NOW_MS, seq=2)
    p.metrics.add(alias=1, double_value=50.0, timestamp=NOW_MS)  # live
    p.metrics.add(alias=1, double_value=50.0, timestamp=NOW_MS - 3_600_000, is_historical=True)
    p.metrics.add(
        alias=1, double_value=50.0, timestamp=NOW_MS - 30 * 86_400_000, is_historical=True
    )
    return host.handle("spBv1.0/f1/DDATA/e1/d1", p.SerializeToString(), NOW_US)


def test_is_historical_goes_to_the_history_path_in_the_live_window_by_default():
    out = _historical(_host())
    assert [r.ts_us for r in out.readings] == [NOW_US]
    assert [r.ts_us for r in out.history] == [NOW_US - 3_600_000_000]
    assert out.historical == 2
    assert out.rejected == {ErrorCode.TIMESTAMP_TOO_OLD: 1}


def test_is_historical_is_judged_by_the_history_sinks_window():
    year = TimeWindow(max_past_us=366 * 86_400 * 1_000_000)
    out = _historical(_host(history_window=year))
    assert [r.ts_us for r in out.readings] == [NOW_US]
    assert sorted(r.ts_us for r in out.history) == [
        NOW_US - 30 * 86_400_000_000,
        NOW_US - 3_600_000_000,
    ]
    assert out.rejected == {}


def test_a_host_sharing_the_data_checks_no_seq():
    host = _host(check_seq=False)
    _born(host)
    assert host.handle("spBv1.0/f1/DDATA/e1/d1", _ddata(9), NOW_US).rebirths == []


@pytest.mark.parametrize(
    ("topic", "payload", "code"),
    [
        ("spBv1.0/f1/DDATA/e1/d1", b"\xff\xff\xff", ErrorCode.UNDECODABLE_PAYLOAD),
        ("spBv1.0/f1/XDATA/e1", b"", ErrorCode.INVALID_TOPIC),
        ("spBv1.0/f1/NDATA/e1/d1", b"", ErrorCode.INVALID_TOPIC),
        ("spBv1.0/bad group/NBIRTH/e1", b"", ErrorCode.INVALID_ID),
    ],
)
def test_bad_messages_are_refused_whole_with_a_code(topic, payload, code):
    out = _host().handle(topic, payload, NOW_US)
    assert out.dead_letter is not None
    assert out.dead_letter[0] == code


def test_a_host_for_some_facilities_refuses_the_others():
    out = _host(facilities=frozenset({"f2"})).handle("spBv1.0/f1/NBIRTH/e1", b"", NOW_US)
    assert out.dead_letter[0] == ErrorCode.FORBIDDEN_FACILITY


def test_the_name_rule_is_configurable_and_checked():
    rule = NameRule(facility="plant-{group}", machine="{device}", node_machine="{edge_node}")
    host = SparkplugHost(rule=rule, window=TimeWindow(), store=MemoryBirths())
    _born(host)
    out = host.handle("spBv1.0/f1/DDATA/e1/d1", _ddata(2), NOW_US)
    assert out.facility == "plant-f1"
    assert {r.device for r in out.readings} == {"d1", "d1.spindle"}
    with pytest.raises(ConfigError):
        NameRule(facility="{device}")


def test_plain_topics_check_the_topic():
    plain = PlainTopics(window=TimeWindow(), max_readings=100)
    assert plain.handle("plantstream/v1/f1", b"1", NOW_US).dead_letter[0] == ErrorCode.INVALID_TOPIC
    one = plain.handle("plantstream/v1/f1/m1/humidity", b"55", NOW_US)
    assert [(r.device, r.metric, r.value) for r in one.readings] == [("m1", "humidity", 55.0)]
    far = plain.handle("plantstream/v1/f1/m1/humidity", b"500", NOW_US)
    assert far.rejected == {ErrorCode.VALUE_OUT_OF_RANGE: 1}


def test_shared_sparkplug_data_and_unshared_births_and_deaths():
    from plantstream.mqtt.client import subscriptions
    from plantstream.settings import Settings

    shared = Settings(sparkplug_shared=True, mqtt_share_group="g1", mqtt_plain_topics=False)
    assert subscriptions(shared) == [
        "$share/g1/spBv1.0/+/NDATA/#",
        "$share/g1/spBv1.0/+/DDATA/#",
        "spBv1.0/+/NBIRTH/#",
        "spBv1.0/+/DBIRTH/#",
        "spBv1.0/+/NDEATH/#",
        "spBv1.0/+/DDEATH/#",
    ]
    assert subscriptions(Settings(mqtt_plain_topics=False)) == ["spBv1.0/#"]
