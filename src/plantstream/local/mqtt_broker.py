"""An embedded MQTT broker (amqtt, pure Python, the ``embedded`` extra) under the data dir.

Loopback only, no anonymous access: a generated password for the bridge (every topic) and
one login per facility whose ACL confines it to its own topics, plain JSON
(``plantstream/v1/{facility}/#``) and Sparkplug (group = facility: ``spBv1.0/{facility}/#``
to publish, its NCMD/DCMD and the hosts' STATE to subscribe). A TLS listener when a
certificate and key are given. MQTT 3.1.1 only (amqtt speaks no MQTT 5): the bridge connects
to it with 3.1.1 and a persistent session. Sessions and queued messages live in the broker's
memory: restarting the broker loses what it had queued (docs/mqtt.md says when to use
Mosquitto instead).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from plantstream.errors import ServiceError
from plantstream.local.ports import remembered_port, remembered_secret
from plantstream.local.process import mark_stopped, pid_alive

BRIDGE_USER = "plantstream-bridge"


def _hasher() -> object:
    try:
        from pwdlib import PasswordHash
        from pwdlib.hashers.argon2 import Argon2Hasher
    except ImportError as exc:  # the embedded extra brings amqtt and its pwdlib
        raise ServiceError(
            'the embedded MQTT broker is not installed: run "pip install plantstream[embedded]"'
            " (or set PLANTSTREAM_MQTT_URL to a broker of your own)"
        ) from exc
    return PasswordHash((Argon2Hasher(),))


def facility_user(facility: str) -> str:
    return f"facility-{facility}"


def facility_acl(facility: str) -> tuple[list[str], list[str]]:
    """(publish, subscribe) topic filters of a facility's login."""
    publish = [f"plantstream/v1/{facility}/#", f"spBv1.0/{facility}/#"]
    subscribe = [f"spBv1.0/{facility}/NCMD/#", f"spBv1.0/{facility}/DCMD/#", "spBv1.0/STATE/#"]
    return publish, subscribe


class EmbeddedBroker:
    """Start, stop and locate the embedded broker whose files live in ``home``."""

    def __init__(
        self,
        home: Path,
        *,
        facilities: tuple[str, ...] = (),
        certfile: Path | None = None,
        keyfile: Path | None = None,
    ) -> None:
        self.home = home
        self.facilities = facilities
        self.certfile = certfile
        self.keyfile = keyfile
        self.pidfile = home / "broker.pid"
        self.logfile = home / "broker.log"
        self.stopped_marker = home / "stopped"
        self._proc: subprocess.Popen[bytes] | None = None  # when this object started it

    # -- where and who ---------------------------------------------------------------

    def _port(self, name: str = "port") -> int:
        """The port chosen at start (``remembered_port`` would pick another while it runs)."""
        try:
            return int((self.home / name).read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self._port()}"

    def tls_url(self) -> str | None:
        return f"mqtts://127.0.0.1:{self._port('tls_port')}" if self.certfile else None

    def bridge_credentials(self) -> tuple[str, str]:
        return BRIDGE_USER, remembered_secret(self.home / "bridge.password")

    def facility_credentials(self, facility: str) -> tuple[str, str]:
        """The login of ``facility``'s devices (the broker must know it: ``facilities``)."""
        return facility_user(facility), remembered_secret(self.home / f"{facility}.password")

    # -- the process -----------------------------------------------------------------

    def _pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def is_running(self) -> bool:
        if self._pid() is None or not self._port():
            return False
        try:
            with socket.create_connection(("127.0.0.1", self._port()), timeout=1):
                return True
        except OSError:
            return False

    def _write_config(self) -> Path:
        hasher = _hasher()
        port = remembered_port(self.home / "port")
        users = {BRIDGE_USER: self.bridge_credentials()[1]}
        publish_acl: dict[str, list[str]] = {BRIDGE_USER: ["#"]}
        subscribe_acl: dict[str, list[str]] = {BRIDGE_USER: ["#"]}
        for facility in self.facilities:
            user, password = self.facility_credentials(facility)
            users[user] = password
            publish_acl[user], subscribe_acl[user] = facility_acl(facility)
        passwd = self.home / "passwd"
        passwd.touch(mode=0o600)
        passwd.write_text(
            "".join(f"{u}:{hasher.hash(p)}\n" for u, p in users.items())  # type: ignore[attr-defined]
        )
        listeners: dict[str, object] = {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}}
        if self.certfile is not None and self.keyfile is not None:
            listeners["tls"] = {
                "type": "tcp",
                "bind": f"127.0.0.1:{remembered_port(self.home / 'tls_port')}",
                "ssl": True,
                "certfile": str(self.certfile),
                "keyfile": str(self.keyfile),
            }
        config = {
            "listeners": listeners,
            "plugins": {
                "amqtt.plugins.authentication.FileAuthPlugin": {"password_file": str(passwd)},
                "amqtt.plugins.topic_checking.TopicAccessControlListPlugin": {
                    "publish_acl": publish_acl,
                    "acl": subscribe_acl,
                },
            },
        }
        path = self.home / "broker.yaml"
        path.touch(mode=0o600)
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        return path

    def start(self) -> str:
        """Start the broker if needed (with this set of facilities) and return its URL."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.stopped_marker.unlink(missing_ok=True)
        if self.is_running():
            return self.url()
        config = self._write_config()
        with self.logfile.open("ab") as log:
            proc = subprocess.Popen(  # noqa: S603 - our interpreter and amqtt's module, no shell
                [
                    sys.executable,
                    "-W",
                    "ignore",
                    "-m",
                    "amqtt.scripts.broker_script",
                    "-c",
                    str(config),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._proc = proc
        self.pidfile.write_text(str(proc.pid))
        deadline = time.monotonic() + 30
        while not self.is_running():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ServiceError(f"the MQTT broker did not start; see {self.logfile}")
            time.sleep(0.05)
        return self.url()

    def stop(self) -> bool:
        """Stop the broker; True when it was running."""
        mark_stopped(self.stopped_marker)
        pid = self._pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while self._pid() is not None:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        if self._proc is not None:
            self._proc.wait(timeout=15)  # reap it
            self._proc = None
        return True
