"""OPC UA security for real: an asyncua server that offers only Basic256Sha256 SignAndEncrypt,
trusts only the agent's certificate and takes one user; self-signed pairs made in the test.
The agent collects through it; a stranger's certificate, a server certificate other than the
pinned one and a wrong password are each refused with a reason a plant engineer can act on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fixtures.edge import edge_config
from fixtures.edge_http import ContractServer, contract_server
from fixtures.opcua import USER, OpcUaMachine, make_certificates, node_id
from pydantic import SecretStr

from plantstream.edge import Agent
from plantstream.edge.config import EdgeConfig, parse_config
from plantstream.errors import ConfigError
from plantstream.local.ports import free_port
from plantstream.testing import wait_until

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery"  # pragma: allowlist secret (a test password)
PASSWORD_ENV = "PLANTSTREAM_EDGE_TEST_OPCUA_PASSWORD"  # pragma: allowlist secret


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_certificates(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secure_machine(
    tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]
) -> Iterator[OpcUaMachine]:
    log_path = tmp_path_factory.mktemp("secure-opcua") / "writes.jsonl"
    machine = OpcUaMachine(
        port=free_port(), log_path=log_path, secure_dir=pki["server_cert"].parent, password=PASSWORD
    )
    machine.start()
    try:
        yield machine
    finally:
        machine.stop()


def _source(machine: OpcUaMachine, security: dict[str, object]) -> dict[str, object]:
    return {
        "type": "opcua",
        "name": "press",
        "endpoint": machine.endpoint,
        "security": security,
        "publishing_ms": 50,
        "timeout_seconds": 4,
        "reconnect_max_seconds": 1,
        "signals": [
            {"node": node_id("Temperature"), "device": "press-1", "metric": "temperature",
             "sampling_ms": 0},
            {"node": node_id("State"), "device": "press-1", "metric": "machine_state",
             "type": "state"},
        ],
    }  # fmt: skip


def _security(pki: dict[str, Path], **override: object) -> dict[str, object]:
    return {
        "mode": "sign_and_encrypt",
        "certificate": str(pki["edge_cert"]),
        "private_key": str(pki["edge_key"]),
        "server_certificate": str(pki["server_cert"]),
        "username": USER,
        "password_env": PASSWORD_ENV,
        **override,
    }


@contextmanager
def agent_for(tmp_path: Path, server: ContractServer, source: dict[str, object]) -> Iterator[Agent]:
    config = EdgeConfig.model_validate(edge_config(tmp_path, server.url, [source]))
    agent = Agent(config, SecretStr(server.key))
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield agent
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the agent did not stop"


def _refused(agent: Agent) -> str:
    """The source's last error once it has one (it never connected)."""
    st = agent.status.sources["press"]
    wait_until(lambda: st.last_error is not None, timeout=40, what="the refusal")
    assert st.state != "connected"
    return str(st.last_error)


def test_sign_and_encrypt_with_certificates_and_a_user_collects(
    tmp_path: Path, secure_machine: OpcUaMachine, pki: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with (
        contract_server() as server,
        agent_for(tmp_path, server, _source(secure_machine, _security(pki))) as agent,
    ):
        wanted = {("press-1", "temperature"), ("press-1", "machine_state")}
        wait_until(lambda: wanted <= set(server.stored()), timeout=60, what="secure data")
        assert agent.status.sources["press"].state == "connected"
    truth = {w["ts_us"]: w["value"] for w in secure_machine.writes("Temperature")}
    assert all(truth[ts] == v for ts, v in server.stored()[("press-1", "temperature")])


def test_the_server_refuses_a_certificate_it_does_not_trust(
    tmp_path: Path, secure_machine: OpcUaMachine, pki: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    security = _security(pki, certificate=str(pki["stranger_cert"]),
                         private_key=str(pki["stranger_key"]))  # fmt: skip
    with (
        contract_server() as server,
        agent_for(tmp_path, server, _source(secure_machine, security)) as agent,
    ):
        error = _refused(agent)
    assert "the server refused the agent's certificate (BadCertificateUntrusted)" in error
    assert str(pki["stranger_cert"]) in error  # which file to put in its trust list
    assert server.stored() == {}


def test_a_server_certificate_other_than_the_pinned_one_is_refused(
    tmp_path: Path, secure_machine: OpcUaMachine, pki: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    security = _security(pki, server_certificate=str(pki["stranger_cert"]))
    with (
        contract_server() as server,
        agent_for(tmp_path, server, _source(secure_machine, security)) as agent,
    ):
        error = _refused(agent)
        metrics = agent.status.metrics.registry
        refusals = metrics.get_sample_value(
            "plantstream_edge_source_errors_total", {"source": "press", "kind": "security"}
        )
    assert "is not security.server_certificate" in error
    assert "refusing to connect" in error
    assert refusals is not None
    assert refusals >= 1
    assert server.stored() == {}


def test_a_wrong_password_is_refused_by_name(
    tmp_path: Path, secure_machine: OpcUaMachine, pki: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv(PASSWORD_ENV, "not the password")
    with (
        contract_server() as server,
        agent_for(tmp_path, server, _source(secure_machine, _security(pki))) as agent,
    ):
        error = _refused(agent)
    assert f"the server refused user '{USER}' (BadUserAccessDenied)" in error
    assert PASSWORD_ENV in error
    assert "not the password" not in error


def test_insecure_only_when_asked_and_unreadable_files_stop_the_start(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    machine = OpcUaMachine(port=1, log_path=tmp_path / "unused")
    base = edge_config(tmp_path, "http://127.0.0.1:1", [_source(machine, {"mode": "none"})])
    with pytest.raises(ConfigError, match="set insecure: true"):
        parse_config(base, {}, where="edge.yaml")
    missing = _security(pki, certificate=str(tmp_path / "no-such-cert.der"))
    config = EdgeConfig.model_validate(
        edge_config(tmp_path, "http://127.0.0.1:1", [_source(machine, missing)])
    )
    with pytest.raises(ConfigError, match=r"security\.certificate .*no-such-cert\.der"):
        Agent(config, SecretStr("k"))
