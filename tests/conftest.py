"""Shared test set-up: fixtures live in plug-in modules under ``tests/fixtures``."""

import pytest

pytest_plugins = [
    "fixtures.db",
    "fixtures.redis",
    "fixtures.factories",
    "fixtures.pipeline",
    "fixtures.kinesis",
    "fixtures.api",
    "fixtures.browser",
    "fixtures.opcua",
    "fixtures.modbus",
    "fixtures.edge",
    "fixtures.mqtt",
]

_STORAGE_FIXTURES = {"postgres_admin_url", "redis_server_url"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reaches PostgreSQL or Redis as ``storage`` (and ``integration``)."""
    for item in items:
        if _STORAGE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.storage)
            item.add_marker(pytest.mark.integration)
        elif not any(item.iter_markers(name) for name in ("integration", "infra", "e2e", "slow")):
            item.add_marker(pytest.mark.unit)
