"""Settings come from PLANTSTREAM_* and fail at start-up with one clear line."""

from __future__ import annotations

import pytest

from plantstream.errors import ConfigError
from plantstream.settings import load_settings


def test_defaults_run_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PLANTSTREAM_DATABASE_URL", "PLANTSTREAM_REDIS_URL", "PLANTSTREAM_STREAM"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.stream == "redis"


def test_environment_is_read_and_secrets_are_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTSTREAM_DATABASE_URL", "postgresql://u:hunter2@db/x")
    monkeypatch.setenv("PLANTSTREAM_STREAM", "kinesis")
    settings = load_settings()
    assert settings.stream == "kinesis"
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value().endswith("@db/x")


def test_explicit_argument_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTSTREAM_STREAM_SHARDS", "8")
    assert load_settings(stream_shards=2).stream_shards == 2


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("PLANTSTREAM_STREAM", "kafka", "PLANTSTREAM_STREAM"),
        ("PLANTSTREAM_STREAM_SHARDS", "0", "PLANTSTREAM_STREAM_SHARDS"),
        ("PLANTSTREAM_DATABASE_URL", "mysql://x", "PLANTSTREAM_DATABASE_URL"),
    ],
)
def test_invalid_values_fail_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)
    assert value not in str(caught.value) or name != "PLANTSTREAM_DATABASE_URL"


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.stream_shards = 3  # type: ignore[misc]
