"""Credentials from Secrets Manager (moto over real HTTP): the URL follows a rotation."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from fixtures.kinesis import MOTO_REGION, dummy_session

from plantstream.aws import CredentialSource, with_password
from plantstream.errors import ConfigError
from plantstream.local import resolve_endpoints
from plantstream.settings import load_settings


@pytest.fixture
def secrets(moto_endpoint: str) -> Any:
    return dummy_session().client(
        "secretsmanager", region_name=MOTO_REGION, endpoint_url=moto_endpoint
    )


def test_urls_get_credentials_quoted() -> None:
    url = with_password(
        "postgresql://dbadmin@db.example:5432/plantstream?sslmode=require", "p@ss:w/rd"
    )
    assert url == "postgresql://dbadmin:p%40ss%3Aw%2Frd@db.example:5432/plantstream?sslmode=require"
    assert with_password("rediss://cache:6379/0", "tok", "") == "rediss://:tok@cache:6379/0"


def test_database_url_follows_a_rotated_secret(
    secrets: Any, postgres_admin_url: str, database_url: str
) -> None:
    """A role whose password rotates in Secrets Manager: new connections use the new one."""
    base = database_url.split("@", 1)[1]
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS rotating")
        conn.execute("CREATE ROLE rotating LOGIN PASSWORD 'first-password'")
    arn = secrets.create_secret(
        Name="plantstream/db",
        SecretString=json.dumps({"username": "rotating", "password": "first-password"}),
    )["ARN"]
    source = CredentialSource(
        f"postgresql://placeholder@{base}", secret_arn=arn, client=secrets, ttl=3600
    )
    try:
        with source.connect() as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("rotating",)
        # rotation: the secret and the role change together
        secrets.put_secret_value(
            SecretId=arn,
            SecretString=json.dumps({"username": "rotating", "password": "second-password"}),
        )
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute("ALTER ROLE rotating PASSWORD 'second-password'")
        # where the server checks passwords (the embedded one does; CI's machine server trusts
        # loopback), the cached URL now fails and connect() reads the secret again
        with source.connect() as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("rotating",)
        try:
            psycopg.connect(f"postgresql://rotating:wrong@{base}").close()
            checks_passwords = False
        except psycopg.OperationalError:
            checks_passwords = True
        assert ("second-password" in source()) is checks_passwords
        # and a URL older than its time to live is always read again
        fresh = CredentialSource(
            f"postgresql://placeholder@{base}", secret_arn=arn, client=secrets, ttl=0
        )
        assert "second-password" in fresh()
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute("DROP OWNED BY rotating")
            conn.execute("DROP ROLE rotating")


def test_settings_with_secret_arns_build_the_endpoints(
    secrets: Any, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str
) -> None:
    db_arn = secrets.create_secret(
        Name="plantstream/db2", SecretString=json.dumps({"username": "u", "password": "pw1"})
    )["ARN"]
    redis_arn = secrets.create_secret(Name="plantstream/redis", SecretString="token-1")["ARN"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", MOTO_REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_endpoint)
    settings = load_settings(
        database_url="postgresql://dbadmin@db.internal:5432/plantstream",
        redis_url="rediss://cache.internal:6379/0",
        db_secret_arn=db_arn,
        redis_auth_secret_arn=redis_arn,
    )
    endpoints = resolve_endpoints(settings, start=False)
    assert endpoints.database_url == "postgresql://u:pw1@db.internal:5432/plantstream"
    assert endpoints.redis_url == "rediss://:token-1@cache.internal:6379/0"
    assert endpoints.embedded is None
    missing = load_settings(
        database_url="postgresql://x@db/y",
        db_secret_arn=db_arn + "-nope",
        redis_url="redis://r:6379/0",
    )
    with pytest.raises(ConfigError) as caught:
        resolve_endpoints(missing, start=False)
    assert "pw1" not in str(caught.value)
