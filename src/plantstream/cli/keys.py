"""``plantstream keys create|list|revoke``: API keys, shown once, stored as hashes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from plantstream.aws.keystore import KEY_SECRET_PREFIX, check_secret_name, store_key
from plantstream.errors import ConfigError
from plantstream.runtime import Runtime
from plantstream.settings import load_settings
from plantstream.store.keys import Role, create_key, list_keys, revoke_key

app = typer.Typer(help="API keys: one facility and one role each (admin: all facilities).")
console = Console()


def _runtime() -> Runtime:
    runtime = Runtime(load_settings())
    runtime.migrate()
    return runtime


@app.command()
def create(
    role: Annotated[Role, typer.Option("--role", help="ingest, read or admin")],
    facility: Annotated[
        str | None, typer.Option("--facility", help="the facility (not for admin)")
    ] = None,
    label: Annotated[str, typer.Option("--label", help="a note: who or what uses it")] = "",
    expires_days: Annotated[
        int | None, typer.Option("--expires-days", min=1, help="expire after N days")
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(
            "--secret",
            help=f"store the key in this Secrets Manager secret ({KEY_SECRET_PREFIX}...) "
            "and print only where it is: for one-off tasks whose output is logged",
        ),
    ] = None,
) -> None:
    """Create a key and print it once (or store it in Secrets Manager): it is not shown again."""
    if secret is not None:
        check_secret_name(secret)
    expires = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
    runtime = _runtime()
    with runtime.connect() as conn:
        key, who = create_key(
            conn,
            server_secret=runtime.server_secret,
            role=role,
            facility=facility,
            label=label,
            expires_at=expires,
        )
        scope = who.facility or "all facilities"
        if secret is not None:
            kms_key_id = runtime.settings.api_key_kms_key_id
            arn = _store_or_revoke(conn, secret, key, who.key_id, kms_key_id)
            console.print(
                f"key id {who.key_id}: {role} for {scope}, stored in {arn}\n"
                f"read it with: aws secretsmanager get-secret-value --secret-id {secret}",
                soft_wrap=True,
                highlight=False,
                markup=False,
                emoji=False,  # an ARN's ":secret:" is not an emoji
            )
            return
    console.print(f"[bold]{key}[/bold]", soft_wrap=True, highlight=False)
    console.print(
        f"[dim]key id {who.key_id}: {role} for {scope}; store it now, it is not shown again[/dim]",
        highlight=False,
    )


def _store_or_revoke(
    conn: psycopg.Connection, name: str, key: str, key_id: str, kms_key_id: str | None
) -> str:
    """The ARN of the secret now holding ``key``; if it cannot be stored, the key is revoked
    (nobody could ever use it, and a live key nobody holds is only a risk)."""
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        revoke_key(conn, key_id)
        raise ConfigError("--secret needs boto3: pip install 'plantstream[aws]'") from None
    try:
        return store_key(
            boto3.client("secretsmanager"),
            name,
            key,
            kms_key_id=kms_key_id,
            description=f"plantstream API key {key_id}",
        )
    except (BotoCoreError, ClientError) as exc:
        revoke_key(conn, key_id)
        raise ConfigError(
            f"could not store the key in Secrets Manager ({type(exc).__name__}: {exc}); "
            f"key {key_id} was revoked, nothing usable was created"
        ) from None


@app.command("list")
def list_() -> None:
    """List keys (ids, roles, facilities, dates); secrets and hashes are never shown."""
    with _runtime().connect() as conn:
        rows = list_keys(conn)
    table = Table("key id", "role", "facility", "label", "created", "expires", "revoked")
    table.columns[0].no_wrap = True
    columns = ("key_id", "role", "facility", "label", "created_at", "expires_at", "revoked_at")
    for row in rows:
        table.add_row(*(_cell(row[c]) for c in columns))
    console.print(table)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    return str(value)


@app.command()
def revoke(key_id: Annotated[str, typer.Argument(help="the key id (16 hex characters)")]) -> None:
    """Revoke a key; requests with it fail from then on."""
    with _runtime().connect() as conn:
        done = revoke_key(conn, key_id)
    if not done:
        console.print(f"no active key {key_id}")
        raise typer.Exit(1)
    console.print(f"revoked {key_id}")
