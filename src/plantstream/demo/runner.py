"""The demo: embedded PostgreSQL and Redis, ingest + processor + API in one process, and a
simulated plant with injected faults posting over HTTP, with a live view and a summary.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import uvicorn
from fastapi import FastAPI
from rich.console import Console

from plantstream.api.app import create_app
from plantstream.api.server import build_state
from plantstream.cli.serve import build_processor
from plantstream.demo import books
from plantstream.demo.summary import collect_summary
from plantstream.demo.view import LiveView
from plantstream.local import EmbeddedServices, Endpoints
from plantstream.local.watchdog import watch_embedded
from plantstream.settings import Settings, load_settings
from plantstream.simulate import Gateway, LoadStats, Plant
from plantstream.store.keys import Role, create_key
from plantstream.store.partitions import ensure_window
from plantstream.store.schema import migrate


@dataclass(frozen=True, slots=True)
class DemoOptions:
    duration: float = 60.0
    facilities: int = 2
    machines: int = 6
    rate: float = 2000.0
    port: int = 8080
    data_dir: Path = Path(".plantstream")
    seed: int = 7
    faults: int | None = None  # default: one per machine type and fault kind, as fits
    live: bool = True
    history: float = 360.0  # seconds of simulated history sent first: detectors learn normal


@contextlib.contextmanager
def _web_server(app: FastAPI, port: int) -> Iterator[None]:
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="web", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the web server did not start on port {port}")
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def _keys(
    conn: psycopg.Connection, secret: bytes, facilities: list[str]
) -> tuple[dict[str, str], dict[str, str]]:
    ingest, read = {}, {}
    for facility in facilities:
        ingest[facility], _ = create_key(
            conn, server_secret=secret, role=Role.INGEST, facility=facility, label="demo gateway"
        )
        read[facility], _ = create_key(
            conn, server_secret=secret, role=Role.READ, facility=facility, label="demo dashboard"
        )
    return ingest, read


def run_demo(options: DemoOptions, console: Console) -> dict[str, object]:
    """Run the demo to the end (or Ctrl-C) and return its summary."""
    services = EmbeddedServices(options.data_dir)
    was_running = all(s.running for s in services.status())
    console.print("[bold]plantstream demo[/bold]: starting embedded PostgreSQL and Redis ...")
    database_url, redis_url = services.start()
    settings: Settings = load_settings(
        data_dir=options.data_dir, port=options.port, host="127.0.0.1"
    )
    try:
        migrate(database_url)
        with psycopg.connect(database_url, autocommit=True) as conn:
            ensure_window(conn, past_days=8)
        endpoints = Endpoints(
            database_url, redis_url, services, embedded_servers=("postgres", "redis")
        )
        state = build_state(settings, endpoints)
        plant = Plant(seed=options.seed, facilities=options.facilities, machines=options.machines)
        with psycopg.connect(database_url, autocommit=True) as conn:
            ingest_keys, read_keys = _keys(conn, state.server_secret, plant.facilities)
            baseline = books.totals(conn)  # the data dir may hold earlier runs
        started = time.time()
        faults = plant.schedule_faults(
            start=started,
            duration=options.duration,
            count=options.faults if options.faults is not None else len(plant.machines) // 2,
        )
        stop = threading.Event()
        watch_embedded(endpoints, stop)  # a full disk stops a server; restart it once freed
        processor = build_processor(settings, database_url, redis_url)
        processor_thread = threading.Thread(
            target=processor.run, args=(stop,), daemon=True, name="processor"
        )
        url = f"http://127.0.0.1:{options.port}"
        stats = LoadStats(faults=faults)
        with _web_server(create_app(state), options.port):
            processor_thread.start()
            console.print(f"dashboard: [link={url}/]{url}/[/link]   API docs: {url}/docs")
            for facility, key in read_keys.items():
                console.print(
                    f"read key for {facility}: [bold]{key}[/bold]", soft_wrap=True, highlight=False
                )
            gateway = Gateway(
                url=url,
                keys=ingest_keys,
                plant=plant,
                rate=options.rate,
                stats=stats,
                client=httpx.Client(timeout=30.0),
            )
            console.print(
                f"sending {options.history:.0f} s of history so the detectors know normal ..."
            )
            gateway.backfill(seconds=options.history)
            sim_stop = threading.Event()
            sim = threading.Thread(
                target=gateway.run,
                kwargs={"duration": options.duration, "stop": sim_stop},
                name="simulator",
                daemon=True,
            )
            sim.start()
            view = LiveView(
                console,
                database_url=database_url,
                stats=stats,
                processor=processor,
                started=started,
                baseline=baseline,
            )
            try:
                view.follow(sim, live=options.live)
            except KeyboardInterrupt:
                console.print("stopping (Ctrl-C): letting the processor catch up ...")
                sim_stop.set()
                sim.join()
            view.wait_drained(timeout=60)
            stop.set()
            processor_thread.join(timeout=30)
        summary = collect_summary(database_url, stats, started, options, baseline)
        state.close()
        return summary
    finally:
        if not was_running:
            services.stop()
