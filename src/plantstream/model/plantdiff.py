"""What applying a plant model changes: created, changed and removed entries, by kind.

A model document describes one facility whole: what the store holds and the document does
not is removed, except signals that the ``register`` policy let in for review (unclassified),
which stay until a document declares them. Applying the same document twice yields no change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from plantstream.model.plant import PlantModel


class Action(StrEnum):
    CREATED = "created"
    CHANGED = "changed"
    REMOVED = "removed"


# in the order rows must be written (parents first); removal goes the other way
KINDS = ("policy", "signal", "machine_type", "area", "line", "machine")


@dataclass(frozen=True, slots=True)
class Change:
    action: Action
    kind: str
    key: str

    def __str__(self) -> str:
        if self.kind == "policy":
            return f"{self.action} the unknown-signal policy of {self.key}"
        return f"{self.action} {self.kind.replace('_', ' ')} {self.key}"


def tables(model: PlantModel) -> dict[str, Mapping[str, Any]]:
    """Each kind's entries keyed by id (policy: the facility's unknown-signal policy, refuse
    when none was ever set, so a first apply with ``register`` reports it as changed)."""
    return {
        "policy": {model.facility: model.unknown_signals},
        "signal": model.signals,
        "machine_type": model.machine_types,
        "area": model.areas,
        "line": model.lines,
        "machine": model.machines,
    }


def diff(old: PlantModel, new: PlantModel) -> list[Change]:
    """The changes that make ``old`` (the store) into ``new`` (the document)."""
    before, after = tables(old), tables(new)
    changes: list[Change] = []
    for kind in KINDS:
        was, will = before[kind], after[kind]
        for key, value in will.items():
            if key not in was:
                changes.append(Change(Action.CREATED, kind, key))
            elif was[key] != value:
                changes.append(Change(Action.CHANGED, kind, key))
        for key, value in was.items():
            if key not in will and not getattr(value, "unclassified", False):
                changes.append(Change(Action.REMOVED, kind, key))
    return changes


def summary(changes: list[Change]) -> str:
    """``3 created, 1 changed`` (or ``no change``)."""
    counts = {action: sum(c.action is action for c in changes) for action in Action}
    text = ", ".join(f"{n} {action}" for action, n in counts.items() if n)
    return text or "no change"


__all__ = ["KINDS", "Action", "Change", "diff", "summary", "tables"]
