"""Two benchmark runs on one set of embedded servers would empty each other's Redis mid-run:
the second one is refused with a clear error instead."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from plantstream.errors import ServiceError
from plantstream.testing.services import _one_run_at_a_time


def test_a_second_run_on_the_same_embedded_servers_is_refused(tmp_path: Path) -> None:
    with open(tmp_path / "bench.lock", "w") as other_run:
        fcntl.flock(other_run, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another process holds it
        with (
            pytest.raises(ServiceError, match="another benchmark is running"),
            _one_run_at_a_time(tmp_path),
        ):
            pass
        fcntl.flock(other_run, fcntl.LOCK_UN)
    # one run's nested blocks share its hold
    with _one_run_at_a_time(tmp_path), _one_run_at_a_time(tmp_path):
        pass
