"""Machine models over HTTP: an admin names a machine's normal period and the model is trained
on its stored readings; anyone who may read the facility lists the models in force."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from plantstream.api.auth import State, check_facility
from plantstream.api.detection import admin
from plantstream.api.quotas import QuotaReader as Reader
from plantstream.api.state import AppState
from plantstream.api.times import parse_time
from plantstream.detect import machine_models as models
from plantstream.detect.config import current_config
from plantstream.detect.multivariate import MAX_SIGNALS
from plantstream.errors import ErrorCode, InvalidInputError, OverloadedError
from plantstream.model import check_id
from plantstream.store import machine_models as store
from plantstream.store.keys import Principal

router = APIRouter(tags=["detection"])

Id = Annotated[str, Path(min_length=1, max_length=64)]
Signal = Annotated[str, Field(min_length=1, max_length=64)]
_TIME = "RFC 3339 with an offset, e.g. 2026-12-01T08:00:00Z"


class TrainBody(BaseModel):
    """A machine's normal period: what its signals do together when nothing is wrong."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", min_length=1, max_length=64, description=_TIME)
    to: str = Field(min_length=1, max_length=64, description=_TIME + " (not included)")
    signals: list[Signal] | None = Field(
        None,
        min_length=2,
        max_length=MAX_SIGNALS,
        description="the signals judged together; all numeric gauges of the machine if absent",
    )


class ModelSummary(BaseModel):
    facility: str
    machine: str
    version: int
    signals: list[str]
    components: int = Field(description="principal components kept (90% of the variance)")
    t2_limit: float
    q_limit: float
    per_bucket: int = Field(description="aligned readings per judged bucket")
    trained_from: datetime
    trained_to: datetime
    readings: int = Field(description="readings of the normal period read")
    buckets: int = Field(description="buckets the model was fitted on")
    created_at: datetime
    created_by: str


class ModelVersion(BaseModel):
    version: int
    removed: bool
    signals: list[str] | None
    trained_from: datetime | None
    trained_to: datetime | None
    created_at: datetime
    created_by: str


class MachineModel(ModelSummary):
    versions: list[ModelVersion] = Field(description="newest first, at most 20")


class MachineModels(BaseModel):
    models: list[ModelSummary]


class Removed(BaseModel):
    facility: str
    machine: str
    version: int = Field(description="the version that records the removal")


def _ids(who: Principal, facility: str, machine: str | None = None) -> None:
    check_id(facility, "facility")
    check_facility(who, facility)
    if machine is not None:
        check_id(machine, "machine")


def _summary(row: dict[str, Any]) -> ModelSummary:
    return ModelSummary(**models.summary(row))


@router.put("/v1/detection/machines/{facility}/{machine}", response_model=ModelSummary)
def train(
    facility: Id,
    machine: Id,
    body: TrainBody,
    who: Annotated[Principal, Depends(admin)],
    state: State,
) -> ModelSummary:
    """Train the machine's model on its readings of the normal period ``[from, to)`` (at most
    7 days, 2,000,000 readings) and put it in force as a new version (admin).

    Processors judge the machine with it within seconds. Refusals: ``invalid_time``,
    ``invalid_period``, ``unknown_machine``, ``unknown_metric``, ``insufficient_data``,
    ``too_much_data``, ``quota_machine_models``; 429 ``overloaded`` while this process
    trains another model (one at a time).
    """
    _ids(who, facility, machine)
    start, end = parse_time(body.from_), parse_time(body.to)
    # one training at a time per process: each holds a pool connection and up to
    # 2,000,000 readings in memory, and the queries of every facility share that pool
    if not _TRAINING.acquire(blocking=False):
        raise OverloadedError(
            "this process is training a machine model already: try again when it is done",
            retry_after=10.0,
        )
    try:
        return _train(state, who, facility, machine, body, start, end)
    finally:
        _TRAINING.release()


_TRAINING = threading.BoundedSemaphore(1)


def _train(
    state: AppState,
    who: Principal,
    facility: str,
    machine: str,
    body: TrainBody,
    start: datetime,
    end: datetime,
) -> ModelSummary:
    with state.pool.connection() as conn:
        tuning = current_config(conn)[1].tuning
        try:
            models.train(
                conn,
                facility=facility,
                machine=machine,
                start=start,
                end=end,
                signals=body.signals,
                author=who.key_id,
                bucket_seconds=tuning.bucket_seconds,
                min_readings=tuning.bucket_min_readings,
            )
        except ImportError as exc:
            raise InvalidInputError(ErrorCode.MISSING_EXTRA, str(exc)) from None
        rows = store.in_force(conn=conn, facility=facility, machine=machine, limit=1)
    return _summary(rows[0])


@router.get("/v1/detection/machines/{facility}", response_model=MachineModels)
def list_models(facility: Id, who: Reader, state: State) -> MachineModels:
    """The facility's machine models in force, by machine."""
    _ids(who, facility)
    with state.pool.connection() as conn:
        rows = store.in_force(conn=conn, facility=facility, limit=models.MAX_MODELS_PER_FACILITY)
    return MachineModels(models=[_summary(row) for row in rows])


@router.get("/v1/detection/machines/{facility}/{machine}", response_model=MachineModel)
def get_model(facility: Id, machine: Id, who: Reader, state: State) -> MachineModel:
    """The machine's model in force and its versions (trainings and removals, who and when)."""
    _ids(who, facility, machine)
    with state.pool.connection() as conn:
        rows = store.in_force(conn=conn, facility=facility, machine=machine, limit=1)
        if not rows:
            raise InvalidInputError(ErrorCode.NOT_FOUND, f"machine {machine} has no model")
        versions = store.history(
            conn=conn, facility=facility, machine=machine, limit=models.HISTORY_LIMIT
        )
    return MachineModel(**models.summary(rows[0]), versions=[ModelVersion(**v) for v in versions])


@router.delete("/v1/detection/machines/{facility}/{machine}", response_model=Removed)
def remove(
    facility: Id,
    machine: Id,
    who: Annotated[Principal, Depends(admin)],
    state: State,
) -> Removed:
    """Take the machine's model out of force (admin); recorded as a version. Its open
    ``correlation_break`` alert resolves."""
    _ids(who, facility, machine)
    with state.pool.connection() as conn:
        version = models.remove(conn, facility=facility, machine=machine, author=who.key_id)
    return Removed(facility=facility, machine=machine, version=version)
