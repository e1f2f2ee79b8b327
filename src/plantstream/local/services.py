"""The embedded PostgreSQL and Redis pair a laptop runs plantstream on, and URL resolution.

With ``PLANTSTREAM_DATABASE_URL`` / ``PLANTSTREAM_REDIS_URL`` set, those servers are used
instead and nothing is started.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg

from plantstream.aws.secrets import CredentialSource, RedisAuth, with_password
from plantstream.local.postgres import EmbeddedPostgres
from plantstream.local.redis import DEFAULT_MAXMEMORY_MB, EmbeddedRedis
from plantstream.settings import Settings


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    running: bool
    url: str | None  # with the password masked


class EmbeddedServices:
    """Both embedded servers under one data directory."""

    def __init__(self, data_dir: Path, *, redis_maxmemory_mb: int = DEFAULT_MAXMEMORY_MB) -> None:
        self.data_dir = data_dir.resolve()
        self.postgres = EmbeddedPostgres(self.data_dir / "postgres")
        self.redis = EmbeddedRedis(self.data_dir / "redis", maxmemory_mb=redis_maxmemory_mb)

    def start(self) -> tuple[str, str]:
        """Start both (reusing running ones); return the PostgreSQL and Redis URLs."""
        return self.postgres.start(), self.redis.start()

    def stop(self) -> list[str]:
        """Stop both; return the names of those that were running."""
        stopped = []
        if self.redis.stop():
            stopped.append("redis")
        if self.postgres.stop():
            stopped.append("postgres")
        return stopped

    def status(self) -> list[ServiceStatus]:
        return [
            ServiceStatus(
                "postgres",
                self.postgres.is_running(),
                _mask(self.postgres.url()) if self.postgres.is_running() else None,
            ),
            ServiceStatus(
                "redis",
                self.redis.is_running(),
                _mask(self.redis.url()) if self.redis.is_running() else None,
            ),
        ]


def _mask(url: str) -> str:
    scheme, _, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the servers are. ``database`` gives the URL to connect with *now* (credentials
    from Secrets Manager are re-read as they rotate); ``database_url`` is its value at start."""

    database_url: str
    redis_url: str
    embedded: EmbeddedServices | None
    database: CredentialSource | None = None
    embedded_servers: tuple[str, ...] = ()  # which of "postgres", "redis" are ``embedded``'s
    # the Redis AUTH token, re-read as it rotates: pass to ``open_redis(credentials=...)``
    redis_auth: RedisAuth | None = None

    def connect(self, _url: object = None) -> psycopg.Connection:
        if self.database is not None:
            return self.database.connect()
        return psycopg.connect(self.database_url, autocommit=True)

    def conninfo(self) -> str:
        return self.database() if self.database is not None else self.database_url


def resolve_endpoints(settings: Settings, *, start: bool = True) -> Endpoints:
    """The URLs this process should use, starting embedded servers for what is not configured."""
    database_url = settings.database_url.get_secret_value() if settings.database_url else None
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    embedded = None
    source = None
    if database_url is not None and (settings.db_secret_arn or settings.database_password):
        source = CredentialSource(
            database_url,
            secret_arn=settings.db_secret_arn,
            password=settings.database_password.get_secret_value()
            if settings.database_password
            else None,
        )
        database_url = source()
    redis_auth = None
    if redis_url is not None and (settings.redis_auth_secret_arn or settings.redis_password):
        redis_auth = RedisAuth(
            secret_arn=settings.redis_auth_secret_arn,
            password=settings.redis_password.get_secret_value()
            if settings.redis_password
            else None,
        )
        redis_url = with_password(redis_url, redis_auth.get_credentials()[-1])
    names: list[str] = []
    if database_url is None or redis_url is None:
        embedded = EmbeddedServices(
            settings.data_dir, redis_maxmemory_mb=settings.embedded_redis_maxmemory_mb
        )
        if database_url is None:
            database_url = embedded.postgres.start() if start else embedded.postgres.url()
            names.append("postgres")
        if redis_url is None:
            redis_url = embedded.redis.start() if start else embedded.redis.url()
            names.append("redis")
    return Endpoints(database_url, redis_url, embedded, source, tuple(names), redis_auth)


mask_url = _mask
