"""The answers of ``/v1/assets``: the plant tree, the machine list, an applied model."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from plantstream.model.signals import SignalDef

MachineState = Literal["running", "silent", "alerting"]


class Signal(BaseModel):
    name: str
    type: str
    kind: str
    unit: str
    accepted_units: list[str]
    low: float | None
    high: float | None
    states: list[str]
    wrap: int | None
    max_length: int
    description: str
    unclassified: bool = Field(description="let in by the register policy, awaiting review")
    properties: dict[str, str]

    @classmethod
    def of(cls, s: SignalDef) -> Signal:
        return cls(
            name=s.name,
            type=s.value_type.value,
            kind=s.kind.value,
            unit=s.unit,
            accepted_units=list(s.accepted_units),
            low=s.low,
            high=s.high,
            states=list(s.states),
            wrap=s.wrap,
            max_length=s.max_length,
            description=s.description,
            unclassified=s.unclassified,
            properties=dict(s.properties),
        )


class MachineType(BaseModel):
    name: str
    description: str
    signals: list[str]


class Machine(BaseModel):
    id: str = Field(description="the `device` its readings carry")
    name: str
    type: str | None
    area: str | None
    line: str | None
    placed: bool = Field(description="false: known from its readings only, with no declared place")
    signals: list[str] = Field(description="declared by its type, and any other it has sent")


class Line(BaseModel):
    id: str
    name: str
    area: str | None
    machine_count: int
    machines: list[Machine] | None = Field(description="null when the tree is left short")


class Area(BaseModel):
    id: str
    name: str
    lines: list[Line]
    machine_count: int = Field(description="machines of the area outside any line")
    machines: list[Machine] | None


class Assets(BaseModel):
    facility: str
    unknown_signals: Literal["refuse", "register"]
    signals: list[Signal] = Field(description="the facility's own (default signals not listed)")
    machine_types: list[MachineType]
    areas: list[Area]
    lines: list[Line] = Field(description="lines outside any area")
    machines: list[Machine] | None = Field(description="machines outside any area")
    unplaced: list[Machine] | None = Field(description="devices with readings and no place")
    machine_total: int
    truncated: bool = Field(
        description="machines were left out (too many for one answer, or machines=false): "
        "page through /v1/assets/machines"
    )


class MachineSummary(BaseModel):
    id: str
    name: str
    type: str | None
    area: str | None
    line: str | None
    placed: bool
    state: MachineState
    last_seen: datetime | None
    open_alerts: int


class MachinePage(BaseModel):
    facility: str
    total: int = Field(description="machines matching the filters, on every page")
    page: int
    page_size: int
    silent_after_seconds: float
    machines: list[MachineSummary]


class ModelChange(BaseModel):
    action: Literal["created", "changed", "removed"]
    kind: str
    key: str


class ModelIssue(BaseModel):
    line: int
    column: int
    path: str
    message: str


class AppliedModel(BaseModel):
    facility: str
    dry_run: bool
    changed: bool
    summary: str
    changes: list[ModelChange]
    warnings: list[ModelIssue]


__all__ = [
    "AppliedModel",
    "Area",
    "Assets",
    "Line",
    "Machine",
    "MachinePage",
    "MachineState",
    "MachineSummary",
    "MachineType",
    "ModelChange",
    "ModelIssue",
    "Signal",
]


class UnclassifiedSignal(BaseModel):
    name: str
    first_seen: datetime = Field(description="when the register policy first let it in")
    devices: int = Field(description="devices with readings of it")
    sample_devices: list[str] = Field(description="the first ten of them, sorted")


class UnclassifiedSignals(BaseModel):
    facility: str
    unknown_signals: str = Field(description="the facility's policy: refuse or register")
    signals: list[UnclassifiedSignal]
