"""What one MQTT message came to: readings to put, refusals by code, state to write, commands.

The bridge gathers the outcomes of a batch of messages, makes them durable (stream, Redis)
and only then acknowledges the messages to the broker.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from plantstream.errors import ErrorCode
from plantstream.model import Reading
from plantstream.store.sparkplug_state import BirthState


@dataclass(slots=True)
class Outcome:
    """The effect of one message. ``dead_letter`` is set when it was refused whole; ``park``
    when it was kept to be taken once its node is born again (Sparkplug, after a rebirth)."""

    facility: str | None = None
    readings: list[Reading] = field(default_factory=list)
    rejected: Counter[ErrorCode] = field(default_factory=Counter)
    dead_letter: tuple[ErrorCode, str] | None = None
    births: dict[str, BirthState] = field(default_factory=dict)
    deaths: dict[str, int] = field(default_factory=dict)
    seqs: dict[str, int] = field(default_factory=dict)
    rebirths: list[tuple[str, str]] = field(default_factory=list)  # (group, edge node)
    historical: int = 0  # is_historical metrics seen (taken into ``history`` or refused)
    history: list[Reading] = field(default_factory=list)  # for the history path, not live
    park: str | None = None  # the node key this message waits for (kept, replayed on birth)
    replay: list[str] = field(default_factory=list)  # node keys born: replay their parked ones

    @classmethod
    def refused(cls, code: ErrorCode, reason: str) -> Outcome:
        return cls(dead_letter=(code, reason))
