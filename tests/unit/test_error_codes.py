"""One list of error codes: each wire string with its HTTP status, and nothing raised outside it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from plantstream.errors import (
    AuthError,
    ErrorCode,
    InvalidInputError,
    OverloadedError,
    PushBackError,
    RateLimitedError,
    StreamError,
    StreamThrottledError,
)

SRC = Path(__file__).parents[2] / "src" / "plantstream"
_RAISING = {"InvalidInputError", "AuthError", "StreamThrottledError", "PushBackError"}


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("invalid_json", 400),
        ("invalid_reading", 400),
        ("body_too_large", 413),
        ("batch_too_large", 413),
        ("unsupported_encoding", 415),
        ("body_timeout", 408),
        ("not_found", 404),
        ("method_not_allowed", 405),
        ("conflict", 409),
        ("invalid_request", 400),
        ("invalid_time", 400),
        ("missing_key", 401),
        ("invalid_key", 401),
        ("revoked_key", 401),
        ("expired_key", 401),
        ("malformed_key", 401),
        ("forbidden_role", 403),
        ("forbidden_facility", 403),
        ("rate_limited", 429),
        ("overloaded", 429),
        ("stream_throttled", 429),
        ("stream_full", 429),
        ("stream_unavailable", 503),
        ("database_unavailable", 503),
        ("internal_error", 500),
    ],
)
def test_each_code_keeps_its_wire_string_and_status(code: str, status: int) -> None:
    assert ErrorCode(code) == code
    assert str(ErrorCode(code)) == code
    assert ErrorCode(code).status == status


def test_an_unknown_code_is_refused_where_it_is_raised() -> None:
    with pytest.raises(ValueError, match="not_a_code"):
        InvalidInputError("not_a_code", "x")


def test_auth_errors_answer_with_their_codes_status() -> None:
    assert AuthError(ErrorCode.MISSING_KEY, "x").status == 401
    assert AuthError(ErrorCode.FORBIDDEN_FACILITY, "x").status == 403


def test_push_back_is_its_own_branch_and_a_stream_throttle_is_both() -> None:
    assert RateLimitedError("x").code is ErrorCode.RATE_LIMITED
    assert OverloadedError("x").code is ErrorCode.OVERLOADED
    assert not issubclass(RateLimitedError, StreamError)
    throttled = StreamThrottledError("x", code="stream_full")
    assert throttled.code is ErrorCode.STREAM_FULL
    assert isinstance(throttled, PushBackError)
    assert isinstance(throttled, StreamError)  # readers back off on any stream failure
    assert StreamThrottledError("x").code is ErrorCode.STREAM_THROTTLED


def _raised_codes() -> list[tuple[str, str]]:
    """Every bare-string code passed to an error of ours anywhere in src/."""
    found = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name not in _RAISING:
                continue
            strings = [a.value for a in node.args[:1] if isinstance(a, ast.Constant)]
            if name in ("StreamThrottledError", "PushBackError"):
                strings = []
            strings += [
                k.value.value
                for k in node.keywords
                if k.arg == "code" and isinstance(k.value, ast.Constant)
            ]
            found += [(f"{path.relative_to(SRC)}:{node.lineno}", s) for s in strings]
    return found


def test_every_code_raised_in_the_source_is_an_error_code() -> None:
    unknown = [(where, code) for where, code in _raised_codes() if code not in set(ErrorCode)]
    assert unknown == []
