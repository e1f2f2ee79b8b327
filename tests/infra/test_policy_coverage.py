"""Every control of the pack is shown refusing something: the failure tables must name each
control the pack serves, so a control added without a failing case fails this suite."""

from __future__ import annotations

import pytest
import test_policy_fail_compute
import test_policy_fail_data
import test_policy_fail_iot
import test_policy_fail_network
from plantstream_infra.policies import (
    CONTROLS,
    CONTROLS_BY_ID,
    compute,
    data,
    network,
    pack_policies,
)
from plantstream_infra.policies import iot as iot_controls

pytestmark = pytest.mark.infra

TABLES = {
    data: test_policy_fail_data.FAILS,
    compute: test_policy_fail_compute.FAILS,
    network: test_policy_fail_network.FAILS,
    iot_controls: test_policy_fail_iot.FAILS,
}


def test_every_control_of_the_pack_has_a_failing_case() -> None:
    tabled = {control for table in TABLES.values() for control in table}
    missing = sorted(set(CONTROLS_BY_ID) - tabled)
    assert missing == [], f"controls never shown failing: {missing}"
    unknown = sorted(tabled - set(CONTROLS_BY_ID))
    assert unknown == [], f"failure cases for controls the pack does not have: {unknown}"


def test_each_control_is_tabled_beside_its_module_with_at_least_one_case() -> None:
    for module, table in TABLES.items():
        assert set(table) == {c.id for c in module.registry.controls}, module.__name__
        assert all(table.values()), [c for c, variants in table.items() if not variants]


def test_the_pack_serves_exactly_the_tabled_controls_plus_the_deviation_reports() -> None:
    served = {p.name for p in pack_policies()}
    assert served - {c.id for c in CONTROLS} == {
        "plantstream-declared-deviations",
        "plantstream-declared-deviations-stack",
    }
