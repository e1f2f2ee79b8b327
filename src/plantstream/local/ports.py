"""Picking and remembering loopback ports for the embedded servers."""

from __future__ import annotations

import secrets
import socket
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


def remembered_port(path: Path) -> int:
    """The port saved in ``path`` if it is still free, else a new one (saved)."""
    if path.exists():
        port = int(path.read_text().strip())
        if port_is_free(port):
            return port
    port = free_port()
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
