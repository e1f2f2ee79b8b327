"""The plantstream policy pack: one policy per Security Hub control / Checkov id.

``pack_policies()`` feeds the real pack in ``infra/policies``; ``evaluate()`` runs the same
policies on a mocked resource graph for the offline check and the tests.
"""

from .base import DEVIATION_TAG_PREFIX, Control
from .pack import (
    CONTROLS,
    CONTROLS_BY_ID,
    PACK_NAME,
    GraphEntry,
    PolicyResult,
    evaluate,
    pack_policies,
)

__all__ = [
    "CONTROLS",
    "CONTROLS_BY_ID",
    "DEVIATION_TAG_PREFIX",
    "PACK_NAME",
    "Control",
    "GraphEntry",
    "PolicyResult",
    "evaluate",
    "pack_policies",
]
