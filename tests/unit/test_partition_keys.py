"""The partition-key rule is written once (``plantstream.ingest.partitioning``) and every
path that puts readings on the stream follows it, the API Gateway template in infra included."""

from __future__ import annotations

import ast
import base64
import json
import re
from pathlib import Path

import orjson

from plantstream.ingest import CODECS, gateway_partition_key, pack, partition_key
from plantstream.model import TimeWindow, now_us, parse_batch
from plantstream.stream.records import decode_record

INFRA = Path(__file__).parents[2] / "infra" / "plantstream_infra"
BODY = {
    "facility": "plant-01",
    "readings": [
        {"device": "press-1", "metric": "temperature", "ts": "2026-01-01T00:00:00Z", "value": 1.0},
        {"device": "press-2", "metric": "temperature", "ts": "2026-01-01T00:00:00Z", "value": 2.0},
        {"device": "press-1", "metric": "pressure", "ts": "2026-01-01T00:00:01Z", "value": 3.0},
    ],
}


def put_record_template() -> str:
    """The API Gateway integration request template, read from the infra source (whichever
    module of it holds ``PUT_RECORD_TEMPLATE``; no Pulumi needed)."""
    found = []
    for path in sorted(INFRA.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "PUT_RECORD_TEMPLATE" for t in node.targets
            ):
                found.append(ast.literal_eval(node.value))
    assert len(found) == 1, f"expected one PUT_RECORD_TEMPLATE under {INFRA}, found {len(found)}"
    assert isinstance(found[0], str)
    return found[0]


def render(template: str, body: bytes) -> dict[str, object]:
    """API Gateway's rendering of the few VTL forms the template may use, for ``body``."""
    fields = json.loads(body)
    text = template.replace("%s", "readings")
    text = text.replace("$util.base64Encode($input.body)", base64.b64encode(body).decode())
    text = re.sub(r"\$input\.path\('\$\.(\w+)'\)", lambda m: str(fields[m.group(1)]), text)
    text = re.sub(
        r"\$util\.escapeJavaScript\(([^()$]*)\)", lambda m: json.dumps(m.group(1))[1:-1], text
    )
    assert not re.search(r"[$#]", text), (
        f"the template uses VTL this test does not render; extend it with the rule:\n{text}"
    )
    rendered: dict[str, object] = json.loads(text)
    return rendered


def test_http_ingest_keys_each_record_by_facility_and_device() -> None:
    batch = parse_batch(
        orjson.dumps(BODY), received_us=now_us(), window=TimeWindow(10**15, 10**15), max_readings=10
    )
    entries = pack(batch.facility, now_us(), batch.readings)
    keys = {decode_record(e.data).device: e.partition_key for e in entries}
    assert keys == {
        "press-1": partition_key("plant-01", "press-1"),
        "press-2": partition_key("plant-01", "press-2"),
    }
    assert partition_key("plant-01", "press-1") == "plant-01/press-1"


def test_the_api_gateway_template_follows_the_rule_for_its_path() -> None:
    body = orjson.dumps(BODY)
    record = render(put_record_template(), body)
    # one PutRecord per batch: the whole body is the record, keyed as the rule says
    assert record["PartitionKey"] == gateway_partition_key("plant-01")
    data = base64.b64decode(str(record["Data"]))
    assert data == body
    # and the processor decodes that record with the same codec ingest uses for the format
    codec = CODECS.get("apigw")
    batch = codec.decode(
        data, received_us=now_us(), window=TimeWindow(10**15, 10**15), max_readings=10
    )
    assert (batch.facility, len(batch.readings), batch.rejected) == ("plant-01", 3, [])
