"""The plant model in PostgreSQL: applied idempotently, read back whole, and served as a catalog."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

from plantstream.api.state import open_pool
from plantstream.model.plantdiff import Action
from plantstream.model.plantfile import parse_model
from plantstream.model.signals import DEFAULT_SIGNALS, UnknownSignalPolicy, ValueType
from plantstream.settings import load_settings
from plantstream.store import assets, schema, signal_defs
from plantstream.store.catalog import StoreCatalog
from plantstream.store.schema import migrate

PRESS_SHOP = Path(__file__).parents[1] / "data" / "plant" / "press-shop.yaml"


def model_of(text: str):  # type: ignore[no-untyped-def]
    return parse_model(text, source="test.yaml").model


def test_applying_twice_changes_nothing_the_second_time(db: psycopg.Connection) -> None:
    model = parse_model(PRESS_SHOP.read_text(), source="press-shop.yaml").model
    first = assets.apply_model(conn=db, model=model)
    assert {c.action for c in first if c.kind != "policy"} == {Action.CREATED}
    assert "changed the unknown-signal policy of plant-a" in {str(c) for c in first}
    assert sum(c.kind == "machine" for c in first) == 4
    assert assets.apply_model(conn=db, model=model) == []
    stored = assets.load_model(conn=db, facility="plant-a")
    assert stored == model  # every field of every signal, the hierarchy, the policy
    assert stored.signals["parts"].wrap == 2**32


def test_a_changed_file_moves_renames_and_removes(db: psycopg.Connection) -> None:
    before = model_of(
        "facility: f\nmachine_types: [{name: t, signals: [{name: s, unit: bar}]}]\n"
        "areas: [{id: a, lines: [{id: l1, machines: [{id: m1, type: t}, {id: m2}]}]}]\n"
    )
    assets.apply_model(conn=db, model=before)
    # the line and area go, m1 moves to the facility and loses its type, which goes too
    after = model_of("facility: f\nareas: [{id: b}]\nmachines: [{id: m1, name: One}]\n")
    changes = {(c.action, c.kind, c.key) for c in assets.apply_model(conn=db, model=after)}
    assert (Action.CHANGED, "machine", "m1") in changes
    assert {
        (Action.REMOVED, k, key)
        for k, key in [
            ("machine", "m2"),
            ("line", "l1"),
            ("area", "a"),
            ("machine_type", "t"),
            ("signal", "s"),
        ]
    } <= changes
    assert assets.load_model(conn=db, facility="f") == after
    assert assets.apply_model(conn=db, model=after) == []


def test_a_dry_run_writes_nothing(db: psycopg.Connection) -> None:
    model = model_of("facility: f\nmachines: [{id: m1}]\n")
    assert len(assets.apply_model(conn=db, model=model, dry_run=True)) == 1
    assert assets.load_model(conn=db, facility="f").machines == {}


def test_facilities_are_kept_apart(db: psycopg.Connection) -> None:
    assets.apply_model(conn=db, model=model_of("facility: f1\nmachines: [{id: m}]\n"))
    assets.apply_model(conn=db, model=model_of("facility: f2\nmachines: [{id: m, name: two}]\n"))
    assets.apply_model(conn=db, model=model_of("facility: f1\n"))  # f1 now has no machine
    assert assets.load_model(conn=db, facility="f1").machines == {}
    assert assets.load_model(conn=db, facility="f2").machines["m"].name == "two"


def test_register_policy_signals_wait_for_review_and_survive_apply(db: psycopg.Connection) -> None:
    model = model_of("facility: f\nunknown_signals: register\n")
    assets.apply_model(conn=db, model=model)
    assert signal_defs.register_unclassified(conn=db, facility="f", name="voltage", unit="V")
    assert signal_defs.register_unclassified(conn=db, facility="f", name="voltage", unit="V")
    assert signal_defs.unclassified(conn=db, facility="f") == ["voltage"]
    assert assets.apply_model(conn=db, model=model) == []  # not removed: it awaits review
    declared = model_of(
        "facility: f\nunknown_signals: register\nsignals: [{name: voltage, unit: V, "
        "accepted_units: [mV]}]\n"
    )
    [change] = assets.apply_model(conn=db, model=declared)
    assert (change.action, change.key) == (Action.CHANGED, "voltage")
    assert signal_defs.unclassified(conn=db, facility="f") == []


def test_register_is_bounded_per_facility(db: psycopg.Connection) -> None:
    db.execute(
        "INSERT INTO signal_defs (facility, name, value_type, kind, unclassified) "
        "SELECT 'f', 'x' || i, 'double', 'gauge', true FROM generate_series(1, %s) i",
        (signal_defs.MAX_UNCLASSIFIED,),
    )
    assert not signal_defs.register_unclassified(conn=db, facility="f", name="one_more")
    assert signal_defs.register_unclassified(conn=db, facility="g", name="one_more")


def test_the_store_catalog_falls_back_to_defaults_and_sees_changes(database_url: str) -> None:
    now = [0.0]
    with open_pool(database_url, max_size=2) as pool:
        catalog = StoreCatalog(pool, ttl=5.0, max_facilities=2, clock=lambda: now[0])
        # a facility without a model: today's nine metrics, refuse
        assert catalog.get("f", "temperature") == DEFAULT_SIGNALS["temperature"]
        assert catalog.get("f", "voltage") is None
        assert catalog.policy("f") is UnknownSignalPolicy.REFUSE
        with pool.connection() as conn:
            assets.apply_model(
                conn=conn,
                model=model_of(
                    "facility: f\nunknown_signals: register\nsignals:\n"
                    "  - {name: voltage, unit: V}\n  - {name: temperature, unit: K}\n"
                    "  - {name: mode, type: state, states: [auto, manual]}\n"
                ),
            )
        assert catalog.get("f", "voltage") is None  # cached: seen within the ttl
        now[0] = 5.0
        assert catalog.get("f", "voltage") is not None
        assert catalog.get("f", "temperature").unit == "K"  # type: ignore[union-attr]
        assert catalog.get("f", "mode").value_type is ValueType.STATE  # type: ignore[union-attr]
        assert catalog.get("f", "pressure") == DEFAULT_SIGNALS["pressure"]
        assert catalog.get("g", "voltage") is None  # another facility does not see it
        assert catalog.policy("f") is UnknownSignalPolicy.REGISTER
        assert len(catalog.signals("f")) == len(DEFAULT_SIGNALS) + 2  # temperature overridden
        catalog.get("h", "x")  # a third facility evicts the least recently used (g)
        assert set(catalog._entries) == {"f", "h"}
        registered = catalog.register("f", "spindle_load", "%")
        assert registered is not None
        assert registered.unclassified
        assert catalog.get("f", "spindle_load") == registered  # seen at once, not after the ttl
        configured = StoreCatalog.from_settings(load_settings(catalog_ttl_seconds=0.5), pool)
        assert configured.get("f", "voltage") is not None


def test_the_store_catalog_keeps_the_last_definitions_when_postgres_is_away(
    database_url: str,
) -> None:
    now = [0.0]
    with open_pool(database_url, max_size=1) as pool:
        with pool.connection() as conn:
            assets.apply_model(conn=conn, model=model_of("facility: f\nsignals: [{name: v}]\n"))
        catalog = StoreCatalog(pool, ttl=1.0, clock=lambda: now[0])
        assert catalog.get("f", "v") is not None
    # the pool is closed: every refresh fails
    now[0] = 10.0
    assert catalog.get("f", "v") is not None
    with pytest.raises(Exception):  # noqa: B017, PT011 - psycopg_pool's own error
        catalog.get("other", "v")


def _downgrade(database_url: str, revision: str) -> None:
    engine = create_engine(f"postgresql+psycopg://{database_url.partition('://')[2]}")
    try:
        with engine.connect() as connection:
            config = Config()
            config.set_main_option(
                "script_location", str(Path(schema.__file__).parent / "migrations")
            )
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
            connection.commit()
    finally:
        engine.dispose()


def test_the_migration_goes_down_and_up(empty_database_url: str) -> None:
    # by revision: later migrations (0004, ...) build on this one
    assert migrate(empty_database_url, revision="0003") == "0003"
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        assets.apply_model(conn=conn, model=model_of("facility: f\nmachines: [{id: m}]\n"))
    _downgrade(empty_database_url, "0002")
    assert schema.current_revision(empty_database_url) == "0002"
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT to_regclass('machines')").fetchone() == (None,)
    assert migrate(empty_database_url, revision="0003") == "0003"
    with psycopg.connect(empty_database_url) as conn:
        assert assets.facilities(conn=conn) == []
