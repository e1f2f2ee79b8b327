"""The multi-process layout: web workers sharing one listening socket and a processor, each in
a process of its own, started, restarted and stopped by one supervisor.

Why: under one GIL, HTTP parsing and the processor's decoding take turns; in processes of
their own they use every core. The workers share one socket (bound here, inherited), so the
kernel hands each new connection to whichever worker accepts first: a busy worker takes fewer.
Exactly-once needs nothing new: the processor's leases already fence processes apart.
Prometheus metrics of every child are summed through ``PROMETHEUS_MULTIPROC_DIR``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

from plantstream.runtime.children import run_processor, run_web_worker
from plantstream.settings import Settings

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0  # a child still draining after this is killed
RESTART_DELAY_S = 1.0  # a child that keeps failing is restarted at most once per this
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True, slots=True)
class Layout:
    """How many of each process a role runs: ``web_workers`` serve ``surfaces``."""

    surfaces: tuple[str, ...]
    web_workers: int
    processors: int


def web_workers(settings: Settings, *, default: int | None) -> int:
    """The worker count of ``settings.web_workers``; 0 means ``default`` (None: the CPUs)."""
    if settings.web_workers:
        return settings.web_workers
    return default if default is not None else max(1, os.cpu_count() or 1)


def bind_socket(settings: Settings) -> socket.socket:
    """The listening socket every web worker inherits (one port for all of them)."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((settings.host, settings.port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError:
        sock.close()  # a taken port: nothing left open behind the error
        raise
    return sock


@contextlib.contextmanager
def shared_metrics() -> Iterator[str]:
    """A fresh directory where the children's Prometheus values meet; removed afterwards."""
    path = tempfile.mkdtemp(prefix="plantstream-metrics-")
    previous = os.environ.get(METRICS_DIR_ENV)
    os.environ[METRICS_DIR_ENV] = path  # the children inherit it and import in that mode
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(METRICS_DIR_ENV, None)
        else:
            os.environ[METRICS_DIR_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


class Supervisor:
    """Starts the children of a ``Layout``, restarts one that dies, stops all on ``stop``."""

    def __init__(self, settings: Settings, layout: Layout) -> None:
        self.settings = settings
        self.layout = layout
        # children are forked from a fork server that imported plantstream once: they start in
        # a fraction of a second (a spawned interpreter imports for seconds), and inherit no
        # thread, lock or pool of this process, as forking it would
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["plantstream.runtime.children"])
        self._children: dict[str, BaseProcess] = {}
        self._started_at: dict[str, float] = {}

    def _spawn(self, name: str, sock: socket.socket | None) -> None:
        target: Callable[..., None]
        args: tuple[object, ...]
        if name.startswith("ps-web-"):
            target = run_web_worker
            args = (name, os.getpid(), self.settings, sock, self.layout.surfaces)
        else:
            target, args = run_processor, (name, os.getpid(), self.settings)
        child = self._ctx.Process(target=target, args=args, name=name)
        child.start()
        self._children[name] = child
        self._started_at[name] = time.monotonic()

    def names(self) -> list[str]:
        """One name per child, which is also its process name (``ps``, psutil)."""
        web = [f"ps-web-{i}" for i in range(self.layout.web_workers)]
        return web + [
            f"ps-processor-{i}" if i else "ps-processor" for i in range(self.layout.processors)
        ]

    def pids(self) -> dict[str, int | None]:
        return {name: child.pid for name, child in self._children.items()}

    def run(self, stop: threading.Event, *, ready: Callable[[], None] | None = None) -> None:
        """Run every child until ``stop`` is set, then SIGTERM them and wait for each."""
        sock = bind_socket(self.settings) if self.layout.web_workers else None
        try:
            with shared_metrics():
                for name in self.names():
                    self._spawn(name, sock)
                if ready is not None:
                    ready()
                while not stop.wait(0.2):
                    self._restart_dead(sock)
                self._stop_all()
        finally:
            if sock is not None:
                sock.close()

    def _restart_dead(self, sock: socket.socket | None) -> None:
        for name, child in list(self._children.items()):
            if child.is_alive():
                continue
            if time.monotonic() - self._started_at[name] < RESTART_DELAY_S:
                continue
            log.warning("%s exited with %s; starting it again", name, child.exitcode)
            self._spawn(name, sock)

    def _stop_all(self) -> None:
        for child in self._children.values():
            if child.is_alive():
                child.terminate()  # SIGTERM: web workers and processors drain on it
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for name, child in self._children.items():
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                log.warning("%s did not stop within %.0f s: killed", name, STOP_TIMEOUT_S)
                child.kill()
                child.join(5)


def serve_layout(settings: Settings, stop: threading.Event, layout: Layout) -> None:
    """Run ``layout`` under one supervisor until ``stop`` (SIGTERM or SIGINT) is set."""
    log.info(
        "serving %s with %d web worker(s) and %d processor(s) on %s:%d",
        "+".join(layout.surfaces) or "nothing",
        layout.web_workers,
        layout.processors,
        settings.host,
        settings.port,
    )
    Supervisor(settings, layout).run(stop)


@contextlib.contextmanager
def layout_in_thread(
    settings: Settings, layout: Layout, *, start_timeout: float = 60.0
) -> Iterator[Supervisor]:
    """Run ``layout`` under a supervisor on a thread of this process while the block runs (the
    demo's: it drives a simulator and a live view beside the children); on leaving, SIGTERM
    the children and wait for each to drain. The port is listening once this yields."""
    supervisor = Supervisor(settings, layout)
    stop, ready = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            supervisor.run(stop, ready=ready.set)
        except BaseException as exc:  # reported to the caller, which is waiting on ``ready``
            failed.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="supervisor", daemon=True)
    thread.start()
    if not ready.wait(start_timeout) or failed:
        stop.set()
        raise RuntimeError(f"the process layout did not start on port {settings.port}") from (
            failed[0] if failed else None
        )
    try:
        yield supervisor
    finally:
        stop.set()
        thread.join(STOP_TIMEOUT_S + 10)


def layout_of(
    settings: Settings, surfaces: Sequence[str], *, processor: bool, default_workers: int | None
) -> Layout:
    return Layout(
        surfaces=tuple(surfaces),
        web_workers=web_workers(settings, default=default_workers) if surfaces else 0,
        processors=settings.processor_processes if processor else 0,
    )
