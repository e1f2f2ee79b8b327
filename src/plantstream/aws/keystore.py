"""A new API key handed to Secrets Manager, so it never passes through a terminal or a log.

On ECS the first keys come from a one-off task whose output lands in CloudWatch Logs; with
``keys create --secret NAME`` the key goes straight into a secret (on the stack's secrets KMS
key) and the task prints only where it is.
"""

from __future__ import annotations

import re
from typing import Any

from plantstream.errors import InvalidInputError

# pragma: allowlist nextline secret
KEY_SECRET_PREFIX = "plantstream/api-keys/"  # noqa: S105 - a name prefix, not a secret
# Secrets Manager's own alphabet for names, under our prefix (the task role may write only there)
_NAME = re.compile(re.escape(KEY_SECRET_PREFIX) + r"[A-Za-z0-9/_+=.@-]{1,400}")
PURPOSE_TAG = {"Key": "plantstream:purpose", "Value": "api-key"}


def check_secret_name(name: str) -> None:
    if _NAME.fullmatch(name) is None:
        raise InvalidInputError(
            "invalid_secret_name",
            f"the secret name must start with {KEY_SECRET_PREFIX} and use A-Z a-z 0-9 /_+=.@-",
        )


def store_key(client: Any, name: str, key: str, *, kms_key_id: str | None, description: str) -> str:
    """Store ``key`` as secret ``name`` (a new version if it exists); return the secret's ARN."""
    check_secret_name(name)
    create: dict[str, Any] = {
        "Name": name,
        "SecretString": key,
        "Description": description,
        "Tags": [PURPOSE_TAG],
    }
    if kms_key_id:
        create["KmsKeyId"] = kms_key_id
    try:
        return str(client.create_secret(**create)["ARN"])
    except client.exceptions.ResourceExistsException:
        return str(client.put_secret_value(SecretId=name, SecretString=key)["ARN"])
