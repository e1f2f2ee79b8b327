"""Every statement on ``signal_defs`` and ``facility_settings``: a facility's declared signals
and its unknown-signal policy, and the signals its ``register`` policy let in for review."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from plantstream.model.signals import SignalDef, SignalKind, UnknownSignalPolicy, ValueType

_COLUMNS = (
    "name, value_type, kind, unit, accepted_units, low, high, description, states, wrap, "
    "max_length, unclassified, properties"
)
MAX_UNCLASSIFIED = 1_000  # per facility: past it the register policy refuses like refuse


def to_signal(row: tuple[Any, ...]) -> SignalDef:
    """A ``signal_defs`` row (the columns of ``_COLUMNS``) as a definition."""
    (name, value_type, kind, unit, accepted, low, high, desc, states, wrap, max_len, unc, props) = (
        row
    )
    return SignalDef(
        name,
        value_type=ValueType(value_type),
        kind=SignalKind(kind),
        unit=unit,
        accepted_units=tuple(accepted),
        low=low,
        high=high,
        description=desc,
        states=tuple(states),
        wrap=None if wrap is None else int(wrap),
        max_length=max_len,
        unclassified=unc,
        properties=dict(props),
    )


def _values(facility: str, s: SignalDef) -> tuple[Any, ...]:
    return (
        facility,
        s.name,
        s.value_type.value,
        s.kind.value,
        s.unit,
        list(s.accepted_units),
        s.low,
        s.high,
        s.description,
        list(s.states),
        s.wrap,
        s.max_length,
        s.unclassified,
        Jsonb(dict(s.properties)),
    )


def facility_signals(*, conn: psycopg.Connection, facility: str) -> dict[str, SignalDef]:
    """Every signal a facility has a row for (declared and unclassified), by name."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM signal_defs WHERE facility = %s ORDER BY name",
        (facility,),
    ).fetchall()
    return {row[0]: to_signal(row) for row in rows}


def facility_policy(*, conn: psycopg.Connection, facility: str) -> UnknownSignalPolicy | None:
    """The facility's unknown-signal policy; None when it never set one."""
    row = conn.execute(
        "SELECT unknown_signals FROM facility_settings WHERE facility = %s", (facility,)
    ).fetchone()
    return None if row is None else UnknownSignalPolicy(row[0])


def set_policy(*, conn: psycopg.Connection, facility: str, policy: UnknownSignalPolicy) -> None:
    conn.execute(
        "INSERT INTO facility_settings (facility, unknown_signals) VALUES (%s, %s) "
        "ON CONFLICT (facility) DO UPDATE SET unknown_signals = excluded.unknown_signals, "
        "updated_at = now()",
        (facility, policy.value),
    )


def upsert_signals(
    *, conn: psycopg.Connection, facility: str, signals: Iterable[SignalDef]
) -> None:
    """Insert or replace these definitions (a replaced one is no longer unclassified)."""
    placeholders = ", ".join(["%s"] * 14)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS.split(", ")[1:])
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO signal_defs (facility, {_COLUMNS}) VALUES ({placeholders}) "
            f"ON CONFLICT (facility, name) DO UPDATE SET {updates}, updated_at = now()",
            [_values(facility, s) for s in signals],
        )


def delete_signals(*, conn: psycopg.Connection, facility: str, names: list[str]) -> None:
    conn.execute(
        "DELETE FROM signal_defs WHERE facility = %s AND name = ANY(%s)", (facility, names)
    )


def register_unclassified(
    *, conn: psycopg.Connection, facility: str, name: str, unit: str = ""
) -> bool:
    """Record ``name`` as an unclassified double signal of ``facility`` for an admin to review.

    What the ``register`` policy does with a signal the catalog does not know. True when the
    signal is (now or already) in the catalog; False when the facility already holds
    ``MAX_UNCLASSIFIED`` unclassified signals (the reading must then be refused, not dropped).
    """
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('signal_defs:' || %s, 0))",
            (facility,),
        )
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE unclassified), bool_or(name = %s) "
            "FROM signal_defs WHERE facility = %s",
            (name, facility),
        ).fetchone()
        count, present = row or (0, False)
        if present:
            return True
        if count >= MAX_UNCLASSIFIED:
            return False
        signal = SignalDef(name, unit=unit, unclassified=True)
        upsert_signals(conn=conn, facility=facility, signals=[signal])
    return True


def register_many(*, conn: psycopg.Connection, facility: str, names: list[str]) -> set[str]:
    """``register_unclassified`` for several names in one transaction; returns the names that
    did not fit the facility's ``MAX_UNCLASSIFIED`` (the others are, now or already, in)."""
    wanted = sorted(set(names))
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('signal_defs:' || %s, 0))",
            (facility,),
        )
        present = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM signal_defs WHERE facility = %s AND name = ANY(%s)",
                (facility, wanted),
            ).fetchall()
        }
        row = conn.execute(
            "SELECT count(*) FROM signal_defs WHERE facility = %s AND unclassified", (facility,)
        ).fetchone()
        room = max(0, MAX_UNCLASSIFIED - (row[0] if row else 0))
        new = [name for name in wanted if name not in present]
        upsert_signals(
            conn=conn,
            facility=facility,
            signals=[SignalDef(name, unclassified=True) for name in new[:room]],
        )
    return set(new[room:])


def unclassified(*, conn: psycopg.Connection, facility: str) -> list[str]:
    """The names awaiting review (registered, never declared), sorted."""
    rows = conn.execute(
        "SELECT name FROM signal_defs WHERE facility = %s AND unclassified ORDER BY name",
        (facility,),
    ).fetchall()
    return [row[0] for row in rows]


@dataclass(frozen=True, slots=True)
class Unclassified:
    """One signal awaiting review: when it was first let in, and which devices send it."""

    name: str
    first_seen: datetime
    devices: int
    sample_devices: tuple[str, ...]  # the first few ids, sorted


def review(*, conn: psycopg.Connection, facility: str, sample: int = 10) -> list[Unclassified]:
    """The unclassified signals of ``facility`` (at most ``MAX_UNCLASSIFIED``), sorted, each
    with the devices that have a sensor for it (the first ``sample`` of them named)."""
    rows = conn.execute(
        "SELECT d.name, d.created_at, count(s.id), "
        "(array_agg(s.device ORDER BY s.device) FILTER (WHERE s.id IS NOT NULL))[1:%s] "
        "FROM signal_defs d LEFT JOIN sensors s ON s.facility = d.facility AND s.metric = d.name "
        "WHERE d.facility = %s AND d.unclassified GROUP BY d.name, d.created_at ORDER BY d.name",
        (sample, facility),
    ).fetchall()
    return [Unclassified(n, at, int(c), tuple(devices or ())) for n, at, c, devices in rows]


__all__ = [
    "MAX_UNCLASSIFIED",
    "Unclassified",
    "delete_signals",
    "facility_policy",
    "facility_signals",
    "register_many",
    "register_unclassified",
    "review",
    "set_policy",
    "to_signal",
    "unclassified",
    "upsert_signals",
]
