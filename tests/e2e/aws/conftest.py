"""Fixtures for the deployed-stack tests: the stack's outputs and an AWS session.

Skipped, with the reason, unless AWS credentials are configured explicitly (environment or a
profile) and ``PLANTSTREAM_STACK_OUTPUTS`` points at ``pulumi stack output --json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

_CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)


def _credentials_configured() -> bool:
    # Only explicit configuration counts: never probe the instance metadata service.
    if any(os.environ.get(v) for v in _CREDENTIAL_VARS):
        return True
    shared = Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"))
    return shared.expanduser().is_file()


@pytest.fixture(scope="session")
def outputs() -> dict[str, Any]:
    if not _credentials_configured():
        pytest.skip("no AWS credentials set (AWS_ACCESS_KEY_ID, AWS_PROFILE or ~/.aws/credentials)")
    path = os.environ.get("PLANTSTREAM_STACK_OUTPUTS")
    if not path:
        pytest.skip(
            "PLANTSTREAM_STACK_OUTPUTS is not set: in infra/ run "
            "`pulumi stack output --json > /tmp/outputs.json` and point it there"
        )
    return dict(json.loads(Path(path).read_text()))


@pytest.fixture(scope="session")
def session(outputs: dict[str, Any]) -> Any:
    boto3 = pytest.importorskip("boto3")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    return boto3.Session(region_name=outputs["region"])
