"""What keeps ``POST /v1/readings`` no dearer than before the redesign (redesign_ab.json).

Each test guards one cost that was found on the request path: worker-thread hops for the
authentication dependencies, and full garbage collections walking the start-up heap.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fixtures.api import Api

from plantstream.api import ingest


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


def test_no_dependency_of_post_readings_runs_in_a_worker_thread() -> None:
    # FastAPI runs a plain ``def`` dependency in a worker thread: three of them made three
    # thread hops per request, more CPU than the rest of the framework's work
    (route,) = [
        r for r in ingest.router.routes if isinstance(r, APIRoute) and r.path == "/v1/readings"
    ]
    blocking = [
        getattr(d.call, "__name__", repr(d.call))
        for d in _dependencies(route.dependant)
        if d.call is not None and not _is_async(d.call)
    ]
    assert blocking == []


def _is_async(call: object) -> bool:
    target = call if asyncio.iscoroutinefunction(call) else getattr(call, "__call__", None)  # noqa: B004
    return asyncio.iscoroutinefunction(target)


def test_a_key_not_in_the_cache_is_still_looked_up_and_then_refused_or_taken(api: Api) -> None:
    # the cache is off in this fixture: every request takes the database path (in a thread)
    key = api.make_key("ingest")
    ts = datetime.now(UTC).isoformat()
    body = {
        "facility": "plant-01",
        "readings": [{"device": "d1", "metric": "temperature", "ts": ts, "value": 1}],
    }
    ok = api.client.post("/v1/readings", json=body, headers=api.headers(key))
    assert ok.status_code == 202, ok.text
    assert ok.json() == {"accepted": 1, "rejected": []}
    wrong = api.client.post("/v1/readings", json=body, headers=api.headers(key[:-2] + "xx"))
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_key"


_SETTLE = """
import gc, weakref
import plantstream.runtime.web as web

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a  # a cycle: garbage only the cyclic collector can free
gone = weakref.ref(a)
del a, b
web.settle_heap()
print(gone() is None, gc.get_freeze_count())
"""


def test_a_server_process_collects_its_garbage_then_freezes_what_lives() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _SETTLE], capture_output=True, text=True, check=True
    ).stdout.split()
    collected, frozen = out[0] == "True", int(out[1])
    assert collected  # garbage is not frozen for ever
    assert frozen > 10_000  # the modules and what they built are out of the collector's way


@pytest.mark.parametrize("path", ["/healthz", "/v1/readings"])
def test_every_answer_still_carries_the_security_headers(api: Api, path: str) -> None:
    answer = api.client.get(path)  # 200, and 405 for a GET of the ingest route
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
