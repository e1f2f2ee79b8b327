"""Key policies do what the README says: the account administers each key, but encrypting or
decrypting with it works only through its AWS services (or the logs service principal).

Every KMS operation botocore knows is checked against the policy, so a wildcard that hands
out use of a key (``kms:*``, ``kms:Create*`` with CreateGrant) fails here.
"""

from __future__ import annotations

import fnmatch
import glob
import gzip
import json
from pathlib import Path
from typing import Any

import botocore
import pytest
from infra_helpers import PRESETS, Report

pytestmark = pytest.mark.infra

_MODEL = sorted(glob.glob(str(Path(botocore.__file__).parent / "data/kms/*/service-2.json.gz")))
KMS_OPERATIONS = sorted(json.loads(gzip.decompress(Path(_MODEL[-1]).read_bytes()))["operations"])
# Operations that use a key's material, or let someone else use it (a grant).
USE = {
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateMac",
    "ReEncrypt",
    "ReEncryptFrom",
    "ReEncryptTo",
    "Sign",
    "Verify",
    "VerifyMac",
    "DeriveSharedSecret",
    "CreateGrant",
}


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _unconditioned(policy: dict[str, Any], principal: str) -> set[str]:
    """KMS operations (and ReEncryptFrom/To) ``principal`` gets without any condition."""
    granted: set[str] = set()
    for stmt in policy["Statement"]:
        if stmt["Effect"] != "Allow" or stmt.get("Condition"):
            continue
        if principal not in _listed(stmt["Principal"].get("AWS", [])):
            continue
        for pattern in _listed(stmt["Action"]):
            granted |= {
                op
                for op in [*KMS_OPERATIONS, "ReEncryptFrom", "ReEncryptTo"]
                if fnmatch.fnmatchcase(f"kms:{op}".lower(), pattern.lower())
            }
    return granted


def test_the_operation_list_is_botocore_s() -> None:
    assert {"Decrypt", "PutKeyPolicy", "CreateGrant", "ScheduleKeyDeletion"} <= set(KMS_OPERATIONS)


def test_the_check_refuses_the_old_root_kms_star() -> None:
    root = "arn:aws:iam::123456789012:root"
    old = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:*"}]}
    assert _unconditioned(old, root) & USE
    console = {
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:Create*"}]
    }
    assert "CreateGrant" in _unconditioned(console, root)


@pytest.mark.parametrize("preset", PRESETS)
def test_the_account_administers_keys_but_uses_them_only_through_services(
    reports: dict[str, Report], preset: str
) -> None:
    report = reports[preset]
    account = report.outputs["kinesis_stream_arn"].split(":")[4]
    root = f"arn:aws:iam::{account}:root"
    for key in report.of_type("aws:kms/key:Key"):
        policy = json.loads(key["inputs"]["policy"])
        admin = _unconditioned(policy, root)
        assert admin & USE == set(), key["name"]
        # deployable and manageable: the account can still change the policy and delete it
        assert {"PutKeyPolicy", "GetKeyPolicy", "DescribeKey", "ScheduleKeyDeletion"} <= admin
        for stmt in policy["Statement"]:
            uses = {
                op
                for op in USE
                for pattern in _listed(stmt["Action"])
                if fnmatch.fnmatchcase(f"kms:{op}".lower(), pattern.lower())
            }
            if not uses or "Service" in stmt["Principal"]:
                continue
            conditions = stmt["Condition"]["StringEquals"]
            assert conditions["kms:CallerAccount"] == account
            assert all(v.endswith(".amazonaws.com") for v in _listed(conditions["kms:ViaService"]))
