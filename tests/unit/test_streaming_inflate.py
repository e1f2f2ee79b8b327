"""A gzip or deflate body is inflated as its chunks arrive, whatever their boundaries: every
member read, trailing bytes refused, the output bounded, the refusal kept for the end."""

from __future__ import annotations

import gzip
import zlib

import pytest

from plantstream.api.ingest import _Inflater
from plantstream.errors import ErrorCode, InvalidInputError

DOCUMENT = b'{"facility": "plant-01", "readings": []}' * 50


def _inflate(body: bytes, step: int, *, encoding: str = "gzip", limit: int = 10_000) -> bytes:
    inflater = _Inflater(encoding, limit, max_members=4)
    for start in range(0, len(body), step):
        inflater.feed(body[start : start + step])
    return inflater.finish()


@pytest.mark.parametrize("step", [1, 2, 7, 4096])
def test_members_split_anywhere_come_out_whole(step: int) -> None:
    half = len(DOCUMENT) // 2
    body = gzip.compress(DOCUMENT[:half]) + gzip.compress(DOCUMENT[half:])
    assert _inflate(body, step) == DOCUMENT
    assert _inflate(zlib.compress(DOCUMENT), step, encoding="deflate") == DOCUMENT


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (gzip.compress(DOCUMENT) + b"x", ErrorCode.INVALID_BODY),  # one stray byte after it
        (gzip.compress(DOCUMENT) + b"tail", ErrorCode.INVALID_BODY),
        (gzip.compress(DOCUMENT)[:-5], ErrorCode.INVALID_BODY),  # ends too early
        (b"", ErrorCode.INVALID_BODY),
        (gzip.compress(b"a") * 5, ErrorCode.INVALID_BODY),  # more members than allowed
        (gzip.compress(b"0" * 20_000), ErrorCode.BODY_TOO_LARGE),
    ],
)
def test_what_cannot_be_the_whole_body_is_refused_at_the_end(body: bytes, code: str) -> None:
    for step in (1, 3, 100_000):
        with pytest.raises(InvalidInputError) as refused:
            _inflate(body, step)
        assert refused.value.code == code
