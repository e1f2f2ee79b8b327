"""A Redis AUTH token rotated under a running process (Secrets Manager served by moto): the
app's clients, plain and cluster, read the secret again when the server refuses the old one."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from fixtures.kinesis import MOTO_REGION, dummy_session
from fixtures.redis_cluster import make_redis_cluster  # noqa: F401 - a fixture used by name
from redis.cluster import RedisCluster

from plantstream.aws import RedisAuth
from plantstream.errors import StreamUnavailableError
from plantstream.local import EmbeddedRedis, resolve_endpoints
from plantstream.local.redis_cluster import LocalRedisCluster
from plantstream.store.redis_client import open_redis
from plantstream.stream import PutEntry, RedisStream

pytestmark = pytest.mark.integration


@pytest.fixture
def secrets(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A Secrets Manager client, and the environment the app's own boto3 client reads."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", MOTO_REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_endpoint)
    return dummy_session().client(
        "secretsmanager", region_name=MOTO_REGION, endpoint_url=moto_endpoint
    )


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A server of this test's own: its password changes."""
    server = EmbeddedRedis(tmp_path / "redis", fsync="everysec")
    server.start()
    yield server
    server.stop()


def app_client(secret_arn: str, port: int) -> redis.Redis:
    """The Redis client a task builds from its settings (no password in the URL)."""
    from plantstream.settings import load_settings

    settings = load_settings(
        database_url="postgresql://app@db.internal:5432/plantstream",
        redis_url=f"redis://127.0.0.1:{port}/0",
        redis_auth_secret_arn=secret_arn,
    )
    endpoints = resolve_endpoints(settings, start=False)
    assert endpoints.redis_auth is not None
    return open_redis(
        endpoints.redis_url, cluster=settings.redis_cluster, credentials=endpoints.redis_auth
    )


def rotate(admin: redis.Redis, new: str) -> None:
    """The server takes only ``new`` now, and drops its clients (as a node replacement does)."""
    admin.config_set("requirepass", new)
    admin.client_kill_filter(_type="normal", skipme=True)


def read_back(stream: RedisStream) -> list[bytes]:
    return [
        r.data for s in stream.list_shards() for r in stream.read(s.shard_id, None, 100).records
    ]


def test_a_rotated_token_is_read_again_by_the_plain_client(
    secrets: Any, private_redis: EmbeddedRedis
) -> None:
    url = urlsplit(private_redis.url())
    first, port = str(url.password), int(url.port or 0)
    arn = secrets.create_secret(Name=f"redis-{uuid.uuid4().hex}", SecretString=first)["ARN"]
    client = app_client(arn, port)
    stream = RedisStream(client, "readings", retention_hours=0)
    stream.create(2)
    stream.put([PutEntry("plant-01/a", b"before")])

    second = "second-token-" + uuid.uuid4().hex
    secrets.put_secret_value(SecretId=arn, SecretString=second)
    with redis.Redis(host="127.0.0.1", port=port, password=first) as admin:
        rotate(admin, second)
    # the next command reconnects, is refused the cached token, reads the secret, goes on
    stream.put([PutEntry("plant-01/a", b"after")])
    assert read_back(stream) == [b"before", b"after"]

    # a token nobody published is not retried for ever: the caller is told
    with redis.Redis(host="127.0.0.1", port=port, password=second) as admin:
        rotate(admin, "never-published-" + uuid.uuid4().hex)
    with pytest.raises(StreamUnavailableError):
        stream.put([PutEntry("plant-01/a", b"refused")])
    client.close()


def test_a_rotated_token_is_read_again_by_the_cluster_client(
    secrets: Any,
    make_redis_cluster: Callable[..., LocalRedisCluster],  # noqa: F811
) -> None:
    cluster = make_redis_cluster(replicas=0)
    first = cluster.password
    arn = secrets.create_secret(Name=f"redis-{uuid.uuid4().hex}", SecretString=first)["ARN"]
    client = app_client(arn, cluster.nodes[0].port)
    assert isinstance(client, RedisCluster)
    stream = RedisStream(client, "readings", retention_hours=0)
    stream.create(6)  # shards on every node: each node's connections must re-authenticate
    stream.put([PutEntry(f"plant-01/{n}", b"before") for n in range(30)])

    second = "second-token-" + uuid.uuid4().hex
    secrets.put_secret_value(SecretId=arn, SecretString=second)
    for node in cluster.nodes:
        with redis.Redis(host="127.0.0.1", port=node.port, password=first) as admin:
            rotate(admin, second)
    stream.put([PutEntry(f"plant-01/{n}", b"after") for n in range(30)])
    stored = read_back(stream)
    assert sorted(stored) == sorted([b"before"] * 30 + [b"after"] * 30)
    client.close()


class CountingSecrets:
    """Secrets Manager's one call we make, counted (a fake of the AWS client, not of ours)."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.calls = 0

    def get_secret_value(self, *, SecretId: str) -> dict[str, Any]:
        self.calls += 1
        return {"SecretString": self.value}


def test_a_burst_of_refusals_reads_the_secret_once() -> None:
    """Many connections refused at once after a rotation cost one Secrets Manager call."""
    source = CountingSecrets("token-1")
    arn = "arn:aws:secretsmanager:eu-central-1:0:secret:r"
    auth = RedisAuth(secret_arn=arn, client=source, min_interval=60)
    assert auth.get_credentials() == ("token-1",)
    source.value = "token-2"
    assert auth.get_credentials() == ("token-1",)  # cached within its time to live
    assert all(auth.refresh(("token-1",)) for _ in range(20))
    assert auth.get_credentials() == ("token-2",)
    assert source.calls == 2
    # refused again with what was just read: a wrong token, not a rotation; do not hammer
    assert not auth.refresh(("token-2",))
    assert source.calls == 2
