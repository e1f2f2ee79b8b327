"""Database and Redis credentials from Secrets Manager, re-read so rotation never breaks us.

RDS-managed master secrets are JSON ``{"username", "password", ...}``; the ElastiCache AUTH
token is a plain string. A ``CredentialSource`` builds the full connection URL on demand and
caches the secret for ``ttl`` seconds, so a connection opened after a rotation uses the new
password (psycopg_pool accepts a callable conninfo for exactly this). Secrets are never logged.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from redis.credentials import CredentialProvider

from plantstream.errors import ConfigError


class SecretsClient(Protocol):
    def get_secret_value(self, *, SecretId: str) -> dict[str, Any]: ...


def with_password(url: str, password: str, username: str | None = None) -> str:
    """``url`` with its password (and optionally user name) replaced, safely quoted."""
    parts = urlsplit(url)
    user = username if username is not None else (parts.username or "")
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def read_secret(client: SecretsClient | None, secret_arn: str) -> tuple[SecretsClient, str]:
    """The secret's string (and the client used, made on first use); errors name the secret,
    never its value."""
    if client is None:
        import boto3  # the aws extra; only needed when a secret ARN is configured

        client = boto3.client("secretsmanager")
    try:
        return client, client.get_secret_value(SecretId=secret_arn)["SecretString"]
    except Exception as exc:  # boto3 raises many kinds; say which secret, not its value
        raise ConfigError(f"cannot read secret {secret_arn}: {type(exc).__name__}") from None


class CredentialSource:
    """A URL with credentials from a secret (or a fixed password), refreshed every ``ttl`` s."""

    def __init__(
        self,
        base_url: str,
        *,
        secret_arn: str | None = None,
        password: str | None = None,
        client: SecretsClient | None = None,
        json_secret: bool = True,
        ttl: float = 60.0,
    ) -> None:
        self.base_url = base_url
        self.secret_arn = secret_arn
        self.password = password
        self.client = client
        self.json_secret = json_secret
        self.ttl = ttl
        self._cached: tuple[float, str] | None = None
        self._lock = threading.Lock()

    def _from_secret(self) -> str:
        self.client, value = read_secret(self.client, str(self.secret_arn))
        if not self.json_secret:
            return with_password(self.base_url, value.strip())
        data = json.loads(value)
        return with_password(self.base_url, data["password"], data.get("username"))

    def __call__(self) -> str:
        """The URL to connect with now."""
        if self.secret_arn is None:
            return (
                self.base_url
                if self.password is None
                else with_password(self.base_url, self.password)
            )
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > self.ttl:
                self._cached = (time.monotonic(), self._from_secret())
            return self._cached[1]

    def connect(self, _url: object = None) -> psycopg.Connection:
        """An autocommit PostgreSQL connection; after an authentication failure the secret is
        read again once (it may have just rotated)."""
        try:
            return psycopg.connect(self(), autocommit=True)
        except psycopg.OperationalError as exc:
            if self.secret_arn is None or "authentication" not in str(exc):
                raise
            self.invalidate()
            return psycopg.connect(self(), autocommit=True)

    def invalidate(self) -> None:
        """Forget the cached secret (after an authentication failure: it may have rotated)."""
        with self._lock:
            self._cached = None


class RedisAuth(CredentialProvider):
    """Redis AUTH credentials from a secret (or a fixed password), for redis-py connections.

    The secret is a plain token (the ElastiCache AUTH token) or JSON with ``password`` (and
    ``username``). It is read again after ``ttl`` seconds, and at once when a server refused
    it (``refresh``), at most every ``min_interval`` seconds so a burst of refused connections
    does not turn into a burst of Secrets Manager calls.
    """

    def __init__(
        self,
        *,
        secret_arn: str | None = None,
        password: str | None = None,
        username: str | None = None,
        client: SecretsClient | None = None,
        ttl: float = 60.0,
        min_interval: float = 1.0,
    ) -> None:
        if secret_arn is None and password is None:
            raise ConfigError("Redis AUTH needs a secret ARN or a password")
        self.secret_arn = secret_arn
        self.password = password
        self.username = username
        self.client = client
        self.ttl = ttl
        self.min_interval = min_interval
        self._cached: tuple[float, tuple[str, ...]] | None = None
        self._refreshed_at = float("-inf")
        self._lock = threading.Lock()

    def __deepcopy__(self, _memo: object) -> RedisAuth:
        return self  # redis-py deep-copies connection options; every copy must share the cache

    def _read(self) -> tuple[str, ...]:
        self.client, value = read_secret(self.client, str(self.secret_arn))
        username, password = self.username, value.strip()
        if password.startswith("{"):
            data = json.loads(password)
            username, password = data.get("username", username), data["password"]
        return (username, password) if username else (password,)

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        """What the next connection authenticates with: ``(password,)`` or ``(user, password)``."""
        if self.secret_arn is None:
            password = self.password or ""
            return (self.username, password) if self.username else (password,)
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > self.ttl:
                self._cached = (time.monotonic(), self._read())
            return self._cached[1]  # type: ignore[return-value]

    def refresh(self, refused: tuple[str, ...]) -> bool:
        """After the server refused ``refused``: True when there are other credentials to try."""
        if self.secret_arn is None:
            return False
        with self._lock:
            if self._cached is not None and self._cached[1] != refused:
                return True  # another connection already read the new value
            if time.monotonic() - self._refreshed_at < self.min_interval:
                return False
            self._refreshed_at = time.monotonic()
            self._cached = (self._refreshed_at, self._read())
            return self._cached[1] != refused
