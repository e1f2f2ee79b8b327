"""The bridge over TLS with a client certificate, to a Mosquitto that requires one."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from fixtures.mqtt import stream_readings
from pydantic import SecretStr

from plantstream.local.ports import free_port
from plantstream.testing import wait_until


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made here."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificates")
    d = tmp_path / "pki"
    d.mkdir()
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, cn in (("server", "127.0.0.1"), ("client", "plantstream-bridge")):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={cn}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=d,
        )
        extra = ["-extfile", "san.ext"] if name == "server" else []
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            f"{name}.pem",
            *extra,
            cwd=d,
        )
    return d


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def tls_mosquitto(pki: Path, mosquitto_url: str):
    """A private Mosquitto on TLS that refuses a client without a certificate from the CA."""
    port = free_port()
    config = pki / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"cafile {pki / 'ca.pem'}\ncertfile {pki / 'server.pem'}\nkeyfile {pki / 'server.key'}\n"
        "require_certificate true\nuse_identity_as_username true\n"
        # as root mosquitto would drop to its own user, which cannot read the test's files
        f"user {getpass.getuser()}\n"
    )
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen(
        [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: _listening(port), timeout=10, what="TLS mosquitto")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_bridge_with_a_client_certificate_takes_readings_over_tls(
    pki, tls_mosquitto, start_bridge, redis_url, facility
):
    start_bridge(
        f"mqtts://127.0.0.1:{tls_mosquitto}",
        mqtt_ca_file=pki / "ca.pem",
        mqtt_cert_pem=SecretStr((pki / "client.pem").read_text()),
        mqtt_key_pem=SecretStr((pki / "client.key").read_text()),
    )
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(tls_mosquitto),
            "-q",
            "1",
            "--cafile",
            str(pki / "ca.pem"),
            "--cert",
            str(pki / "client.pem"),
            "--key",
            str(pki / "client.key"),
            "-t",
            f"plantstream/v1/{facility}/m1/humidity",
            "-m",
            "33",
        ],
        check=True,
        timeout=30,
    )
    wait_until(lambda: stream_readings(redis_url), timeout=20, what="the reading over TLS")
    assert [(r[0], r[1], r[4]) for r in stream_readings(redis_url)] == [(facility, "m1", 33.0)]
    # without a certificate the broker does not let a client in
    bare = subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(tls_mosquitto),
            "--cafile",
            str(pki / "ca.pem"),
            "-t",
            "x",
            "-m",
            "1",
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert bare.returncode != 0
