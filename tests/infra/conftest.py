"""Fixtures for the infra tests: one offline-check report per preset, run in parallel."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

# pytest puts this folder on the import path for its conftest (rootdir-relative "prepend" mode),
# the same way tests/fixtures is found; plantstream_infra comes from the editable install
from infra_helpers import PRESETS, Report, report_for


@pytest.fixture(scope="session")
def reports() -> dict[str, Report]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(PRESETS, pool.map(report_for, PRESETS), strict=True))


@pytest.fixture(scope="session")
def check_with() -> Callable[..., Report]:
    """Run a preset with config overrides (``{"plantstream:cache": {...}}``)."""
    return report_for
