"""The environment contract between the task definitions and the app's ``Settings``.

Every variable name comes from a ``plantstream.settings.Settings`` field, so a renamed or
removed setting fails the program (and its tests) instead of being passed and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping

from plantstream.settings import ENV_PREFIX, Settings

# ECS secret ``valueFrom`` for one version stage of a whole (non-JSON) secret:
# ``<secret ARN>:<json-key>:<version-stage>:<version-id>`` with the key and id left empty.
PREVIOUS_STAGE = "AWSPREVIOUS"


def env_name(field: str) -> str:
    """The environment variable ``Settings`` reads ``field`` from (KeyError if none)."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    return alias if isinstance(alias, str) else ENV_PREFIX + field.upper()


def settings_env_names() -> dict[str, str]:
    """Environment variable -> Settings field, for every field."""
    return {env_name(field): field for field in Settings.model_fields}


def environment(values: Mapping[str, object]) -> list[dict[str, object]]:
    """The container ``environment`` list for ``{field: value}``."""
    return [{"name": env_name(field), "value": value} for field, value in values.items()]


def secrets(value_from: Mapping[str, object]) -> list[dict[str, object]]:
    """The container ``secrets`` list for ``{field: valueFrom}``."""
    return [{"name": env_name(field), "valueFrom": ref} for field, ref in value_from.items()]
