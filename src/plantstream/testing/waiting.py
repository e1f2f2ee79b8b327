"""Bounded waits for tests and benchmarks: poll a condition until a deadline, never sleep.

A wait that runs out raises ``AssertionError`` so pytest shows it as a failed expectation.
"""

from __future__ import annotations

import time
from collections.abc import Callable

POLL_SECONDS = 0.02  # the pause between two looks at a condition, never a timing assumption


def wait_until(
    condition: Callable[[], object],
    *,
    timeout: float,
    what: str,
    interval: float = POLL_SECONDS,
) -> None:
    """Poll ``condition`` until it is truthy; raise ``AssertionError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
