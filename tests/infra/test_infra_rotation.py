"""The AUTH-token rotation Lambda, driven step by step with in-memory Secrets Manager and
ElastiCache stand-ins (the Protocol seams the handler is written against)."""

from __future__ import annotations

from typing import Any

import pytest
from plantstream_infra.rotation.redis_auth_rotation import rotate, valid_token

pytestmark = pytest.mark.infra

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:plantstream/redis-auth-dev-abc"


class FakeSecrets:
    def __init__(self) -> None:
        self.values = {"v1": "Old-Token-0123456789abcdef"}
        self.stages = {"v1": ["AWSCURRENT"], "v2": ["AWSPENDING"]}

    def describe_secret(self, **_: Any) -> dict[str, Any]:
        return {"VersionIdsToStages": self.stages}

    def get_secret_value(self, *, VersionId: str, **_: Any) -> dict[str, Any]:
        if VersionId not in self.values:
            raise KeyError(VersionId)
        return {"SecretString": self.values[VersionId]}

    def put_secret_value(
        self, *, ClientRequestToken: str, SecretString: str, **_: Any
    ) -> dict[str, Any]:
        self.values[ClientRequestToken] = SecretString
        return {}

    def get_random_password(
        self, *, PasswordLength: int, ExcludeCharacters: str, **_: Any
    ) -> dict[str, Any]:
        assert "@" in ExcludeCharacters
        assert "/" in ExcludeCharacters
        return {"RandomPassword": "N3w-Token-" + "x" * (PasswordLength - 10)}

    def update_secret_version_stage(
        self, *, MoveToVersionId: str, RemoveFromVersionId: str, **_: Any
    ) -> dict[str, Any]:
        self.stages[MoveToVersionId] = ["AWSCURRENT"]
        self.stages[RemoveFromVersionId] = ["AWSPREVIOUS"]
        return {}


class FakeElastiCache:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def modify_replication_group(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {}


def test_a_full_rotation_adds_the_new_token_beside_the_old_one() -> None:
    secrets, cache = FakeSecrets(), FakeElastiCache()
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        rotate(
            {"SecretId": ARN, "ClientRequestToken": "v2", "Step": step},
            secrets=secrets,
            elasticache=cache,
            replication_group_id="redis-dev",
        )
    new = secrets.values["v2"]
    assert valid_token(new)
    assert cache.calls == [
        {
            "ReplicationGroupId": "redis-dev",
            "AuthToken": new,
            "AuthTokenUpdateStrategy": "ROTATE",
            "ApplyImmediately": True,
        }
    ]
    assert secrets.stages["v2"] == ["AWSCURRENT"]


def test_an_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match="not staged"):
        rotate(
            {"SecretId": ARN, "ClientRequestToken": "v9", "Step": "createSecret"},
            secrets=FakeSecrets(),
            elasticache=FakeElastiCache(),
            replication_group_id="redis-dev",
        )


@pytest.mark.parametrize(
    ("token", "ok"),
    [
        ("a" * 16, True),
        ("a" * 15, False),
        ("a" * 129, False),
        ("abc@defghijklmnop", False),
        ("abc/defghijklmnop", False),
        ('abc"defghijklmnop', False),
        ("Ab1!&#$^<>-xyzxyz", True),
    ],
)
def test_token_rules_match_elasticache(token: str, ok: bool) -> None:
    assert valid_token(token) is ok
