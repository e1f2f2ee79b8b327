"""The edge agent's container example (deploy/edge/Dockerfile) without a Docker engine: what
the build context lets in covers every COPY, the entrypoint starts from those files alone, every
dependency the image installs is pinned by the lock, and the image matches the example config."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import requires
from pathlib import Path

import pytest
import yaml
from dockerfile_context import build_context, copy_sources, instructions, missing_from_context

pytestmark = pytest.mark.infra

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "deploy" / "edge" / "Dockerfile").read_text()


def _steps(keyword: str) -> list[str]:
    return [rest for kw, rest in instructions(DOCKERFILE) if kw == keyword]


def _lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[_norm(name.split("[")[0])] = version.strip()
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_build_context_holds_everything_the_dockerfile_copies() -> None:
    assert missing_from_context(REPO, DOCKERFILE) == {}
    context = build_context(REPO)
    # and nothing that has no business in the image: tests, git, local queues or keys
    assert not [p for p in context if p.startswith(("tests/", ".git/", "bench/", "demo/"))]
    assert not [p for p in context if p.endswith((".db", ".key", ".pem", ".der"))]


def test_the_entrypoint_starts_from_the_copied_files_alone(tmp_path: Path) -> None:
    context = build_context(REPO)
    for source in copy_sources(DOCKERFILE):
        for path in (p for p in context if p == source or p.startswith(source + "/")):
            if (REPO / path).is_file():
                (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(REPO / path, tmp_path / path)
    (entrypoint,) = _steps("ENTRYPOINT")
    argv = yaml.safe_load(entrypoint)  # exec form: a JSON list
    assert argv[:2] == ["python", "-m"]
    module = argv[2]
    assert (tmp_path / "src" / Path(*module.split(".")) / "__main__.py").is_file()
    ran = subprocess.run(
        [sys.executable, "-I", "-c", "import sys; sys.path.insert(0, 'src'); "
         f"import runpy; sys.argv = ['x', '--help']; runpy.run_module({module!r}, "
         "run_name='__main__')"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "--config" in ran.stdout
    (cmd,) = _steps("CMD")
    assert yaml.safe_load(cmd)[0] == "--config"


def test_every_dependency_the_image_installs_is_pinned_by_the_lock() -> None:
    (install,) = [r for r in _steps("RUN") if "pip install" in r]
    assert "-c requirements.lock" in install
    extras = re.findall(r'"\.\[([a-z,]+)\]"', install)
    assert extras == ["edge"]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["edge"]]
    lock = _lock()
    for requirement in wanted:
        name, _, version = requirement.partition("==")
        assert lock.get(_norm(name.split("[")[0])) == version, requirement
    # what the edge extra pulls in is pinned too (pip -c constrains only what the lock names)
    for package in ("asyncua", "pymodbus"):
        for dependency in requires(package) or []:
            if "extra ==" in dependency:
                continue
            name = _norm(re.split(r"[ <>=!~;\[(]", dependency, maxsplit=1)[0])
            assert name in lock, f"{package} needs {name}, not in requirements.lock"


def test_the_image_matches_the_example_config_and_runs_unprivileged() -> None:
    example = yaml.safe_load((REPO / "deploy" / "edge" / "edge.example.yaml").read_text())
    (volume,) = _steps("VOLUME")
    assert Path(example["queue"]["path"]).parent == Path(yaml.safe_load(volume)[0])
    (expose,) = _steps("EXPOSE")
    assert example["health"]["listen"].rsplit(":", 1)[1] == expose
    assert any(f"127.0.0.1:{expose}/healthz" in h for h in _steps("HEALTHCHECK"))
    (user,) = _steps("USER")
    assert user not in ("root", "0")
