"""The plant model over HTTP: the tree of a facility, the paged machine list, the model itself.

Read keys see their own facility only; replacing a model takes an admin key and is validated
exactly as ``plantstream model apply`` validates a file (the same errors, with their lines).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from plantstream.api import asset_shapes as shapes
from plantstream.api.asset_tree import build_tree
from plantstream.api.auth import State, check_facility
from plantstream.api.detection import admin
from plantstream.api.quotas import QuotaReader as Reader
from plantstream.api.state import AppState
from plantstream.errors import ErrorCode, InvalidInputError, InvalidModelError
from plantstream.model import check_id, from_epoch_us
from plantstream.model.located import MAX_DOCUMENT_BYTES
from plantstream.model.plantdiff import summary
from plantstream.model.plantexport import model_document
from plantstream.model.plantfile import parse_model
from plantstream.model.signals import UnknownSignalPolicy
from plantstream.store import assets as asset_store
from plantstream.store import machine_list, signal_defs
from plantstream.store.keys import Principal

router = APIRouter(tags=["assets"])

FacilityParam = Annotated[str, Query(min_length=1, max_length=64, description="facility id")]
IdFilter = Annotated[str | None, Query(min_length=1, max_length=64)]
MAX_PAGE_SIZE = 200


def _facility(who: Principal, facility: str) -> None:
    check_id(facility, "facility")
    check_facility(who, facility)


@router.get("/v1/assets", response_model=shapes.Assets)
def assets(
    who: Reader,
    state: State,
    facility: FacilityParam,
    machines: Annotated[bool, Query(description="false: areas, lines and counts only")] = True,
) -> shapes.Assets:
    """A facility's plant tree: areas, lines and machines with each machine's signals.

    Devices that have sent readings but have no declared place are listed under `unplaced`.
    A facility with more machines than one answer holds (10,000) answers the tree with its
    counts and `truncated: true`: page through `/v1/assets/machines` for the machines.
    """
    _facility(who, facility)
    with state.pool.connection() as conn:
        model = asset_store.load_model(conn=conn, facility=facility)
        observed = machine_list.device_metrics(conn=conn, facility=facility)
    return build_tree(model, observed=observed, with_machines=machines)


def _state(alerts: int, seen_us: int | None, silent_before_us: int) -> shapes.MachineState:
    if alerts:
        return "alerting"
    if seen_us is None or seen_us < silent_before_us:
        return "silent"
    return "running"


@router.get("/v1/assets/machines", response_model=shapes.MachinePage)
def machine_page(
    who: Reader,
    state: State,
    facility: FacilityParam,
    q: Annotated[str, Query(max_length=64, description="part of an id or name")] = "",
    area: IdFilter = None,
    line: IdFilter = None,
    type_: Annotated[str | None, Query(alias="type", min_length=1, max_length=64)] = None,
    status: Annotated[shapes.MachineState | None, Query(alias="state")] = None,
    silent: Annotated[bool | None, Query(description="no reading for a while")] = None,
    alerting: Annotated[bool | None, Query(description="has open alerts")] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> shapes.MachinePage:
    """A page of a facility's machines (declared and unplaced), sorted by id, filtered.

    `state` is `alerting` (open alerts), else `silent` (no reading for
    `silent_after_seconds`, from the latest values), else `running`; `silent` and
    `alerting` filter on either condition alone. `total` counts every match.
    """
    _facility(who, facility)
    if "\x00" in q:
        raise InvalidInputError(ErrorCode.INVALID_REQUEST, "q must not hold NUL")
    with state.pool.connection() as conn:
        rows = machine_list.machines(
            conn=conn, facility=facility, search=q, area=area, line=line, machine_type=type_
        )
        alerts = machine_list.open_alerts(conn=conn, facility=facility)
    seen = machine_list.last_seen(state.redis, facility)
    after = state.settings.silent_after_seconds
    silent_before = int((time.time() - after) * 1_000_000)
    listed = []
    for row in rows:
        seen_us = seen.get(row.id)
        is_silent = seen_us is None or seen_us < silent_before
        row_state = _state(alerts.get(row.id, 0), seen_us, silent_before)
        if status is not None and row_state != status:
            continue
        if silent is not None and is_silent != silent:
            continue
        if alerting is not None and bool(alerts.get(row.id)) != alerting:
            continue
        listed.append((row, row_state, seen_us))
    start = (page - 1) * page_size
    return shapes.MachinePage(
        facility=facility,
        total=len(listed),
        page=page,
        page_size=page_size,
        silent_after_seconds=after,
        machines=[
            shapes.MachineSummary(
                id=row.id,
                name=row.name,
                type=row.machine_type,
                area=row.area,
                line=row.line,
                placed=row.placed,
                state=row_state,
                last_seen=from_epoch_us(seen_us) if seen_us is not None else None,
                open_alerts=alerts.get(row.id, 0),
            )
            for row, row_state, seen_us in listed[start : start + page_size]
        ],
    )


@router.get("/v1/assets/model", response_model=dict[str, Any])
def get_model(who: Reader, state: State, facility: FacilityParam) -> dict[str, Any]:
    """A facility's model as a document: edit it and PUT it back (the `model apply` format)."""
    _facility(who, facility)
    with state.pool.connection() as conn:
        return model_document(asset_store.load_model(conn=conn, facility=facility))


@router.get("/v1/assets/unclassified", response_model=shapes.UnclassifiedSignals)
def unclassified(
    who: Annotated[Principal, Depends(admin)], state: State, facility: FacilityParam
) -> shapes.UnclassifiedSignals:
    """The signals the facility's `register` policy let in that no model declares yet (admin
    keys): review each and declare it in the model (it then leaves this list), sorted by name.
    """
    _facility(who, facility)
    with state.pool.connection() as conn:
        policy = signal_defs.facility_policy(conn=conn, facility=facility)
        found = signal_defs.review(conn=conn, facility=facility)
    return shapes.UnclassifiedSignals(
        facility=facility,
        unknown_signals=str(policy or UnknownSignalPolicy.REFUSE),
        signals=[
            shapes.UnclassifiedSignal(
                name=u.name,
                first_seen=u.first_seen,
                devices=u.devices,
                sample_devices=list(u.sample_devices),
            )
            for u in found
        ],
    )


_MODEL_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


@router.put(
    "/v1/assets/model",
    response_model=shapes.AppliedModel,
    openapi_extra=_MODEL_BODY,
    responses={400: {"description": "`invalid_model`: `error.issues` lists each line at fault"}},
)
async def put_model(
    request: Request,
    who: Annotated[Principal, Depends(admin)],
    state: State,
    facility: FacilityParam,
    dry_run: bool = False,
) -> Any:
    """Make a facility's model what the document (JSON or YAML) describes (admin keys).

    The document describes the facility whole: what it no longer lists is removed. Sending
    the same document again changes nothing (`changed: false`). An invalid document answers
    400 `invalid_model` with every issue's `line` and `column`.
    """
    _facility(who, facility)
    body = await _bounded_body(request)
    fmt = "json" if "json" in request.headers.get("content-type", "") else "yaml"
    try:
        parsed = parse_model(body, source="model", fmt=fmt)
    except InvalidModelError as exc:
        return _model_error(exc)
    if parsed.model.facility != facility:
        message = f"the document is for {parsed.model.facility!r}, not {facility!r}"
        return _model_error(InvalidModelError("model", [(1, 1, "facility", message)]))
    changes = await run_in_threadpool(_apply, state, parsed.model, dry_run)
    return shapes.AppliedModel(
        facility=facility,
        dry_run=dry_run,
        changed=bool(changes),
        summary=summary(changes),
        changes=[
            shapes.ModelChange(action=c.action.value, kind=c.kind, key=c.key) for c in changes
        ],
        warnings=[_issue(w) for w in parsed.warnings],
    )


def _apply(state: AppState, model: Any, dry_run: bool) -> list[Any]:
    with state.pool.connection() as conn:
        changes = asset_store.apply_model(conn=conn, model=model, dry_run=dry_run)
    if changes and not dry_run:
        state.model_changed(model.facility)
    return changes


async def _bounded_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
        raise InvalidInputError(ErrorCode.BODY_TOO_LARGE, f"more than {MAX_DOCUMENT_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_DOCUMENT_BYTES:
            raise InvalidInputError(
                ErrorCode.BODY_TOO_LARGE, f"more than {MAX_DOCUMENT_BYTES} bytes"
            )
    return bytes(body)


def _issue(issue: tuple[int, int, str, str]) -> shapes.ModelIssue:
    line, column, path, message = issue
    return shapes.ModelIssue(line=line, column=column, path=path, message=message)


def _model_error(exc: InvalidModelError) -> JSONResponse:
    first = exc.issues[0]
    detail = {
        "code": str(exc.code),
        "message": exc.message,
        "line": first[0],
        "column": first[1],
        "issues": [_issue(i).model_dump() for i in exc.issues],
    }
    return JSONResponse({"error": detail}, status_code=exc.code.status)


__all__ = ["router"]
