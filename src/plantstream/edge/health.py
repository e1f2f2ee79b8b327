"""The agent's health endpoint and Prometheus metrics on one small HTTP server.

``GET /healthz``: JSON (queue depth and age, held and dead-lettered readings, per-source state
and last value time, recent gaps, forwarding state and rate); 200 while collecting and
forwarding works, 503 when the queue refuses readings or a source is down. ``GET /metrics``:
Prometheus text. Bind it to loopback or a management network (it has no authentication).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import generate_latest

from plantstream.edge.queue import HELD_HISTORY, EdgeQueue
from plantstream.edge.status import EdgeStatus
from plantstream.model.readings import now_us


def _iso(ts_us: int | None) -> str | None:
    from plantstream.edge.wire import rfc3339

    return None if ts_us is None else rfc3339(ts_us)


def health(queue: EdgeQueue, status: EdgeStatus) -> dict[str, Any]:
    """The health document (also refreshes the queue gauges of ``/metrics``)."""
    stats = queue.stats()
    now = now_us()
    m = status.metrics
    m.depth.set(stats.depth)
    for reason in {HELD_HISTORY, *stats.held}:
        m.held.labels(reason).set(stats.held.get(reason, 0))
    age = (now - stats.oldest_enqueued_us) / 1e6 if stats.oldest_enqueued_us else 0.0
    m.oldest_age.set(age)
    m.queue_bytes.set(stats.bytes)
    m.dead_letters.set(stats.dead_letters)
    over_age = age > queue.config.max_age_hours * 3600
    sources = {
        s.name: {
            "kind": s.kind,
            "state": s.state,
            "since": _iso(s.since_us),
            "last_value_time": _iso(s.last_value_us),
            "last_error": s.last_error,
            "engineering": s.engineering,
            "gaps": [
                {
                    "start": _iso(g.start_us),
                    "end": _iso(g.end_us),
                    "seconds": round(g.seconds, 3),
                    "reason": g.reason,
                }
                for g in s.gaps
            ],
        }
        for s in list(status.sources.values())
    }
    problems = [
        f"source {n} is {s['state']}" for n, s in sources.items() if s["state"] != "connected"
    ]
    if status.overflow_since_us is not None:
        problems.append("QUEUE FULL: new readings are refused")
    if over_age:
        problems.append(
            f"the oldest queued reading waits longer than {queue.config.max_age_hours} h"
        )
    notes = [f"{n} readings held in the queue: {reason}" for reason, n in stats.held.items()]
    fwd, hist = status.forward, status.history
    if hist.state == "unavailable":
        problems.append("plantstream has no history path: readings past the live window wait")
    return {
        "status": "ok" if not problems else "degraded",
        "problems": problems,
        "notes": notes,
        "queue": {
            "depth": stats.depth,
            "oldest_age_seconds": round(age, 3),
            "oldest_reading_time": _iso(stats.oldest_ts_us),
            "bytes": stats.bytes,
            "held": stats.held,
            "dead_letters": stats.dead_letters,
            "overflow": status.overflow_since_us is not None,
            "overflow_policy": queue.config.overflow,
            "budget": {"readings": queue.config.max_readings, "bytes": queue.config.max_bytes},
            "totals": stats.counters,
        },
        "sources": sources,
        "forward": {
            "state": fwd.state,
            "rate_per_second": round(fwd.rate(), 1),
            "last_success": _iso(fwd.last_success_us),
            "last_error": fwd.last_error,
            "retry_at": _iso(fwd.retry_at_us),
        },
        "history": {
            "state": hist.state,
            "waiting": stats.held.get(HELD_HISTORY, 0),
            "rate_per_second": round(hist.rate(), 1),
            "last_success": _iso(hist.last_success_us),
            "last_error": hist.last_error,
            "retry_at": _iso(hist.retry_at_us),
        },
    }


def serve_health(
    queue: EdgeQueue, status: EdgeStatus, host: str, port: int
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Start the endpoint on a daemon thread; (server, thread). ``server.shutdown()`` stops it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/healthz"):
                doc = health(queue, status)
                self._answer(200 if doc["status"] == "ok" else 503, json.dumps(doc).encode(),
                             "application/json")  # fmt: skip
            elif self.path.startswith("/metrics"):
                health(queue, status)
                self._answer(
                    200, generate_latest(status.metrics.registry), "text/plain; version=0.0.4"
                )
            else:
                self._answer(404, b'{"error": {"code": "not_found"}}', "application/json")

        def _answer(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # probes every few seconds would flood the log

    server = ThreadingHTTPServer((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="edge-health")
    thread.start()
    return server, thread
