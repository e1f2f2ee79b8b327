"""Process helpers: whether an embedded server's process still runs (and was stopped on
purpose), and how a child process of plantstream names itself and dies with its parent."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
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


_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
SUPERVISOR_POLL_S = 0.5


def become(name: str, supervisor: int, log_level: str) -> None:
    """Name this process ``name`` (what ``ps``, ``top`` and psutil show) and make it stop with
    the ``supervisor`` (a pid): one killed by SIGKILL must not leave children holding the port.

    A child's parent is the fork server, which lives as long as any child holds its pipe, so
    the child watches the supervisor itself and sends itself SIGTERM (a drain) once it is gone.
    Each child leads a process group of its own: Ctrl-C in a terminal signals the foreground
    group, and reaches the children only through the supervisor, which stops them in order
    (the demo lets the processor drain the stream first).
    """
    with contextlib.suppress(OSError):  # already a group leader (never, forked) or not allowed
        os.setpgid(0, 0)
    logging.basicConfig(
        level=log_level.upper(),
        format=f"%(asctime)s %(levelname)s {name} %(name)s: %(message)s",
    )
    threading.Thread(
        target=_watch, args=(supervisor,), name="supervisor-watch", daemon=True
    ).start()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the fork server gone: at once
        libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _watch(supervisor: int) -> None:
    while True:
        try:
            os.kill(supervisor, 0)
        except ProcessLookupError:
            logging.getLogger(__name__).warning("the supervisor is gone: stopping")
            os.kill(os.getpid(), signal.SIGTERM)
            return
        except PermissionError:  # pragma: no cover - alive, under another user (pid reused)
            pass
        time.sleep(SUPERVISOR_POLL_S)
