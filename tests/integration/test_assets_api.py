"""/v1/assets: the tree, the paged machine list with its filters, and the model PUT by admins."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import yaml
from fixtures.api import Api

from plantstream.model import now_us
from plantstream.store import alerts as alert_store

OWN = "plant-01"
PRESS_SHOP = Path(__file__).parents[1] / "data" / "plant" / "press-shop.yaml"


def press_shop(facility: str = OWN) -> str:
    return PRESS_SHOP.read_text().replace("facility: plant-a", f"facility: {facility}")


def put_model(api: Api, key: str, text: str, *, facility: str = OWN, **params: str) -> object:
    return api.client.put(
        "/v1/assets/model",
        params={"facility": facility, **params},
        content=text.encode(),
        headers={**api.headers(key), "Content-Type": "application/yaml"},
    )


def test_an_admin_puts_a_model_and_a_second_put_changes_nothing(api: Api) -> None:
    admin = api.make_key("admin", None)
    first = put_model(api, admin, press_shop())
    assert first.status_code == 200, first.text  # type: ignore[attr-defined]
    body = first.json()  # type: ignore[attr-defined]
    assert body["changed"] is True
    assert {"action": "created", "kind": "machine", "key": "press-001"} in body["changes"]
    assert "strokes/min" in body["warnings"][0]["message"]
    again = put_model(api, admin, press_shop()).json()  # type: ignore[attr-defined]
    assert (again["changed"], again["summary"], again["changes"]) == (False, "no change", [])
    # the exported document goes back unchanged, as JSON
    read = api.make_key("read", OWN)
    document = api.client.get(
        "/v1/assets/model", params={"facility": OWN}, headers=api.headers(read)
    ).json()
    same = api.client.put(
        "/v1/assets/model", params={"facility": OWN}, json=document, headers=api.headers(admin)
    )
    assert same.json()["changed"] is False, same.text


def test_an_invalid_model_answers_400_with_the_line(api: Api) -> None:
    admin = api.make_key("admin", None)
    text = press_shop().replace("accepted_units: [N, lbf]", "accepted_units: [N, degC]")
    refused = put_model(api, admin, text)
    assert refused.status_code == 400  # type: ignore[attr-defined]
    error = refused.json()["error"]  # type: ignore[attr-defined]
    assert error["code"] == "invalid_model"
    assert (error["line"], error["column"]) == (10, 57)
    assert error["message"].startswith("model:10:57: machine_types[0].signals[0].accepted_units")
    assert "'degC' cannot be converted to 'kN'" in error["issues"][0]["message"]
    # a document for another facility than the one addressed is refused, not applied there
    other = put_model(api, admin, press_shop("plant-02"))
    assert other.json()["error"]["code"] == "invalid_model"  # type: ignore[attr-defined]
    assert "is for 'plant-02'" in other.json()["error"]["message"]  # type: ignore[attr-defined]
    broken = api.client.put(
        "/v1/assets/model",
        params={"facility": OWN},
        content=b'{"facility": ',
        headers={**api.headers(admin), "Content-Type": "application/json"},
    )
    assert broken.json()["error"]["code"] == "invalid_model"
    tree = api.client.get("/v1/assets", params={"facility": OWN}, headers=api.headers(admin))
    assert tree.json()["machine_total"] == 0  # nothing of the refused documents was applied


def test_only_an_admin_changes_a_model(api: Api) -> None:
    for role in ("read", "ingest"):
        refused = put_model(api, api.make_key(role, OWN), press_shop())
        assert refused.status_code == 403  # type: ignore[attr-defined]


def test_the_tree_has_areas_lines_machines_their_signals_and_unplaced_devices(
    api: Api, db: psycopg.Connection
) -> None:
    put_model(api, api.make_key("admin", None), press_shop())
    db.execute(
        "INSERT INTO sensors (facility, device, metric, unit) VALUES "
        "(%s, 'press-001', 'vibration_rms', 'mm/s'), (%s, 'old-flat-device', 'pressure', 'bar'),"
        "('plant-02', 'elsewhere', 'pressure', 'bar')",
        (OWN, OWN),
    )
    read = api.make_key("read", OWN)
    tree = api.client.get("/v1/assets", params={"facility": OWN}, headers=api.headers(read))
    assert tree.status_code == 200, tree.text
    body = tree.json()
    [area] = body["areas"]
    assert (area["id"], area["name"]) == ("stamping", "Stamping hall")
    [line] = area["lines"]
    assert [m["id"] for m in line["machines"]] == ["007", "press-001"]
    press = line["machines"][1]
    assert press["type"] == "press"
    # the type's signals, then what it sent besides
    assert press["signals"][:2] == ["ram_force", "oil_temp_in"]
    assert press["signals"][-1] == "vibration_rms"
    assert [m["id"] for m in area["machines"]] == ["crane-1"]
    assert [m["id"] for m in body["machines"]] == ["compressor-1"]
    assert [(m["id"], m["placed"]) for m in body["unplaced"]] == [("old-flat-device", False)]
    assert body["machine_total"] == 5
    assert {s["name"]: s["type"] for s in body["signals"]}["state"] == "state"
    short = api.client.get(
        "/v1/assets", params={"facility": OWN, "machines": "false"}, headers=api.headers(read)
    ).json()
    assert short["truncated"] is True
    assert short["areas"][0]["lines"][0]["machine_count"] == 2
    assert short["areas"][0]["machines"] is None
    other = api.client.get("/v1/assets", params={"facility": "plant-02"}, headers=api.headers(read))
    assert other.status_code == 403


def test_the_machine_list_pages_searches_and_filters_by_state(
    api: Api, db: psycopg.Connection
) -> None:
    machines = [{"id": f"m-{i:04d}", "name": f"Machine {i}"} for i in range(120)]
    lines = [{"id": "l1", "machines": [{"id": "lathe-x", "type": "lathe"}]}]
    document = {
        "facility": OWN,
        "machine_types": [{"name": "lathe", "signals": ["spindle_speed"]}],
        "areas": [{"id": "a1", "lines": lines}],
        "machines": machines,
    }
    admin = api.make_key("admin", None)
    applied = api.client.put(
        "/v1/assets/model",
        params={"facility": OWN},
        content=yaml.safe_dump(document).encode(),
        headers=api.headers(admin),
    )
    assert applied.status_code == 200, applied.text
    now = now_us()
    api.state.hot.update_latest(
        [
            (OWN, "m-0001", "temperature", now - 1_000_000, 20.0, 0),  # running
            (OWN, "m-0002", "temperature", now - 3_600_000_000, 20.0, 0),  # silent an hour
            (OWN, "m-0003", "temperature", now, 20.0, 0),
        ]
    )
    alert_store.open_alert(
        conn=db,
        facility=OWN,
        device="m-0003",
        metric="temperature",
        sensor_id=None,
        kind="limit",
        severity="warning",
        message="hot",
        at_us=now,
        details={},
    )
    read = api.make_key("read", OWN)

    def page(**params: object) -> dict[str, object]:
        answer = api.client.get(
            "/v1/assets/machines", params={"facility": OWN, **params}, headers=api.headers(read)
        )
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    db.execute(  # a device that sends but has no declared place: listed, unplaced
        "INSERT INTO sensors (facility, device, metric, unit) "
        "VALUES (%s, 'zz-flat', 'power', 'kW')",
        (OWN,),
    )
    first = page(page_size=50)
    assert first["total"] == 122
    [flat] = page(q="zz-")["machines"]  # type: ignore[misc]
    assert (flat["id"], flat["placed"], flat["state"]) == ("zz-flat", False, "silent")
    assert [m["id"] for m in first["machines"]][:2] == ["lathe-x", "m-0000"]  # type: ignore[index]
    last = page(page_size=50, page=3)
    assert len(last["machines"]) == 22  # type: ignore[arg-type]
    assert page(q="machine 11")["total"] == 11  # 11, 110-119: by name, case-insensitive
    assert page(q="100_")["total"] == 0  # _ is a character, not a wildcard
    assert [m["id"] for m in page(type="lathe")["machines"]] == ["lathe-x"]  # type: ignore[union-attr]
    assert page(area="a1")["total"] == 1
    assert page(line="l1")["total"] == 1
    states = {m["id"]: m["state"] for m in page(page_size=5)["machines"]}  # type: ignore[union-attr]
    assert states["m-0001"] == "running"
    assert states["m-0002"] == "silent"
    assert states["m-0003"] == "alerting"
    assert [m["id"] for m in page(state="running")["machines"]] == ["m-0001"]  # type: ignore[union-attr]
    assert [m["id"] for m in page(alerting="true")["machines"]] == ["m-0003"]  # type: ignore[union-attr]
    assert page(silent="false")["total"] == 2
    assert page(silent="true")["total"] == 120
    assert page(area="a1", q="zz")["total"] == 0  # a place asked for: unplaced ones are not
    too_big = api.client.get(
        "/v1/assets/machines",
        params={"facility": OWN, "page_size": 10_000},
        headers=api.headers(read),
    )
    assert too_big.status_code == 400
    other = api.client.get(
        "/v1/assets/machines", params={"facility": "plant-02"}, headers=api.headers(read)
    )
    assert other.status_code == 403
    assert json.loads(other.text)["error"]["code"] == "forbidden_facility"


def test_hostile_documents_answer_400_and_another_facility_stays_untouched(api: Api) -> None:
    """Tried against the app: keys of plant-02 neither read nor change plant-01's model
    (admin keys are global by design), and documents that used to crash the handler (500)
    answer 400 ``invalid_model``."""
    admin = api.make_key("admin", None)
    put_model(api, admin, press_shop())
    mine = api.headers(api.make_key("read", OWN))
    before = api.client.get("/v1/assets/model", params={"facility": OWN}, headers=mine).json()
    for role in ("read", "ingest"):
        key = api.make_key(role, "plant-02")
        assert put_model(api, key, "facility: plant-01\n").status_code == 403  # type: ignore[attr-defined]
        for path in ("/v1/assets/model", "/v1/assets/machines", "/v1/assets"):
            read = api.client.get(path, params={"facility": OWN}, headers=api.headers(key))
            assert read.status_code == 403, (role, path)
    theirs = admin
    hostile = [
        ("application/json", '{"facility": ' + "[" * 5_000 + "]" * 5_000 + "}"),
        ("application/yaml", "facility: plant-02\nsignals: [{name: s, unit: m/0}]\n"),
        (
            "application/yaml",
            "facility: plant-02\nsignals: [{name: s, unit: m, accepted_units: ['m^(2']}]\n",
        ),
        (
            "application/yaml",
            "facility: plant-02\nsignals: [{name: s, unit: m, accepted_units: ['m**9**9**9']}]\n",
        ),
    ]
    for content_type, text in hostile:
        answer = api.client.put(
            "/v1/assets/model",
            params={"facility": "plant-02"},
            content=text.encode(),
            headers={**api.headers(theirs), "Content-Type": content_type},
        )
        if "accepted_units" in text or content_type.endswith("json"):
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"]["code"] == "invalid_model"
        else:  # an unknown canonical unit is allowed (identity only), with a warning
            assert answer.status_code == 200, answer.text
            assert "pint does not know" in answer.json()["warnings"][0]["message"]
    after = api.client.get("/v1/assets/model", params={"facility": OWN}, headers=mine).json()
    assert after == before
