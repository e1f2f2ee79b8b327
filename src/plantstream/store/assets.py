"""Every statement on the plant hierarchy tables: read a facility's model, apply a new one.

Applying is one transaction under a per-facility advisory lock: the stored model is read,
compared with the document (``model.plantdiff``) and only the differences are written, so
applying the same document twice writes nothing and says so.
"""

from __future__ import annotations

import psycopg

from plantstream.model.plant import Area, Line, Machine, MachineType, PlantModel, resolved
from plantstream.model.plantdiff import KINDS, Action, Change, diff
from plantstream.model.signals import UnknownSignalPolicy
from plantstream.store import signal_defs

# the class id of the per-facility lock held while a model is applied
_APPLY_LOCK_CLASS = 0x706C6D64


def facilities(*, conn: psycopg.Connection) -> list[str]:
    """Facilities with a declared model (settings, signals or machines), sorted."""
    rows = conn.execute(
        "SELECT facility FROM facility_settings UNION SELECT facility FROM signal_defs "
        "UNION SELECT facility FROM machines ORDER BY 1"
    ).fetchall()
    return [row[0] for row in rows]


def load_model(*, conn: psycopg.Connection, facility: str) -> PlantModel:
    """What the store holds for ``facility`` (empty, with the refuse policy, if nothing)."""
    policy = signal_defs.facility_policy(conn=conn, facility=facility)
    signals = signal_defs.facility_signals(conn=conn, facility=facility)
    links: dict[str, list[str]] = {}
    for machine_type, signal in conn.execute(
        "SELECT machine_type, signal FROM machine_type_signals WHERE facility = %s "
        "ORDER BY machine_type, position",
        (facility,),
    ):
        links.setdefault(machine_type, []).append(signal)
    types = {
        name: MachineType(name, description, tuple(links.get(name, ())))
        for name, description in conn.execute(
            "SELECT name, description FROM machine_types WHERE facility = %s ORDER BY name",
            (facility,),
        )
    }
    areas = {
        area: Area(area, name)
        for area, name in conn.execute(
            "SELECT id, name FROM plant_areas WHERE facility = %s ORDER BY id", (facility,)
        )
    }
    lines = {
        line: Line(line, area, name)
        for line, area, name in conn.execute(
            "SELECT id, area, name FROM plant_lines WHERE facility = %s ORDER BY id", (facility,)
        )
    }
    machines = {
        row[0]: Machine(row[0], row[1], row[2], row[3], row[4])
        for row in conn.execute(
            "SELECT id, machine_type, area, line, name FROM machines WHERE facility = %s "
            "ORDER BY id",
            (facility,),
        )
    }
    return PlantModel(
        facility=facility,
        unknown_signals=policy or UnknownSignalPolicy.REFUSE,
        signals=signals,
        machine_types=types,
        areas=areas,
        lines=lines,
        machines=machines,
    )


def apply_model(
    *, conn: psycopg.Connection, model: PlantModel, dry_run: bool = False
) -> list[Change]:
    """Make the store hold ``model`` for its facility; the changes made (none: nothing written).

    With ``dry_run`` the changes are computed and rolled back. Raises ``InvalidModelError``
    when the model refers to something it does not declare (``model.plant.resolved``).
    """
    model = resolved(model)
    facility = model.facility
    with conn.transaction(force_rollback=dry_run):
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_APPLY_LOCK_CLASS, facility)
        )
        old = load_model(conn=conn, facility=facility)
        changes = diff(old, model)
        if not changes:
            return changes
        removed: dict[str, list[str]] = {kind: [] for kind in KINDS}
        written: dict[str, list[str]] = {kind: [] for kind in KINDS}
        for change in changes:
            (removed if change.action is Action.REMOVED else written)[change.kind].append(
                change.key
            )
        # every row written first (parents before children), then removals (children first):
        # a row that stays may move away from a parent that goes
        if written["policy"]:
            signal_defs.set_policy(conn=conn, facility=facility, policy=model.unknown_signals)
        signal_defs.upsert_signals(
            conn=conn, facility=facility, signals=[model.signals[k] for k in written["signal"]]
        )
        _write_types(conn, model, written["machine_type"])
        _write_places(conn, model, written["area"], written["line"], written["machine"])
        _delete(conn, "machines", facility, removed["machine"])
        _delete(conn, "plant_lines", facility, removed["line"])
        _delete(conn, "plant_areas", facility, removed["area"])
        _delete(conn, "machine_types", facility, removed["machine_type"], key="name")
        signal_defs.delete_signals(conn=conn, facility=facility, names=removed["signal"])
    return changes


def _delete(
    conn: psycopg.Connection, table: str, facility: str, keys: list[str], *, key: str = "id"
) -> None:
    if keys:
        conn.execute(
            f"DELETE FROM {table} WHERE facility = %s AND {key} = ANY(%s)",
            (facility, keys),
        )


def _write_types(conn: psycopg.Connection, model: PlantModel, names: list[str]) -> None:
    if not names:
        return
    facility = model.facility
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO machine_types (facility, name, description) VALUES (%s, %s, %s) "
            "ON CONFLICT (facility, name) DO UPDATE SET description = excluded.description",
            [(facility, n, model.machine_types[n].description) for n in names],
        )
        cur.execute(
            "DELETE FROM machine_type_signals WHERE facility = %s AND machine_type = ANY(%s)",
            (facility, names),
        )
        cur.executemany(
            "INSERT INTO machine_type_signals (facility, machine_type, signal, position) "
            "VALUES (%s, %s, %s, %s)",
            [
                (facility, n, signal, i)
                for n in names
                for i, signal in enumerate(model.machine_types[n].signals)
            ],
        )


def _write_places(
    conn: psycopg.Connection,
    model: PlantModel,
    areas: list[str],
    lines: list[str],
    machines: list[str],
) -> None:
    f = model.facility
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO plant_areas (facility, id, name) VALUES (%s, %s, %s) "
            "ON CONFLICT (facility, id) DO UPDATE SET name = excluded.name",
            [(f, a, model.areas[a].name) for a in areas],
        )
        cur.executemany(
            "INSERT INTO plant_lines (facility, id, area, name) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (facility, id) DO UPDATE SET area = excluded.area, name = excluded.name",
            [(f, ln, model.lines[ln].area, model.lines[ln].name) for ln in lines],
        )
        cur.executemany(
            "INSERT INTO machines (facility, id, machine_type, area, line, name) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (facility, id) DO UPDATE SET "
            "machine_type = excluded.machine_type, area = excluded.area, "
            "line = excluded.line, name = excluded.name",
            [
                (f, m.id, m.machine_type, m.area, m.line, m.name)
                for m in (model.machines[k] for k in machines)
            ],
        )


__all__ = ["apply_model", "facilities", "load_model"]
