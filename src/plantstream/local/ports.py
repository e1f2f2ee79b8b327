"""Picking and remembering loopback ports for the embedded servers."""

from __future__ import annotations

import secrets
import socket
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as the servers themselves bind: a port whose old connections linger in TIME_WAIT
        # after a restart is free to them, so the server keeps its address
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# Below Linux's ephemeral range (32768-60999): the kernel hands those out as the local ports
# of outgoing connections, so one could take a server's port while the server restarts.
_SERVER_PORTS = range(20000, 32768)


def server_port() -> int:
    """A free port for a server of ours to keep, outside the ephemeral range if possible."""
    for _ in range(100):
        port = _SERVER_PORTS[secrets.randbelow(len(_SERVER_PORTS))]
        if port_is_free(port):
            return port
    return free_port()  # that range is crowded: any free port still works today


def remembered_port(path: Path, *, patience: float = 5.0) -> int:
    """The port saved in ``path`` once it is free, else a new one (saved).

    A server that was just killed can leave its port held for a moment (a forked child, a
    socket still closing), and everything configured with its address would lose it if it
    came back elsewhere: wait up to ``patience`` seconds before choosing another port.
    """
    if path.exists():
        port = int(path.read_text().strip())
        deadline = time.monotonic() + patience
        while not port_is_free(port):
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        else:
            return port
    port = server_port()
    path.write_text(f"{port}\n")
    return port


def remembered_secret(path: Path) -> str:
    """A random secret kept in ``path`` (mode 0600), created on first use."""
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(24)
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return secret
