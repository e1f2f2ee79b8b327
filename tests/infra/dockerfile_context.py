"""What a Dockerfile copies and what Docker sends as its build context, for the image tests.

The context is computed with docker-py's ``PatternMatcher`` (a port of moby's fileutils
matcher, the same ``.dockerignore`` semantics the Docker CLI applies), never with a regex.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

from docker.utils.build import exclude_paths


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, line continuations joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def copy_sources(dockerfile: str) -> list[str]:
    """Every source of every COPY/ADD from the build context (not ``--from`` a stage)."""
    sources: list[str] = []
    for keyword, rest in instructions(dockerfile):
        if keyword not in ("COPY", "ADD"):
            continue
        words = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        flags = [w for w in words if w.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        args = [w for w in words if not w.startswith("--")]
        sources += [s.rstrip("/") or "." for s in args[:-1]]
    return sources


def build_context(root: Path) -> set[str]:
    """Paths (files and directories, relative to ``root``) Docker would send."""
    ignore = root / ".dockerignore"
    patterns = [
        line.strip()
        for line in (ignore.read_text().splitlines() if ignore.is_file() else [])
        if line.strip() and not line.strip().startswith("#")
    ]
    return {p.replace("\\", "/") for p in exclude_paths(str(root), patterns)}


def tracked_files(root: Path, source: str) -> list[str]:
    """The files git tracks at or under ``source`` (what a fresh clone would build from)."""
    listing = subprocess.run(
        ["git", "ls-files", "--", source], cwd=root, capture_output=True, text=True, check=True
    )
    return [line for line in listing.stdout.splitlines() if line]


def missing_from_context(root: Path, dockerfile: str) -> dict[str, list[str]]:
    """COPY source -> its tracked files Docker would not send (empty when all is well)."""
    context = build_context(root)
    missing: dict[str, list[str]] = {}
    for source in copy_sources(dockerfile):
        files = tracked_files(root, source) or [source]
        lost = [f for f in files if f not in context]
        if lost:
            missing[source] = lost
    return missing
