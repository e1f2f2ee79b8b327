"""The plantstream policy pack, as run by ``pulumi preview --policy-pack infra/policies``.

The policies live in ``plantstream_infra.policies`` so the offline check and the unit tests run
exactly these functions on the mocked resource graph.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plantstream_infra.policies import PACK_NAME, pack_policies
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    name=PACK_NAME,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=pack_policies(),
    description="plantstream: AWS Security Hub / Checkov controls for the plantstream stack",
)
