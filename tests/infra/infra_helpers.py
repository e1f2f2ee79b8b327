"""Helpers for the infra tests: run ``python -m plantstream_infra.check --json`` per preset.

Each run is its own process: the Pulumi runtime is process-global, and pulumi-aws emits
DeprecationWarnings on import that the suite's ``filterwarnings = error`` would turn into errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
PRESETS = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in INFRA.glob("Pulumi.*.yaml"))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(INFRA), env.get("PYTHONPATH")]))
    env.pop("PULUMI_CONFIG", None)
    return env


def run_check(
    preset: str,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[int, dict[str, Any] | None, str]:
    """(exit code, parsed JSON report or None, stderr) of one offline check run."""
    cmd = [sys.executable, "-m", "plantstream_infra.check", "--preset", preset, "--json"]
    for key, value in (overrides or {}).items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300, check=False
    )
    report = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else None
    return proc.returncode, report, proc.stderr


class Report:
    """A parsed check report with small lookup helpers for assertions."""

    def __init__(self, code: int, data: dict[str, Any]) -> None:
        self.code = code
        self.data = data
        self.outputs: dict[str, Any] = data["outputs"]
        self.resources: list[dict[str, Any]] = data["resources"]

    def of_type(self, token: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["type"] == token]

    def one(self, token: str, name_contains: str = "") -> dict[str, Any]:
        found = [r for r in self.of_type(token) if name_contains in r["name"]]
        assert len(found) == 1, f"expected one {token} named *{name_contains}*, got {found}"
        return found[0]["inputs"]

    def results(self, enforcement: str) -> list[dict[str, Any]]:
        return [r for r in self.data["results"] if r["enforcement"] == enforcement]


def report_for(preset: str, overrides: Mapping[str, Any] | None = None) -> Report:
    code, data, stderr = run_check(preset, overrides)
    assert data is not None, f"check for {preset} printed no report (exit {code}):\n{stderr}"
    return Report(code, data)
