"""The shape of an API key is checked before any of it reaches the database."""

from __future__ import annotations

import pytest

from plantstream.errors import AuthError
from plantstream.store.keys import parse_key


def test_a_key_splits_into_its_id_and_secret() -> None:
    assert parse_key("ps_0123456789abcdef_s3cr_et-X") == ("0123456789abcdef", "s3cr_et-X")


@pytest.mark.parametrize(
    "key",
    [
        "",
        "ps__secret",
        "ps_0123456789abcdef_",
        "ps_0123456789ABCDEF_secret",  # ids are lower-case hex
        "ps_0123456789abcdeg_secret",
        "ps_0123456789abcdef0_secret",
        "xx_0123456789abcdef_secret",
        "ps_0123456789abcde'_secret",
        "ps_0123456789abcdef_secret' OR '1'='1",
        "ps_0123456789abcdef_secret\x00",
        "ps_0123456789abcdef_secr\u0435t",  # Cyrillic e
        "ps_0123456789abcdef_" + "a" * 129,
    ],
)
def test_anything_else_is_malformed(key: str) -> None:
    with pytest.raises(AuthError) as refused:
        parse_key(key)
    assert refused.value.code == "malformed_key"
    assert refused.value.status == 401
