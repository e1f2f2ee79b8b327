"""The demo: embedded PostgreSQL and Redis, ingest + API + processor in the process layout of
``serve all`` (web workers on one port and a processor, each a process of its own), and a
simulated plant with injected faults posting over HTTP, with a live view and a summary; some
machines publish Sparkplug B through the embedded MQTT broker into the bridge instead.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import httpx
import psycopg
from pydantic import SecretStr
from rich.console import Console

from plantstream.demo import books
from plantstream.demo.mqtt_path import SparkplugPath, SplitGateway
from plantstream.demo.opcua_path import OpcUaPath
from plantstream.demo.options import DemoOptions
from plantstream.demo.summary import collect_summary
from plantstream.demo.view import LiveView
from plantstream.local import EmbeddedServices
from plantstream.runtime import Runtime, web_server_thread
from plantstream.runtime.layout import Layout, layout_in_thread, web_workers
from plantstream.settings import Settings, load_settings
from plantstream.simulate import LoadStats, Plant
from plantstream.store.keys import Role, create_key
from plantstream.stream.base import Stream

CATCH_UP_TIMEOUT_S = 120.0  # for what an earlier run left in the stream
DRAIN_TIMEOUT_S = 60.0


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
    """Run the demo to the end (or Ctrl-C) and return its summary.

    The summary counts exactly this run's readings: what earlier runs left in the stream is
    processed before the books are opened, and the stream is drained before they close.
    """
    services = EmbeddedServices(options.data_dir)
    was_running = all(s.running for s in services.status())
    console.print("[bold]plantstream demo[/bold]: starting embedded PostgreSQL and Redis ...")
    settings = load_settings(data_dir=options.data_dir, port=options.port, host="127.0.0.1")
    runtime = Runtime.embedded(settings)
    stop = threading.Event()
    sparkplug: SparkplugPath | None = None
    opcua: OpcUaPath | None = None
    try:
        runtime.migrate()
        runtime.ensure_partitions()
        state = runtime.state
        plant = Plant(seed=options.seed, facilities=options.facilities, machines=options.machines)
        runtime.watch(stop)  # a full disk stops a server; restart it once freed
        stream = runtime.stream()  # to see how far the processor got
        with _platform(runtime, stop):
            if not _catch_up(runtime, stream, console):
                raise RuntimeError("the processor did not catch up with earlier runs' readings")
            with runtime.connect() as conn:
                ingest_keys, read_keys = _keys(conn, state.server_secret, plant.facilities)
                baseline = books.totals(conn)  # the data dir may hold earlier runs
            started = time.time()
            faults = plant.schedule_faults(
                start=started,
                duration=options.duration,
                count=options.faults if options.faults is not None else len(plant.machines) // 2,
            )
            url = f"http://127.0.0.1:{options.port}"
            stats = LoadStats(faults=faults)
            if options.sparkplug_machines:
                console.print("starting the embedded MQTT broker and the Sparkplug B bridge ...")
                sparkplug = SparkplugPath.start(runtime, plant, options.sparkplug_machines)
            console.print(f"dashboard: [link={url}/]{url}/[/link]   API docs: {url}/docs")
            for facility, key in read_keys.items():
                console.print(
                    f"read key for {facility}: [bold]{key}[/bold]", soft_wrap=True, highlight=False
                )
            if options.opcua:
                console.print("starting the OPC UA server of one machine and the edge agent ...")
                first = plant.machines[0]  # never a Sparkplug one: those are each facility's last
                opcua = OpcUaPath.start(
                    first,
                    plant,
                    url=url,
                    key=ingest_keys[first.facility],
                    data_dir=options.data_dir,
                )
            gateway = SplitGateway(
                sparkplug=sparkplug,
                opcua=opcua,
                url=url,
                keys=ingest_keys,
                plant=plant,
                rate=options.rate,
                stats=stats,
                client=httpx.Client(timeout=30.0),
            )
            view = LiveView(
                console,
                database_url=runtime.database_url,
                stats=stats,
                started=started,
                baseline=baseline,
            )
            _drive(gateway, view, options, console)
            if sparkplug is not None and not sparkplug.finish():
                console.print("[yellow]the bridge did not account for every MQTT reading[/yellow]")
            if opcua is not None and not opcua.finish():
                console.print("[yellow]the edge agent did not forward every OPC UA value[/yellow]")
            if not books.wait_drained(runtime.connect, stream, timeout=DRAIN_TIMEOUT_S):
                console.print("[yellow]the processor did not drain the stream in time[/yellow]")
        stream.close()
        paths = {}
        if sparkplug is not None:
            paths["sparkplug"] = sparkplug.books()
        if opcua is not None:
            paths["opcua"] = opcua.books()
        return collect_summary(runtime.database_url, stats, started, options, baseline, paths=paths)
    finally:
        stop.set()
        if sparkplug is not None:
            sparkplug.close()
        if opcua is not None:
            opcua.close()
        runtime.close()
        if not was_running:
            services.stop()


def _children_settings(runtime: Runtime) -> Settings:
    """The demo's settings for processes of their own: the embedded servers by their URLs
    (the environment may name others), the credentials already in them."""
    return runtime.settings.model_copy(
        update={
            "database_url": SecretStr(runtime.database_url),
            "redis_url": SecretStr(runtime.redis_url),
            "database_password": None,
            "db_secret_arn": None,
            "redis_password": None,
            "redis_auth_secret_arn": None,
            # the live view owns the terminal: the children say only what needs saying
            "log_level": "WARNING"
            if runtime.settings.log_level in ("DEBUG", "INFO")
            else runtime.settings.log_level,
        }
    )


@contextlib.contextmanager
def _platform(runtime: Runtime, stop: threading.Event) -> Iterator[None]:
    """Ingest, API and processor while the block runs, in ``serve all``'s process layout: web
    workers (``PLANTSTREAM_WEB_WORKERS``, one per CPU by default) on the demo's port and
    ``PLANTSTREAM_PROCESSOR_PROCESSES`` processors; with ``PLANTSTREAM_PROCESS_LAYOUT=threads``
    all of them in this process, the processor on a thread. Leaving stops them (drained)."""
    settings = runtime.settings
    if settings.process_layout == "processes":
        layout = Layout(
            surfaces=("ingest", "query"),
            web_workers=web_workers(settings, default=None),
            processors=settings.processor_processes,
        )
        with layout_in_thread(_children_settings(runtime), layout):
            yield
        return
    processor = runtime.start_processor(stop)
    try:
        with web_server_thread(runtime.app(["ingest", "query"]), settings, log_level="warning"):
            yield
    finally:
        stop.set()
        processor.join(timeout=30)


def _catch_up(runtime: Runtime, stream: Stream, console: Console) -> bool:
    """Process what earlier runs left in the stream (a run stopped early, a crash)."""
    with runtime.connect() as conn:
        behind = books.shards_behind(conn, stream)
    if not behind:
        return True
    console.print(f"processing what earlier runs left in {len(behind)} shard(s) first ...")
    return books.wait_drained(runtime.connect, stream, timeout=CATCH_UP_TIMEOUT_S)


def _drive(gateway: SplitGateway, view: LiveView, options: DemoOptions, console: Console) -> None:
    """Send history, then live readings until the duration ends or Ctrl-C stops them.

    The simulator runs on its own thread, so Ctrl-C (in the main thread) never cuts a
    request short: every batch the server took is counted as sent and accepted.
    """
    sim_stop = threading.Event()

    def feed() -> None:
        gateway.backfill(seconds=options.history)
        gateway.run(duration=options.duration, stop=sim_stop)

    sim = threading.Thread(target=feed, name="simulator", daemon=True)
    console.print(f"sending {options.history:.0f} s of history so the detectors know normal ...")
    sim.start()
    try:
        view.follow(sim, live=options.live)
    except KeyboardInterrupt:
        console.print("stopping (Ctrl-C): letting the processor catch up ...")
        sim_stop.set()
        sim.join()
