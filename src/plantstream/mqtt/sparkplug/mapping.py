"""The rule from Sparkplug names to plantstream's: group/edge node/device -> facility/machine.

Configured by three templates (``PLANTSTREAM_SPARKPLUG_FACILITY``, ``..._MACHINE``,
``..._NODE_MACHINE``) over ``{group}``, ``{edge_node}`` and ``{device}``; by default the
group is the facility and the machine is ``{edge_node}.{device}`` (a node's own metrics:
``{edge_node}``). A metric name's last ``/`` part is the signal; the folders before it extend
the machine (``Spindle 1/temperature`` on machine ``n1.d1`` -> machine ``n1.d1.Spindle 1``,
which ``invalid_id`` then refuses: folders must be identifiers too).
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from plantstream.errors import ConfigError

_FIELDS = {"group", "edge_node", "device"}


def _check(template: str, allowed: set[str], setting: str) -> str:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ConfigError(f"invalid setting {setting}: {exc}") from None
    if not names <= allowed:
        raise ConfigError(
            f"invalid setting {setting}: only {{{'}, {'.join(sorted(allowed))}}} may be used"
        )
    return template


@dataclass(frozen=True, slots=True)
class NameRule:
    facility: str = "{group}"
    machine: str = "{edge_node}.{device}"
    node_machine: str = "{edge_node}"

    def __post_init__(self) -> None:
        _check(self.facility, {"group", "edge_node"}, "PLANTSTREAM_SPARKPLUG_FACILITY")
        _check(self.machine, _FIELDS, "PLANTSTREAM_SPARKPLUG_MACHINE")
        _check(self.node_machine, {"group", "edge_node"}, "PLANTSTREAM_SPARKPLUG_NODE_MACHINE")

    def facility_of(self, group: str, edge_node: str) -> str:
        return self.facility.format(group=group, edge_node=edge_node)

    def machine_of(self, group: str, edge_node: str, device: str | None) -> str:
        if device is None:
            return self.node_machine.format(group=group, edge_node=edge_node)
        return self.machine.format(group=group, edge_node=edge_node, device=device)


def split_metric(machine: str, metric_name: str) -> tuple[str, str]:
    """(machine, signal) of a metric: folders of its name extend the machine id."""
    folder, _, signal = metric_name.rpartition("/")
    if not folder:
        return machine, signal
    return f"{machine}.{folder.replace('/', '.')}", signal


def is_control(metric_name: str) -> bool:
    """A metric of the protocol itself (bdSeq, Node/Device Control), not a measurement."""
    return metric_name == "bdSeq" or metric_name.startswith(("Node Control/", "Device Control/"))
