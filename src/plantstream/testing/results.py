"""Benchmark results as JSON files: what was measured, when, and on what machine.

Each benchmark writes ``<directory>/<name>.json`` (``bench/results/`` in the repository).
"""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path


def write_result(name: str, result: dict[str, object], directory: Path) -> Path:
    """Write ``result`` with the time and machine it was measured on; the file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamped = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **result,
    }
    path = directory / f"{name}.json"
    path.write_text(json.dumps(stamped, indent=2) + "\n")
    return path
