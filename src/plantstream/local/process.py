"""Whether an embedded server's process still runs, and whether it was stopped on purpose."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists and has not exited.

    A daemonised server that exited stays a zombie until init reaps it, and a zombie still
    answers signal 0: on Linux its state in ``/proc`` tells the two apart.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS), or gone just now: the signal said it ran
    state = stat.rpartition(")")[2].split()[0]  # the command name may hold spaces and ")"
    return state not in ("Z", "X")


def mark_stopped(marker: Path) -> None:
    """Leave ``marker`` to say a stop was asked for (a watchdog must not undo it)."""
    if marker.parent.is_dir():
        with contextlib.suppress(OSError):  # an empty file; a full disk may still refuse it
            marker.touch()
