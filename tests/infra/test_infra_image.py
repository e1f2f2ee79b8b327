"""The Dockerfile builds the data plane the way the stack expects to run it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.infra

REPO = Path(__file__).resolve().parents[2]


def _stages() -> list[str]:
    text = (REPO / "Dockerfile").read_text()
    return re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]


def test_multi_stage_with_compilers_only_in_the_builder() -> None:
    builder, final = _stages()
    assert " AS builder" in builder.splitlines()[0]
    assert "build-essential" in builder
    assert "pip install" in builder
    assert "build-essential" not in final
    assert "apt-get install" not in final
    assert "COPY --from=builder /opt/venv /opt/venv" in final


def test_final_stage_runs_plantstream_as_the_task_user() -> None:
    final = _stages()[-1]
    assert re.search(r"^USER 10001:10001$", final, flags=re.MULTILINE)
    assert 'ENTRYPOINT ["plantstream"]' in final
    assert 'CMD ["serve", "all"]' in final
    from plantstream_infra.services import CONTAINER_USER

    assert CONTAINER_USER == "10001:10001"


def test_build_context_keeps_only_what_the_dockerfile_copies() -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") if "*" in ignore else 0] == "*"
    for kept in ("!pyproject.toml", "!README.md", "!src/", "!infra/plantstream_infra/"):
        assert kept in ignore
    copied = re.findall(r"^COPY (?!--from)(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    assert set(copied) == {"pyproject.toml", "src", "infra/plantstream_infra"}


def test_image_tag_follows_the_sources(tmp_path: Path) -> None:
    from plantstream_infra.image import source_digest

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    first = source_digest(tmp_path)
    assert source_digest(tmp_path) == first
    (tmp_path / "src" / "a.py").write_text("x = 2\n")
    assert source_digest(tmp_path) != first


@pytest.mark.parametrize(
    ("image", "arn"),
    [
        (
            "123456789012.dkr.ecr.eu-west-2.amazonaws.com/team/plantstream:1.0",
            "arn:aws:ecr:eu-west-2:123456789012:repository/team/plantstream",
        ),
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/plantstream@sha256:abc",
            "arn:aws:ecr:us-east-1:123456789012:repository/plantstream",
        ),
        ("ghcr.io/example/plantstream:1.0", None),
    ],
)
def test_configured_ecr_images_get_pull_rights_on_their_repository(
    image: str, arn: str | None
) -> None:
    from plantstream_infra.image import ecr_repository_arn

    assert ecr_repository_arn(image) == arn
