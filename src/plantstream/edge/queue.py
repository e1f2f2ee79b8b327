"""The durable store-and-forward queue: SQLite in WAL mode, bounded, with a dead-letter table.

Every reading is committed here (one transaction per batch) before anything else happens to
it, and leaves only in the transaction that records plantstream's 202 for it. With
``synchronous=FULL`` (the default) a commit is on disk when it returns, also across a power cut;
``normal`` keeps the database consistent but may lose the last commits on a power cut (not on
a process crash), and is for disks that lie about flushes anyway.

Readings leave by lane (a hash of the signal, ``Lanes``): the forwarder peeks and acks each
lane on its own, so several batches are in flight while every signal stays in order. Readings
older than the live window are held aside for the history path (``peek_history``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from plantstream.edge.config import QueueConfig, ValueKind
from plantstream.edge.records import EdgeReading
from plantstream.edge.schema import COLUMNS, INSERT_COLUMNS, MIGRATIONS, SCHEMA, lane_of

# held by agents before plantstream took typed values; released (sent) on open
HELD_TYPED = "waiting_for_typed_ingest"
HELD_HISTORY = "older_than_live_window"
_LANES_ASSIGNED = 1  # PRAGMA user_version once the rows of an agent before lanes have theirs
_SELECT = "id, device, metric, ts_us, value_type, value, unit, quality, raw_status"


@dataclass(frozen=True, slots=True)
class Lanes:
    """The lanes ``index`` of ``count`` senders take: those with ``lane % count == index``."""

    index: int = 0
    count: int = 1


ALL_LANES = Lanes()


@dataclass(frozen=True, slots=True)
class Queued:
    """A reading read back from the queue for forwarding, with its row id."""

    id: int
    device: str
    metric: str
    ts_us: int
    value_type: str
    value: float | int | str | None
    unit: str | None
    quality: int
    raw_status: int | None = None


@dataclass(frozen=True, slots=True)
class Appended:
    stored: int
    refused: int  # not stored: the queue is full under the refuse policy (counted, alerted)
    dropped: int  # older readings deleted to make room under drop_oldest (counted)


@dataclass(frozen=True, slots=True)
class QueueStats:
    depth: int  # readings waiting to be forwarded (not held)
    held: dict[str, int]
    dead_letters: int
    oldest_enqueued_us: int | None
    oldest_ts_us: int | None
    bytes: int
    counters: dict[str, int]


class QueueFullError(Exception):
    """Raised inside a transaction when the disk itself is full (SQLITE_FULL)."""


class EdgeQueue:
    """The queue; thread-safe (one connection behind a lock: SQLite has one writer anyway)."""

    def __init__(self, config: QueueConfig) -> None:
        self.config = config
        Path(config.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(config.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={config.durability.upper()}")
        self._conn.execute("PRAGMA busy_timeout=10000")
        self._conn.executescript(SCHEMA)
        self._migrate()
        self._page_size = int(self._conn.execute("PRAGMA page_size").fetchone()[0])
        self.depth = 0
        self.held: dict[str, int] = {}
        self._recount()

    def _migrate(self) -> None:
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(readings)")}
        for column, ddl in MIGRATIONS.items():
            if column not in have:
                self._conn.execute(ddl)
        self._conn.execute("UPDATE readings SET held = NULL WHERE held = ?", (HELD_TYPED,))
        # rows of an agent before lanes took the column's default, 0: each gets its signal's
        # lane, or a sender of lane 0 would forward a signal's old readings while another
        # sends its new ones (a signal whose lane is 0 anyway is left as it is). Once per
        # queue file: user_version says it was done, so later opens scan nothing.
        if int(self._conn.execute("PRAGMA user_version").fetchone()[0]) < _LANES_ASSIGNED:
            self._conn.create_function("ps_lane", 2, lane_of, deterministic=True)
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(
                "UPDATE readings SET lane = ps_lane(device, metric) "
                "WHERE lane = 0 AND ps_lane(device, metric) <> 0"
            )
            self._conn.execute(f"PRAGMA user_version = {_LANES_ASSIGNED}")
            self._conn.execute("COMMIT")

    def _recount(self) -> None:
        self.depth = int(
            self._conn.execute("SELECT count(*) FROM readings WHERE held IS NULL").fetchone()[0]
        )
        self.held = dict(
            self._conn.execute(
                "SELECT held, count(*) FROM readings WHERE held IS NOT NULL GROUP BY held"
            ).fetchall()
        )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- in ------------------------------------------------------------------------------

    def bytes(self) -> int:
        pages, free = (
            int(self._conn.execute(f"PRAGMA {p}").fetchone()[0])
            for p in ("page_count", "freelist_count")
        )
        return (pages - free) * self._page_size

    def _room(self, wanted: int) -> int:
        total = self.depth + sum(self.held.values())
        if self.bytes() >= self.config.max_bytes:
            return 0
        return max(0, min(wanted, self.config.max_readings - total))

    def append(self, readings: Sequence[EdgeReading], *, now_us: int) -> Appended:
        """Store ``readings`` in one transaction; what did not fit is refused or makes room."""
        if not readings:
            return Appended(0, 0, 0)
        with self._lock:
            room = self._room(len(readings))
            dropped = 0
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                if room < len(readings) and self.config.overflow == "drop_oldest":
                    dropped = self._drop_oldest(len(readings) - room)
                    room = len(readings)
                take, refused = readings[:room], len(readings) - room
                rows = [_row(r, now_us) for r in take]
                self._conn.executemany(
                    f"INSERT INTO readings ({INSERT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    rows,
                )
                self._count(stored=len(rows), refused=refused, dropped=dropped)
                self._conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._conn.execute("ROLLBACK")
                self._recount()
                if "full" not in str(exc):
                    raise
                self._note_refused(len(readings))
                return Appended(0, len(readings), 0)
            self.depth += len(rows)
            return Appended(len(rows), refused, dropped)

    def _note_refused(self, n: int) -> None:
        try:  # the disk is full: this tiny update may fail too; the metric still counts it
            self._conn.execute("BEGIN IMMEDIATE")
            self._count(refused=n)
            self._conn.execute("COMMIT")
        except sqlite3.OperationalError:
            self._conn.execute("ROLLBACK")

    def _drop_oldest(self, n: int) -> int:
        rows = self._conn.execute(
            "SELECT id, held FROM readings ORDER BY id LIMIT ?", (n,)
        ).fetchall()
        self._conn.executemany("DELETE FROM readings WHERE id = ?", [(i,) for i, _ in rows])
        self._forget(held for _, held in rows)
        return len(rows)

    def _forget(self, helds: Iterable[str | None]) -> None:
        for held in helds:
            if held is None:
                self.depth -= 1
            else:
                self.held[held] -= 1

    def _count(self, **deltas: int) -> None:
        self._conn.executemany(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            [(name, n) for name, n in deltas.items() if n],
        )

    # -- out -----------------------------------------------------------------------------

    def peek(self, limit: int, *, now_us: int, lanes: Lanes = ALL_LANES) -> list[Queued]:
        """The oldest ``limit`` readings of ``lanes`` to forward, in the order they were stored.

        Readings older than the live window (less a minute of margin) are set aside for the
        history path first (held ``older_than_live_window``): the live ingest would refuse them.
        """
        cutoff = now_us - int(self.config.live_window_hours * 3600e6) + 60_000_000
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_SELECT} FROM readings WHERE held IS NULL AND lane % ? = ? "
                "ORDER BY id LIMIT ?",
                (lanes.count, lanes.index, limit),
            ).fetchall()
            old = [(r[0],) for r in rows if r[3] < cutoff]
            if old:
                self._hold([i for (i,) in old], HELD_HISTORY)
        return [Queued(*r) for r in rows if r[3] >= cutoff]

    def peek_history(self, limit: int) -> list[Queued]:
        """The oldest ``limit`` readings held for the history path, in the order stored."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_SELECT} FROM readings WHERE held = ? ORDER BY id LIMIT ?",
                (HELD_HISTORY, limit),
            ).fetchall()
        return [Queued(*r) for r in rows]

    def _hold(self, ids: Sequence[int], reason: str) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        self._conn.executemany(
            "UPDATE readings SET held = ? WHERE id = ? AND held IS NULL",
            [(reason, i) for i in ids],
        )
        self._conn.execute("COMMIT")
        self.depth -= len(ids)
        self.held[reason] = self.held.get(reason, 0) + len(ids)

    def hold(self, ids: Sequence[int], reason: str) -> None:
        with self._lock:
            self._hold(ids, reason)

    def ack(
        self,
        delivered: Sequence[int],
        dead: Sequence[tuple[int, str, str]] = (),
        *,
        now_us: int,
        lanes: Lanes = ALL_LANES,
        held: str | None = None,
    ) -> None:
        """In one transaction: delete ``delivered`` rows, move ``dead`` (id, code, reason).

        The rows are those peeked from ``lanes`` (``held``: from the rows held so, e.g. the
        history path's); nothing else is touched, so senders of other lanes ack on their own.
        """
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            # a row dropped meanwhile (drop_oldest, max_age_hours) was counted ``dropped`` and
            # taken off the depth then: only the rows still here are acked and counted
            dead_here = 0
            if dead:
                dead_here = self._conn.executemany(
                    f"INSERT INTO dead_letters ({COLUMNS}, code, reason, dead_us) "
                    f"SELECT {COLUMNS}, ?, ?, ? FROM readings WHERE id = ?",
                    [(code, reason[:500], now_us, i) for i, code, reason in dead],
                ).rowcount
            ids = [*delivered, *(i for i, _, _ in dead)]
            gone = self._delete(ids, lanes, held)
            self._count(delivered=gone - dead_here, dead_lettered=dead_here)
            self._conn.execute("COMMIT")
            if held is None:
                self.depth -= gone
            else:
                self.held[held] = self.held.get(held, 0) - gone

    def _delete(self, ids: Sequence[int], lanes: Lanes, held: str | None) -> int:
        """Delete rows ``ids`` (one range statement when they are all that waits in their
        span); how many were there."""
        if not ids:
            return 0
        lo, hi = min(ids), max(ids)
        where = (
            "id BETWEEN ? AND ? AND lane % ? = ? AND "
            + ("held IS NULL" if held is None else "held = ?")
        )  # fmt: skip
        args = (lo, hi, lanes.count, lanes.index, *(() if held is None else (held,)))
        waiting = self._conn.execute(f"SELECT count(*) FROM readings WHERE {where}", args)
        if waiting.fetchone()[0] == len(ids):  # the usual case: a whole batch, as peeked
            return self._conn.execute(f"DELETE FROM readings WHERE {where}", args).rowcount
        where = "id = ? AND " + ("held IS NULL" if held is None else "held = ?")
        return self._conn.executemany(
            f"DELETE FROM readings WHERE {where}",
            [(i,) if held is None else (i, held) for i in ids],
        ).rowcount

    def enforce_age(self, *, now_us: int) -> int:
        """Under drop_oldest, delete readings queued longer than ``max_age_hours``; how many."""
        if self.config.overflow != "drop_oldest":
            return 0
        limit = now_us - int(self.config.max_age_hours * 3600e6)
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, held FROM readings WHERE enqueued_us < ? ORDER BY id LIMIT 100000",
                (limit,),
            ).fetchall()
            if not rows:
                return 0
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("DELETE FROM readings WHERE id = ?", [(i,) for i, _ in rows])
            self._count(dropped=len(rows))
            self._conn.execute("COMMIT")
            self._forget(held for _, held in rows)
            return len(rows)

    def record_gap(self, source: str, start_us: int, end_us: int, reason: str) -> None:
        """Keep a collection gap (a source away), so it is still known after a restart."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO gaps (source, start_us, end_us, reason) VALUES (?, ?, ?, ?)",
                (source, start_us, end_us, reason[:200]),
            )

    def gaps(self, limit: int = 20) -> list[tuple[str, int, int, str]]:
        with self._lock:
            return self._conn.execute(
                "SELECT source, start_us, end_us, reason FROM gaps ORDER BY rowid DESC LIMIT ?",
                (limit,),
            ).fetchall()

    def stats(self) -> QueueStats:
        with self._lock:
            oldest = self._conn.execute(
                "SELECT enqueued_us, ts_us FROM readings ORDER BY id LIMIT 1"
            ).fetchone()
            dead = int(self._conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0])
            counters = dict(self._conn.execute("SELECT name, value FROM counters").fetchall())
            return QueueStats(
                depth=self.depth,
                held={k: v for k, v in self.held.items() if v},
                dead_letters=dead,
                oldest_enqueued_us=oldest[0] if oldest else None,
                oldest_ts_us=oldest[1] if oldest else None,
                bytes=self.bytes(),
                counters=counters,
            )

    def dead_letter_rows(self, limit: int = 100) -> list[tuple[object, ...]]:
        """(device, metric, ts_us, value, quality, raw_status, code, reason), newest first."""
        with self._lock:
            return self._conn.execute(
                "SELECT device, metric, ts_us, value, quality, raw_status, code, reason "
                "FROM dead_letters ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()


def _row(r: EdgeReading, now_us: int) -> tuple[object, ...]:
    value: object = r.value
    if r.value_type is ValueKind.BOOL and value is not None:
        value = int(bool(value))
    return (
        r.source,
        r.device,
        r.metric,
        r.ts_us,
        r.source_ts_us,
        r.server_ts_us,
        str(r.value_type),
        value,
        r.unit,
        r.quality,
        r.raw_status,
        now_us,
        None,
        lane_of(r.device, r.metric),
    )
