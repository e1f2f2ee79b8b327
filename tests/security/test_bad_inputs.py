"""Every file of the bad-input corpus gets the refusal written down for it: the right status and
code, never a 5xx, never an accepted reading, and the server keeps answering.

A file ending ``.gz`` is sent as it is with ``Content-Encoding: gzip``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.api import Api

DATA = Path(__file__).parent.parent / "data"
CORPUS = DATA / "bad_inputs"
EXPECTED: dict[str, list[object]] = {
    name: answer
    for name, answer in json.loads((DATA / "bad_inputs_expected.json").read_text()).items()
    if not name.startswith("_")
}


def test_every_corpus_file_has_an_expected_refusal() -> None:
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("path", sorted(CORPUS.iterdir()), ids=lambda p: p.name)
def test_bad_input_is_refused_with_its_code(api: Api, path: Path) -> None:
    status, code = EXPECTED[path.name]
    key = api.make_key("ingest")
    encoding = {"Content-Encoding": "gzip"} if path.suffix == ".gz" else {}
    answer = api.client.post(
        "/v1/readings",
        content=path.read_bytes(),
        headers={**api.headers(key), "Content-Type": "application/json", **encoding},
    )
    assert answer.status_code == status, answer.text
    body = answer.json()
    if status == 202:
        assert body["accepted"] == 0
        assert [r["code"] for r in body["rejected"]] == [code]
        assert body["rejected"][0]["reason"]
    else:
        assert body["error"]["code"] == code
        assert body["error"]["message"]
    assert api.client.get("/healthz").status_code == 200
