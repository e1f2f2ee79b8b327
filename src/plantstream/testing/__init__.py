"""Helpers shared by the test suite and the benchmarks; not part of plantstream's product surface.

Nothing else in ``plantstream`` imports it (``make lint`` checks that) and the wheel leaves it out.
"""

from plantstream.testing.databases import (
    create_database,
    drop_database,
    readings_count,
    stored_counter,
    wait_for_readings,
    with_database,
)
from plantstream.testing.live import app_in_thread
from plantstream.testing.load import (
    BATCH,
    CONTENT_TYPES,
    FACILITY,
    in_processes,
    percentile,
    run_clients,
    unique_body,
)
from plantstream.testing.processes import (
    SERVER_SECRET,
    answers_ok,
    plantstream_server,
    server_env,
    start_process,
    stop_process,
)
from plantstream.testing.results import write_result
from plantstream.testing.services import BENCH_SERVER_SETTINGS, fresh_services
from plantstream.testing.waiting import POLL_SECONDS, wait_until

__all__ = [
    "BATCH",
    "BENCH_SERVER_SETTINGS",
    "CONTENT_TYPES",
    "FACILITY",
    "POLL_SECONDS",
    "SERVER_SECRET",
    "answers_ok",
    "app_in_thread",
    "create_database",
    "drop_database",
    "fresh_services",
    "in_processes",
    "percentile",
    "plantstream_server",
    "readings_count",
    "run_clients",
    "server_env",
    "start_process",
    "stop_process",
    "stored_counter",
    "unique_body",
    "wait_for_readings",
    "wait_until",
    "with_database",
    "write_result",
]
