"""The rendered CA works in a real TLS handshake on loopback.

A leaf is minted from the rendered ``ca.pem``/``ca-key.pem`` the way the
sidecar does it (rcgen 0.13: CN and SAN the SNI name, P-256 key, digitalSignature
and keyEncipherment, no authority key identifier, issuer = the CA's subject),
served on 127.0.0.1, and a client trusting only the ``bundle.pem`` the
workspace sees (the rendered Pod's trust volume projected over the rendered
Secret, as kubelet does) connects with Python's ``ssl``.
"""

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from condukt_egress.args import SandboxEgressArgs
from condukt_egress.ca import generate_ca
from condukt_egress.render import render_session, to_yaml
from tests.security_properties import assert_workspace_trusts_the_ca, workspace_trust_view
from tests.sidecar_leaf import mint_leaf

HOST = "api.github.com"
TIMEOUT = 10.0


def rendered_secret(**options: Any) -> dict[str, str]:
    """The Secret's files, read back from the rendered YAML stream, and the workspace's
    ``bundle.pem`` as its trust volume shows it."""
    args = SandboxEgressArgs(session_id="tls-test", **options)
    stream = to_yaml(render_session(args, generate_ca(args), "python:3.13-slim"))
    objects = {o["kind"]: o for o in yaml.safe_load_all(stream)}
    assert_workspace_trusts_the_ca(objects["Secret"], objects["Pod"]["spec"])
    view = workspace_trust_view(objects["Secret"], objects["Pod"]["spec"])
    bundle = view["bundle.pem"].decode()
    data: dict[str, str] = {**objects["Secret"]["stringData"], "bundle.pem": bundle}
    return data


@contextlib.contextmanager
def tls_server(leaf: tuple[str, str], tmp_path: Path) -> Iterator[int]:
    """Serve one TLS connection on loopback with the leaf; yield the port."""
    cert_file, key_file = tmp_path / "leaf.pem", tmp_path / "leaf-key.pem"
    cert_file.write_text(leaf[0])
    key_file.write_text(leaf[1])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)

    def serve() -> None:
        with contextlib.suppress(OSError):  # ssl.SSLError is an OSError
            conn, _ = listener.accept()
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(TIMEOUT)
        listener.close()


def connect(port: int, server_name: str, trusted: str, *, strict: bool = False) -> bytes:
    """Handshake trusting only ``trusted`` (PEM), verifying ``server_name``; return the greeting."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname, no roots
    context.load_verify_locations(cadata=trusted)
    if strict:
        context.verify_flags |= ssl.VERIFY_X509_STRICT
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        return tls.recv(2)


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ecdsa-p384", "rsa-2048"])
def test_handshake_succeeds_trusting_only_the_rendered_bundle(
    algorithm: str, tmp_path: Path
) -> None:
    data = rendered_secret(ca_key_algorithm=algorithm)
    leaf = mint_leaf(data["ca.pem"], data["ca-key.pem"], HOST)
    with tls_server(leaf, tmp_path) as port:
        assert connect(port, HOST, data["bundle.pem"]) == b"ok"


def test_handshake_succeeds_with_the_public_roots_bundle(tmp_path: Path) -> None:
    data = rendered_secret(trust_bundle="public-roots")
    assert data["bundle.pem"].count("BEGIN CERTIFICATE") > 100
    leaf = mint_leaf(data["ca.pem"], data["ca-key.pem"], HOST)
    with tls_server(leaf, tmp_path) as port:
        assert connect(port, HOST, data["bundle.pem"]) == b"ok"


def test_handshake_fails_for_a_leaf_of_another_ca(tmp_path: Path) -> None:
    data = rendered_secret()
    other = generate_ca(SandboxEgressArgs(session_id="another session"))
    leaf = mint_leaf(other.cert_pem, other.key_pem, HOST)
    with (
        tls_server(leaf, tmp_path) as port,
        pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"),
    ):
        connect(port, HOST, data["bundle.pem"])


def test_handshake_fails_for_another_name(tmp_path: Path) -> None:
    data = rendered_secret()
    leaf = mint_leaf(data["ca.pem"], data["ca-key.pem"], HOST)
    with (
        tls_server(leaf, tmp_path) as port,
        pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"),
    ):
        connect(port, "evil.example.com", data["bundle.pem"])


def test_ca_passes_strict_x509_checks(tmp_path: Path) -> None:
    # VERIFY_X509_STRICT is Python 3.13's default; it checks the CA's basic
    # constraints, key usage and key identifier. (It also wants an AKI in
    # the leaf, which the sidecar's rcgen leaves lack: added here.)
    data = rendered_secret()
    leaf = mint_leaf(data["ca.pem"], data["ca-key.pem"], HOST, with_aki=True)
    with tls_server(leaf, tmp_path) as port:
        assert connect(port, HOST, data["bundle.pem"], strict=True) == b"ok"


def test_the_default_secret_holds_the_ca_once(tmp_path: Path) -> None:
    args = SandboxEgressArgs(session_id="tls-test")
    stream = to_yaml(render_session(args, generate_ca(args), "python:3.13-slim"))
    secret = next(o for o in yaml.safe_load_all(stream) if o["kind"] == "Secret")
    assert "bundle.pem" not in secret["stringData"], "bundle.pem would repeat ca.pem"
    data = rendered_secret()
    assert data["bundle.pem"] == data["ca.pem"]
    leaf = mint_leaf(data["ca.pem"], data["ca-key.pem"], HOST)
    with tls_server(leaf, tmp_path) as port:
        assert connect(port, HOST, data["bundle.pem"]) == b"ok"
