"""The command line against configured servers: migrate, keys, simulate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import psycopg
import pytest
import uvicorn
from fixtures.api import Api
from fixtures.kinesis import MOTO_REGION, dummy_session

from plantstream.local.ports import free_port


def cli(
    *args: str, database_url: str, redis_url: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PLANTSTREAM_DATABASE_URL": database_url,
        "PLANTSTREAM_REDIS_URL": redis_url,
        "PLANTSTREAM_SERVER_SECRET": "test-server-secret",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "plantstream", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_migrate_and_keys_lifecycle(
    database_url: str, redis_url: str, db: psycopg.Connection
) -> None:
    migrated = cli("db", "migrate", database_url=database_url, redis_url=redis_url)
    assert migrated.returncode == 0, migrated.stderr
    assert "schema at revision" in migrated.stdout

    created = cli(
        "keys",
        "create",
        "--facility",
        "plant-07",
        "--role",
        "read",
        database_url=database_url,
        redis_url=redis_url,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.split()[0]
    assert key.startswith("ps_")
    key_id = key.split("_")[1]
    stored = db.execute("SELECT role, facility, secret_hash FROM api_keys").fetchall()
    assert [(r, f) for r, f, _ in stored] == [("read", "plant-07")]
    assert key.split("_", 2)[2].encode() not in bytes(stored[0][2])  # only a hash is kept

    listed = cli("keys", "list", database_url=database_url, redis_url=redis_url)
    assert key_id in listed.stdout
    assert key.split("_", 2)[2] not in listed.stdout

    bad = cli("keys", "create", "--role", "read", database_url=database_url, redis_url=redis_url)
    assert bad.returncode == 2
    assert "needs a facility" in bad.stderr

    revoked = cli("keys", "revoke", key_id, database_url=database_url, redis_url=redis_url)
    assert revoked.returncode == 0
    again = cli("keys", "revoke", key_id, database_url=database_url, redis_url=redis_url)
    assert again.returncode == 1


@pytest.fixture
def live_api(api: Api) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(api.client.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_simulate_posts_to_any_endpoint(
    api: Api, live_api: str, database_url: str, redis_url: str
) -> None:
    key = api.make_key("ingest", "plant-01")
    ran = cli(
        "simulate",
        "--url",
        live_api,
        "--key",
        key,
        "--rate",
        "400",
        "--duration",
        "3",
        "--facilities",
        "1",
        "--machines",
        "4",
        database_url=database_url,
        redis_url=redis_url,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    stats = json.loads(ran.stdout)
    assert stats["accepted"] > 500
    assert stats["sent"] == stats["accepted"] + stats["rejected"]
    stream_total = sum(
        len(api.stream.read(s.shard_id, None, 100_000).records) for s in api.stream.list_shards()
    )
    assert stream_total > 0
    wrong = cli(
        "simulate",
        "--url",
        live_api,
        "--key",
        key,
        "--duration",
        "1",
        "--facilities",
        "2",
        database_url=database_url,
        redis_url=redis_url,
    )
    assert wrong.returncode == 1  # plant-02 is not this key's facility: 403, reported
    assert "batches were not accepted (http_403: " in wrong.stderr
    assert json.loads(wrong.stdout)["errors"] == {
        "http_403": json.loads(wrong.stdout)["errors"]["http_403"]
    }


def test_keys_create_into_secrets_manager_never_prints_the_key(
    database_url: str, redis_url: str, db: psycopg.Connection, moto_endpoint: str
) -> None:
    """On ECS a one-off task's output is logged: ``--secret`` keeps the key out of it."""
    aws = {
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # pragma: allowlist secret
        "AWS_DEFAULT_REGION": MOTO_REGION,
    }
    name = "plantstream/api-keys/plant-07-ingest"

    def create(secret: str, **env: str) -> subprocess.CompletedProcess[str]:
        return cli(
            "keys",
            "create",
            "--facility",
            "plant-07",
            "--role",
            "ingest",
            "--secret",
            secret,
            database_url=database_url,
            redis_url=redis_url,
            env={**aws, **env},
        )

    first, second = create(name), create(name)  # the second is a new version of the secret
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    secrets = dummy_session().client(
        "secretsmanager", region_name=MOTO_REGION, endpoint_url=moto_endpoint
    )
    key = secrets.get_secret_value(SecretId=name)["SecretString"]
    assert key.startswith("ps_")
    assert key not in first.stdout + first.stderr + second.stdout + second.stderr
    assert key.split("_", 2)[2] not in first.stdout + second.stdout
    described = secrets.describe_secret(SecretId=name)
    assert described["ARN"] in second.stdout
    assert {"Key": "plantstream:purpose", "Value": "api-key"} in described["Tags"]
    key_id = key.split("_")[1]
    assert key_id in second.stdout
    live = db.execute("SELECT key_id FROM api_keys WHERE revoked_at IS NULL").fetchall()
    assert {row[0] for row in live} == {key_id, first.stdout.split()[2].rstrip(":")}

    outside = create("team/keys/x")
    assert outside.returncode == 2
    assert "plantstream/api-keys/" in outside.stderr

    unreachable = create(
        "plantstream/api-keys/nowhere",
        AWS_ENDPOINT_URL_SECRETS_MANAGER=f"http://127.0.0.1:{free_port()}",
        AWS_MAX_ATTEMPTS="1",
    )
    assert unreachable.returncode == 2
    assert "was revoked" in unreachable.stderr
    still_live = db.execute("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL").fetchone()
    assert still_live == (2,)  # the key nobody received cannot be used
