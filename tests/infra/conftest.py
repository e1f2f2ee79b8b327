"""Fixtures for the infra tests: one offline-check report per preset, run in parallel."""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from infra_helpers import PRESETS, Report, report_for


@pytest.fixture(scope="session")
def reports() -> dict[str, Report]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(PRESETS, pool.map(report_for, PRESETS), strict=True))


@pytest.fixture(scope="session")
def check_with() -> Callable[..., Report]:
    """Run a preset with config overrides (``{"plantstream:cache": {...}}``)."""
    return report_for
