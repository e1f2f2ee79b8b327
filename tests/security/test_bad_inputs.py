"""Every file of the bad-input corpus gets a coded refusal from ingest: never a 5xx, never an
accepted reading, and the server keeps answering."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.api import Api

CORPUS = Path(__file__).parent.parent / "data" / "bad_inputs"


@pytest.mark.parametrize("path", sorted(CORPUS.iterdir()), ids=lambda p: p.name)
def test_bad_input_is_refused_with_a_code(api: Api, path: Path) -> None:
    key = api.make_key("ingest")
    answer = api.client.post(
        "/v1/readings",
        content=path.read_bytes(),
        headers={**api.headers(key), "Content-Type": "application/json"},
    )
    assert answer.status_code < 500
    if answer.status_code == 202:
        body = answer.json()
        assert body["accepted"] == 0
        assert body["rejected"]
        assert all(r["code"] for r in body["rejected"])
    else:
        assert answer.status_code in (400, 403, 413)
        assert answer.json()["error"]["code"]
    assert api.client.get("/healthz").status_code == 200
