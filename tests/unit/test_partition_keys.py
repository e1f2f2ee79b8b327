"""The partition-key rule is written once (``plantstream.ingest.partitioning``) and every
path that puts readings on the stream follows it, the API Gateway template in infra included."""

from __future__ import annotations

import ast
import base64
import json
import re
from pathlib import Path

import orjson
import pytest

from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.ingest import CODECS, gateway_partition_key, pack, partition_key
from plantstream.ingest.codecs import gateway_envelope, open_gateway_envelope
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


def escape_javascript(text: str) -> str:
    """``$util.escapeJavaScript`` (Apache Commons ``escapeJavaScript``) for printable text."""
    out = json.dumps(text, ensure_ascii=True)[1:-1]
    return out.replace("'", "\\'").replace("/", "\\/")


def render(template: str, body: bytes, *, facility: str = "plant-01") -> dict[str, object]:
    """API Gateway's rendering of the few VTL forms the template may use, for ``body`` posted
    to ``/ingest/<facility>`` (the path parameter; no query string or header of that name)."""
    params = {"facility": facility}
    variables: dict[str, str] = {}

    def interpolate(text: str) -> str:  # a double-quoted Velocity string: references only
        def ref(m: re.Match[str]) -> str:
            if m.group(0) == "$input.body":
                return body.decode()
            return variables[m.group(1) or m.group(2)]

        return re.sub(r"\$input\.body|\$\{(\w+)\}|\$(\w+)", ref, text)

    def value(expr: str) -> str:
        expr = expr.strip()
        if m := re.fullmatch(r"'([^']*)'", expr):  # single-quoted: taken as it is
            return m.group(1)
        if m := re.fullmatch(r'"(.*)"', expr, re.S):
            return interpolate(m.group(1))
        if expr == "$input.body":
            return body.decode()
        if m := re.fullmatch(r"\$input\.params\(\)\.path\.get\('(\w+)'\)", expr):
            return params[m.group(1)]
        if m := re.fullmatch(r"\$util\.escapeJavaScript\((.*)\)", expr, re.S):
            return escape_javascript(value(m.group(1)))
        if m := re.fullmatch(r"\$util\.base64Encode\((.*)\)", expr, re.S):
            return base64.b64encode(value(m.group(1)).encode()).decode()
        if m := re.fullmatch(r"\$input\.path\('\$\.(\w+)'\)", expr):
            return str(json.loads(body)[m.group(1)])
        if m := re.fullmatch(r"\$\{?(\w+)\}?", expr):
            return variables[m.group(1)]
        raise AssertionError(f"the template uses VTL this test does not render: {expr}")

    lines = []
    for source in template.replace("%s", "readings").splitlines():
        if m := re.fullmatch(r"\s*#set\(\s*\$(\w+)\s*=\s*(.*)\)\s*", source):
            variables[m.group(1)] = value(m.group(2))
            continue
        calls = r"\$util\.\w+\((?:[^()]|\([^()]*\))*\)"  # one level of nested calls
        line = re.sub(calls, lambda m: value(m.group(0)), source)
        lines.append(re.sub(r"\$\{?\w+\}?", lambda m: value(m.group(0)), line))
    text = "\n".join(lines)
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
    record = render(put_record_template(), body, facility="plant-01")  # POST /ingest/plant-01
    # one PutRecord per batch: the whole body is the record, keyed as the rule says
    assert record["PartitionKey"] == gateway_partition_key("plant-01")
    data = base64.b64decode(str(record["Data"]))
    # the body, byte for byte, in the envelope of the path facility
    assert data == gateway_envelope("plant-01", body)
    assert open_gateway_envelope(data) == ("plant-01", body)
    # and the processor decodes that record with the same codec ingest uses for the format
    codec = CODECS.get("apigw")
    batch = codec.decode(
        data, received_us=now_us(), window=TimeWindow(10**15, 10**15), max_readings=10
    )
    assert (batch.facility, len(batch.readings), batch.rejected) == ("plant-01", 3, [])


def test_the_template_keys_and_wraps_by_the_path_facility_not_the_body() -> None:
    """POST /ingest/plant-02 with a body for plant-01: the record is keyed and enveloped by
    the path (what IAM authorised), and the codec refuses it as a whole."""
    body = b"  \r\n" + orjson.dumps(BODY)  # leading JSON whitespace is allowed inside
    record = render(put_record_template(), body, facility="plant-02")
    assert record["PartitionKey"] == gateway_partition_key("plant-02")
    data = base64.b64decode(str(record["Data"]))
    assert open_gateway_envelope(data) == ("plant-02", body)
    codec = CODECS.get("apigw")
    with pytest.raises(InvalidInputError) as refused:
        codec.decode(data, received_us=now_us(), window=TimeWindow(10**15, 10**15), max_readings=1)
    assert refused.value.code == ErrorCode.FORBIDDEN_FACILITY
    # the same body to its own path goes through, whitespace and all
    ok = base64.b64decode(str(render(put_record_template(), body, facility="plant-01")["Data"]))
    batch = codec.decode(
        ok, received_us=now_us(), window=TimeWindow(10**15, 10**15), max_readings=1
    )
    assert (batch.facility, len(batch.readings)) == ("plant-01", 3)


def test_a_facility_with_quotes_cannot_break_out_of_the_envelope() -> None:
    evil = 'plant-01", "body": {}, "x": "'
    record = render(put_record_template(), orjson.dumps(BODY), facility=evil)
    data = base64.b64decode(str(record["Data"]))
    facility, body = open_gateway_envelope(data)
    assert body == orjson.dumps(BODY)
    assert facility != "plant-01"
    with pytest.raises(InvalidInputError) as refused:
        CODECS.get("apigw").decode(
            data, received_us=now_us(), window=TimeWindow(10**15, 10**15), max_readings=1
        )
    assert refused.value.code == ErrorCode.FORBIDDEN_FACILITY
