"""Running the web roles under uvicorn (with the processor in-process for ``all``)."""

from __future__ import annotations

import logging
import threading

import uvicorn

from plantstream.api.app import create_app
from plantstream.api.state import AppState, InflightGate, KeyCache, RateLimiter, open_pool
from plantstream.local import Endpoints
from plantstream.local.ports import remembered_secret
from plantstream.model import TimeWindow
from plantstream.settings import Settings
from plantstream.store.redis_client import open_redis
from plantstream.stream.factory import open_stream

log = logging.getLogger(__name__)


def server_secret(settings: Settings) -> bytes:
    """The HMAC secret for API keys: configured, or generated once under the data dir."""
    if settings.server_secret is not None:
        return settings.server_secret.get_secret_value().encode()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return remembered_secret(settings.data_dir / "server-secret").encode()


def build_state(settings: Settings, endpoints: Endpoints) -> AppState:
    return AppState(
        settings=settings,
        pool=open_pool(endpoints.conninfo),
        redis=open_redis(
            endpoints.redis_url,
            cluster=settings.redis_cluster,
            credentials=endpoints.redis_auth,
            socket_timeout=5,
        ),
        stream=open_stream(
            settings, redis_url=endpoints.redis_url, redis_auth=endpoints.redis_auth
        ),
        server_secret=server_secret(settings),
        window=TimeWindow(
            max_past_us=settings.max_past_seconds * 1_000_000,
            max_future_us=settings.max_future_seconds * 1_000_000,
        ),
        keys=KeyCache(settings.auth_cache_seconds),
        limiter=RateLimiter(settings.rate_limit_per_key),
        ingest_gate=InflightGate(settings.max_inflight_ingest),
        previous_server_secret=(
            settings.server_secret_previous.get_secret_value().encode()
            if settings.server_secret_previous is not None
            else None
        ),
    )


def run_server(
    settings: Settings, endpoints: Endpoints, *, role: str, stop: threading.Event
) -> None:
    """Serve ``role`` on settings.host:settings.port until SIGTERM/SIGINT."""
    state = build_state(settings, endpoints)
    processor_thread = None
    if role == "all":
        from plantstream.cli.serve import build_processor

        processor = build_processor(
            settings,
            endpoints.database_url,
            endpoints.redis_url,
            connect=endpoints.connect,
            redis_auth=endpoints.redis_auth,
        )
        processor_thread = threading.Thread(
            target=processor.run, args=(stop,), name="processor", daemon=True
        )
        processor_thread.start()
    app = create_app(state, role=role)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keep_alive_seconds,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        stop.set()
        if processor_thread is not None:
            processor_thread.join(timeout=30)
        state.close()
