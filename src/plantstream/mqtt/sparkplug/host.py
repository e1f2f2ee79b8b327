"""The Sparkplug B 3.0 primary host application: births, aliases, seq and bdSeq, deaths, rebirths.

``SparkplugHost.handle`` turns one message into an ``Outcome`` (readings, refusals by code,
birth and death state to write, rebirth requests). It keeps each node's birth in memory and
falls back to the birth kept in Redis (``BirthStore``), so a restarted bridge, or another one
taking over, goes on without a rebirth; what neither knows gets a rebirth request (NCMD
``Node Control/Rebirth``), at most one per node every ``rebirth_interval`` seconds.

A payload's metrics become readings in ``values.MetricReader`` (types, the catalog, the live
and history windows).

Sequence numbers: MQTT hands one session's messages over in order, so the host reorders
nothing; a seq that is behind (a redelivery after a restart) is taken as it is (the processor
stores a repeated reading once), a seq ahead of the next expected one is a gap: its data is
taken and a rebirth requested.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import DecodeError

from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.model import (
    DEFAULT_CATALOG,
    SignalCatalog,
    TimeWindow,
    check_id,
)
from plantstream.mqtt.outcome import Outcome
from plantstream.mqtt.sparkplug.bindings import Bound, definition
from plantstream.mqtt.sparkplug.mapping import NameRule
from plantstream.mqtt.sparkplug.sparkplug_b_pb2 import Payload
from plantstream.mqtt.sparkplug.topics import MessageType, SparkplugTopic, parse_topic
from plantstream.mqtt.sparkplug.values import MetricReader
from plantstream.store.sparkplug_state import BirthState, node_key

log = logging.getLogger(__name__)

_IGNORED = frozenset({MessageType.STATE, MessageType.NCMD, MessageType.DCMD})


class BirthStore(Protocol):
    """Where births outlive the bridge (``store/sparkplug_state.py`` on Redis)."""

    def load(self, key: str) -> BirthState | None: ...

    def devices(self, facility: str, node: str) -> list[str]: ...


@dataclass(slots=True)
class _Session:
    state: BirthState
    bound: Bound


class SparkplugHost:
    """Sparkplug B messages in, outcomes out; one per bridge process (not thread-safe)."""

    def __init__(
        self,
        *,
        rule: NameRule,
        window: TimeWindow,
        store: BirthStore,
        facilities: frozenset[str] = frozenset(),
        rebirth_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        catalog: SignalCatalog = DEFAULT_CATALOG,
        history_window: TimeWindow | None = None,
        check_seq: bool = True,
    ) -> None:
        self.rule = rule
        self.window = window
        self.catalog = catalog
        self.history_window = history_window or window
        self.reader = MetricReader(
            window=window, history_window=self.history_window, catalog=catalog
        )
        # off when the data is shared among bridges: one bridge sees only some of a node's seqs
        self.seq_checked = check_seq
        self.store = store
        self.facilities = facilities
        self.rebirth_interval = rebirth_interval
        self.clock = clock
        self._sessions: dict[str, _Session] = {}
        self._asked: dict[str, float] = {}  # node key -> when a rebirth was last requested

    def ready(self, topic: str) -> bool:
        """Whether a parked message on ``topic`` can be taken now (its node, and its device if
        any, are born)."""
        try:
            t = parse_topic(topic)
        except InvalidInputError:
            return True  # refused when handled
        key = node_key(t.group, t.edge_node, t.device)
        session = self._sessions.get(key)
        return session is not None and session.state.online

    def stale(self) -> int:
        """How many nodes and devices this host saw die and not born again."""
        return sum(1 for s in self._sessions.values() if not s.state.online)

    def handle(self, topic: str, payload: bytes, received_us: int) -> Outcome:
        """The outcome of one message; never raises for bad input (it is refused whole)."""
        try:
            where = parse_topic(topic)
            if where.kind in _IGNORED:
                return Outcome()
            facility = self.rule.facility_of(where.group, where.edge_node)
            check_id(facility, "facility")
            if self.facilities and facility not in self.facilities:
                raise InvalidInputError(
                    ErrorCode.FORBIDDEN_FACILITY, f"this bridge does not take {facility!r}"
                )
            try:
                message = Payload.FromString(payload)
            except DecodeError as exc:
                raise InvalidInputError(
                    ErrorCode.UNDECODABLE_PAYLOAD, f"not a Sparkplug B payload: {exc}"
                ) from None
            out = Outcome(facility=facility)
            _HANDLERS[where.kind](self, where, facility, message, received_us, out)
            return out
        except InvalidInputError as exc:
            return Outcome.refused(exc.code, exc.message)

    # -- births ----------------------------------------------------------------------

    def _nbirth(
        self, t: SparkplugTopic, facility: str, p: Payload, received_us: int, out: Outcome
    ) -> None:
        key = node_key(t.group, t.edge_node)
        bdseq = next((int(m.long_value) for m in p.metrics if m.name == "bdSeq"), -1)
        for device_key in [k for k in self._sessions if k.startswith(key + "/")]:
            del self._sessions[device_key]  # a new NBIRTH voids its devices' births
        machine = self.rule.machine_of(t.group, t.edge_node, None)
        session = self._birth(
            key, facility=facility, machine=machine, p=p, bdseq=bdseq, seq=int(p.seq), out=out
        )
        self._asked.pop(key, None)
        out.replay.append(key)
        self._take(t, session, p, received_us, out, birth=True)

    def _dbirth(
        self, t: SparkplugTopic, facility: str, p: Payload, received_us: int, out: Outcome
    ) -> None:
        node = self._born(t, out)
        if node is None:
            return
        self._check_seq(t, node, p, out)
        key = node_key(t.group, t.edge_node, t.device)
        machine = self.rule.machine_of(t.group, t.edge_node, t.device)
        session = self._birth(
            key,
            facility=facility,
            machine=machine,
            p=p,
            bdseq=node.state.bdseq,
            seq=int(p.seq),
            out=out,
        )
        out.replay.append(node_key(t.group, t.edge_node))
        self._take(t, session, p, received_us, out, birth=True)

    def _birth(
        self,
        key: str,
        *,
        facility: str,
        machine: str,
        p: Payload,
        bdseq: int,
        seq: int,
        out: Outcome,
    ) -> _Session:
        metrics = {m.name: definition(m) for m in p.metrics if m.name}
        aliases = {int(m.alias): m.name for m in p.metrics if m.name and m.HasField("alias")}
        state = BirthState(
            facility, machine, bdseq, seq, True, int(p.timestamp), 0, aliases, metrics
        )
        session = _Session(state, self._bind(state))
        self._sessions[key] = session
        out.births[key] = state
        return session

    # -- data and deaths -------------------------------------------------------------

    def _data(
        self, t: SparkplugTopic, facility: str, p: Payload, received_us: int, out: Outcome
    ) -> None:
        node = self._born(t, out)
        if node is None:
            return
        self._check_seq(t, node, p, out)
        session = node if t.device is None else self._session(node_key(*_parts(t)))
        if session is None or not session.state.online:
            self._not_born(t, out, "its device has no birth certificate")
            return
        self._take(t, session, p, received_us, out)

    def _ndeath(
        self, t: SparkplugTopic, facility: str, p: Payload, received_us: int, out: Outcome
    ) -> None:
        key = node_key(t.group, t.edge_node)
        node = self._session(key)
        bdseq = next((int(m.long_value) for m in p.metrics if m.name == "bdSeq"), -1)
        if node is None or (bdseq >= 0 and bdseq != node.state.bdseq):
            return  # the will of an older connection: its birth was already replaced
        death_ms = int(p.timestamp) or received_us // 1000
        devices = {k for k in self._sessions if k.startswith(key + "/")}
        devices.update(self.store.devices(facility, key))
        for dead in [key, *sorted(devices)]:
            out.deaths[dead] = death_ms
            if (session := self._sessions.get(dead)) is not None:
                session.state.online = False

    def _ddeath(
        self, t: SparkplugTopic, facility: str, p: Payload, received_us: int, out: Outcome
    ) -> None:
        node = self._born(t, out)
        if node is None:
            return
        self._check_seq(t, node, p, out)
        key = node_key(t.group, t.edge_node, t.device)
        out.deaths[key] = int(p.timestamp) or received_us // 1000
        if (session := self._sessions.get(key)) is not None:
            session.state.online = False

    # -- helpers ---------------------------------------------------------------------

    def _session(self, key: str) -> _Session | None:
        session = self._sessions.get(key)
        if session is None:
            state = self.store.load(key)
            if state is None:
                return None
            session = _Session(state, self._bind(state))
            self._sessions[key] = session
        return session

    def _bind(self, state: BirthState) -> Bound:
        return Bound.build(
            state.machine,
            state.metrics,
            state.aliases,
            facility=state.facility,
            catalog=self.catalog,
        )

    def _born(self, t: SparkplugTopic, out: Outcome) -> _Session | None:
        node = self._session(node_key(t.group, t.edge_node))
        if node is None or not node.state.online:
            self._not_born(t, out, "its edge node has no birth certificate")
            return None
        return node

    def _not_born(self, t: SparkplugTopic, out: Outcome, why: str) -> None:
        out.park = node_key(t.group, t.edge_node)
        out.rejected.clear()
        out.readings.clear()
        out.history.clear()
        out.historical = 0
        log.info("%s of %s/%s parked until a rebirth: %s", t.kind, t.group, t.edge_node, why)
        self._rebirth(t, out)

    def _rebirth(self, t: SparkplugTopic, out: Outcome) -> None:
        key = node_key(t.group, t.edge_node)
        now = self.clock()
        if now - self._asked.get(key, -1e18) >= self.rebirth_interval:
            self._asked[key] = now
            out.rebirths.append((t.group, t.edge_node))

    def _check_seq(self, t: SparkplugTopic, node: _Session, p: Payload, out: Outcome) -> None:
        if not self.seq_checked or not p.HasField("seq"):
            return
        seq, last = int(p.seq) % 256, node.state.seq
        if seq == (last + 1) % 256:
            node.state.seq = seq
            out.seqs[node_key(t.group, t.edge_node)] = seq
        elif (last - seq) % 256 >= 128:  # ahead: messages were lost in between
            node.state.seq = seq
            out.seqs[node_key(t.group, t.edge_node)] = seq
            self._rebirth(t, out)
        # else behind or equal: a redelivery, its readings are stored once downstream

    def _take(
        self,
        t: SparkplugTopic,
        session: _Session,
        p: Payload,
        received_us: int,
        out: Outcome,
        *,
        birth: bool = False,
    ) -> None:
        """Validate the metrics of ``p`` into readings; an alias not in the birth asks for
        a rebirth (the metric is refused ``unknown_alias``, and counted)."""
        if self.reader.read(
            session.bound, session.state.facility, p, received_us, out, birth=birth
        ):
            self._not_born(t, out, "aliases not in its birth")


def _parts(t: SparkplugTopic) -> tuple[str, str, str | None]:
    return t.group, t.edge_node, t.device


_Handler = Callable[[SparkplugHost, SparkplugTopic, str, Payload, int, Outcome], None]
_HANDLERS: dict[MessageType, _Handler] = {
    MessageType.NBIRTH: SparkplugHost._nbirth,
    MessageType.DBIRTH: SparkplugHost._dbirth,
    MessageType.NDATA: SparkplugHost._data,
    MessageType.DDATA: SparkplugHost._data,
    MessageType.NDEATH: SparkplugHost._ndeath,
    MessageType.DDEATH: SparkplugHost._ddeath,
}
