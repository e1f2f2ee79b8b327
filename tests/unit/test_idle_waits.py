"""The processor's loop waits after an empty step: briefly at first, so a reading that
arrives while readings flow is taken within a few ms, then longer while the stream stays
empty, so an idle processor asks the stream only a few times a second."""

from __future__ import annotations

import pytest

from plantstream.processor.runner import IdleWaits, ProcessorConfig


def test_waits_grow_while_idle_and_start_over_after_work() -> None:
    waits = IdleWaits(first=0.005, longest=0.05)
    assert [waits.after(worked=False) for _ in range(6)] == [0.005, 0.01, 0.02, 0.04, 0.05, 0.05]
    assert waits.after(worked=True) == 0.0
    assert waits.after(worked=False) == 0.005


def test_the_defaults_poll_an_idle_stream_twenty_times_a_second_at_most() -> None:
    config = ProcessorConfig(stream_name="s")
    waits = IdleWaits(first=config.idle_wait_first, longest=config.idle_wait)
    for _ in range(10):
        waits.after(worked=False)
    assert waits.after(worked=False) == pytest.approx(0.05)
    # a longest wait shorter than the first, or none at all, never stops the processor
    assert IdleWaits(first=0.1, longest=0.05).after(worked=False) == 0.05
    assert IdleWaits(first=0.005, longest=0.0).after(worked=False) == 0.0
