"""OPC UA session security: Basic256Sha256 with the agent's certificate, a pinned server
certificate, a username; and what a refusal means, told in words a plant engineer can act on.

``check_files`` runs at start (a missing or unreadable file stops the agent with its name);
``secure`` sets up the client before it connects; ``explain`` turns the server's StatusCode
into the reason and the fix.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from plantstream.edge.config import EdgeConfig, OpcUaSecurity, OpcUaSource

CERTIFICATE_REFUSED = frozenset({
    "BadCertificateUntrusted", "BadSecurityChecksFailed", "BadCertificateUriInvalid",
    "BadCertificateUseNotAllowed", "BadCertificateTimeInvalid", "BadCertificateInvalid",
    "BadCertificateRevoked", "BadCertificateIssuerRevocationUnknown",
})  # fmt: skip
USER_REFUSED = frozenset({
    "BadIdentityTokenRejected", "BadIdentityTokenInvalid", "BadUserAccessDenied",
})  # fmt: skip


class SecurityRefusedError(ConnectionError):
    """The session's security was refused (by the server, or by us: a server certificate
    that is not the pinned one). Retried like a lost connection; the reason is in health."""


def check_files(config: EdgeConfig) -> list[str]:
    """Each configured certificate or key file that cannot be read, as ``source: field path``."""
    problems = []
    for source in config.sources:
        if not isinstance(source, OpcUaSource):
            continue
        sec = source.security
        for name in ("certificate", "private_key", "server_certificate"):
            path: Path | None = getattr(sec, name)
            if path is None:
                continue
            try:
                with path.open("rb") as f:
                    f.read(1)
            except OSError as exc:
                problems.append(f"source {source.name}: security.{name} {path}: {exc.strerror}")
    return problems


def thumbprint(der: bytes) -> str:
    """SHA-1 of the DER certificate, as OPC UA tools (UaExpert, Prosys) show it."""
    return hashlib.sha1(der).hexdigest()  # noqa: S324  # an identifier, not a signature


def _der(path: Path) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    return data


def _application_uri(der: bytes) -> str | None:
    """The URI in the certificate's subjectAltName: the server checks it is our ApplicationUri."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


async def secure(client: Any, asyncua: Any, source: OpcUaSource) -> None:
    """Set up ``client`` per ``source.security``; raise ``SecurityRefusedError`` when the
    server's certificate is not the pinned ``server_certificate``."""
    sec = source.security
    if sec.mode != "none":
        from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

        if sec.certificate is None or sec.private_key is None:  # the config refuses this
            raise SecurityRefusedError(f"mode {sec.mode} needs certificate and private_key")
        uri = _application_uri(_der(sec.certificate))
        if uri:
            client.application_uri = uri
        mode = asyncua.ua.MessageSecurityMode
        ua_mode = mode.Sign if sec.mode == "sign" else mode.SignAndEncrypt
        if sec.server_certificate is not None:
            await _check_pinned(client, sec, ua_mode)
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            certificate=str(sec.certificate),
            private_key=str(sec.private_key),
            server_certificate=str(sec.server_certificate) if sec.server_certificate else None,
            mode=ua_mode,
        )
    if sec.username is not None and sec.password_env is not None:
        client.set_user(sec.username)
        client.set_password(os.environ.get(sec.password_env, ""))


async def _check_pinned(client: Any, sec: OpcUaSecurity, mode: Any) -> None:
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

    if sec.server_certificate is None:
        return
    endpoints = await client.connect_and_get_server_endpoints()
    offered = [
        e for e in endpoints
        if e.SecurityPolicyUri == SecurityPolicyBasic256Sha256.URI and e.SecurityMode == mode
    ]  # fmt: skip
    if not offered:
        raise SecurityRefusedError(
            f"the server offers no Basic256Sha256 {sec.mode} endpoint at "
            f"{client.server_url.geturl()}"
        )
    want = _der(sec.server_certificate)
    got = bytes(offered[0].ServerCertificate or b"")  # its certificate, maybe then its chain
    if got[: len(want)] != want:
        raise SecurityRefusedError(
            f"the server's certificate (thumbprint {thumbprint(got)}) is not "
            f"security.server_certificate {sec.server_certificate} (thumbprint "
            f"{thumbprint(want)}): refusing to connect (a replaced server, or another machine)"
        )


def explain(exc: BaseException, source: OpcUaSource) -> str | None:
    """The reason and the fix for a security refusal by the server; None for other errors."""
    code = getattr(exc, "code", None)
    if not isinstance(code, int):
        return None
    from asyncua.ua.status_codes import get_name_and_doc

    name, _ = get_name_and_doc(code)
    sec = source.security
    if name in CERTIFICATE_REFUSED:
        return (
            f"the server refused the agent's certificate ({name}): add {sec.certificate} to "
            f"the server's trusted certificates (its URI must be the agent's ApplicationUri)"
        )
    if name in USER_REFUSED:
        return (
            f"the server refused user {sec.username!r} ({name}): check the username and the "
            f"password in ${sec.password_env}"
        )
    return None
