"""API keys: created once and shown once, stored only as an HMAC of their secret part.

A key reads ``ps_<key id>_<secret>``. The id finds the row; the secret is checked in
constant time against ``HMAC-SHA256(server secret, secret)``, so a stolen database alone
does not yield working keys.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import psycopg

from plantstream.errors import AuthError, InvalidInputError
from plantstream.model import check_id

PREFIX = "ps"


class Role(StrEnum):
    INGEST = "ingest"
    READ = "read"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: a key's id, role and facility (None for admin: every facility)."""

    key_id: str
    role: Role
    facility: str | None
    expires_at: datetime | None = None

    def may_access(self, facility: str) -> bool:
        return self.role is Role.ADMIN or self.facility == facility


def _digest(server_secret: bytes, secret: str) -> bytes:
    return hmac.new(server_secret, secret.encode(), hashlib.sha256).digest()


def create_key(
    conn: psycopg.Connection,
    *,
    server_secret: bytes,
    role: Role,
    facility: str | None,
    label: str = "",
    expires_at: datetime | None = None,
) -> tuple[str, Principal]:
    """Create a key; return its full text (never stored) and its principal."""
    if role is Role.ADMIN:
        if facility is not None:
            raise InvalidInputError("invalid_key_scope", "admin keys are not tied to a facility")
    elif facility is None:
        raise InvalidInputError("invalid_key_scope", f"a {role} key needs a facility")
    else:
        check_id(facility, "facility")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO api_keys (key_id, facility, role, secret_hash, label, expires_at) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (key_id, facility, str(role), _digest(server_secret, secret), label[:200], expires_at),
    )
    return f"{PREFIX}_{key_id}_{secret}", Principal(key_id, role, facility, expires_at)


# what create_key makes: 16 hex digits of id, a urlsafe base64 secret; nothing else reaches SQL
_KEY_SHAPE = re.compile(PREFIX + r"_(?P<id>[0-9a-f]{16})_(?P<secret>[A-Za-z0-9_-]{1,128})")


def parse_key(key: str) -> tuple[str, str]:
    """Split a key into (id, secret); raise ``AuthError`` if it is not shaped like one."""
    match = _KEY_SHAPE.fullmatch(key)
    if match is None:
        raise AuthError("malformed_key", "the API key is malformed")
    return match["id"], match["secret"]


def verify_key(
    conn: psycopg.Connection,
    *,
    server_secret: bytes,
    key: str,
    previous_secret: bytes | None = None,
) -> Principal:
    """The principal of a valid key; ``AuthError`` for unknown, wrong, revoked or expired.

    While the server secret rotates, ``previous_secret`` still verifies keys hashed with it,
    and each such key is hashed again with ``server_secret`` as it is used.
    """
    key_id, secret = parse_key(key)
    row = conn.execute(
        "SELECT role, facility, secret_hash, revoked_at IS NOT NULL, "
        "expires_at, expires_at IS NOT NULL AND expires_at <= now() "
        "FROM api_keys WHERE key_id = %s",
        (key_id,),
    ).fetchone()
    expected = bytes(row[2]) if row else _digest(server_secret, "")  # same work either way
    current = _digest(server_secret, secret)
    if (
        row is not None
        and previous_secret is not None
        and not hmac.compare_digest(current, expected)
        and hmac.compare_digest(_digest(previous_secret, secret), expected)
    ):
        conn.execute(
            "UPDATE api_keys SET secret_hash = %s WHERE key_id = %s AND secret_hash = %s",
            (current, key_id, expected),
        )
        expected = current
    if not hmac.compare_digest(current, expected) or row is None:
        raise AuthError("invalid_key", "the API key is not valid")
    if row[3]:
        raise AuthError("revoked_key", "the API key was revoked")
    if row[5]:
        raise AuthError("expired_key", "the API key has expired")
    return Principal(key_id, Role(row[0]), row[1], row[4])


def revoke_key(conn: psycopg.Connection, key_id: str) -> bool:
    row = conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL "
        "RETURNING 1",
        (key_id,),
    ).fetchone()
    return row is not None


def list_keys(conn: psycopg.Connection) -> list[dict[str, object]]:
    """Every key's metadata; the hashes never leave the database."""
    rows = conn.execute(
        "SELECT key_id, role, facility, label, created_at, expires_at, revoked_at "
        "FROM api_keys ORDER BY created_at"
    ).fetchall()
    names = ("key_id", "role", "facility", "label", "created_at", "expires_at", "revoked_at")
    return [dict(zip(names, row, strict=True)) for row in rows]
