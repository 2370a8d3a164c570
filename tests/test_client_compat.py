"""The client compatibility profile (items 4 and 5 of the real-sidecar issue).

The sidecar reads SNI from ONE peek of at most 1,024 bytes (upstream
native/condukt_egress/src/proxy/conn.rs:58-68, then sni.rs:14-36 needs the
complete TLS record) and mints leaves with no Authority Key Identifier
(src/proxy/tls.rs:134-149: CN and one DNS SAN = the SNI name, NoCa, key usage
digitalSignature + keyEncipherment, rcgen 0.13 default validity and key).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from asn1crypto.pkcs12 import Pfx
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from condukt_egress import compat, manifests
from condukt_egress.args import SandboxEgressArgs, TrustBundle
from condukt_egress.ca import generate_ca
from tests.security_properties import java_trusted, pem_certificates, workspace_trust_view
from tests.sidecar_leaf import mint_leaf

PEEK = 1024  # src/proxy/conn.rs:58 `let mut peek_buf = [0u8; 1024];`

CLIENT_HELLO = textwrap.dedent(
    """
    import json
    from OpenSSL import SSL
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    conn.set_tlsext_host_name(b"api.github.com")
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        pass
    print(json.dumps({"hello": conn.bio_read(65536).hex(),
                      "openssl": SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()}))
    """
)


def sni_from_peek(peek: bytes) -> str | None:
    """What the sidecar names a TLS connection from its peek: the SNI, or None.

    As tls-parser's ``parse_tls_plaintext``: the whole handshake record must
    be inside the peeked bytes, else nothing is parsed (sni.rs:15).
    """
    if len(peek) < 5 or peek[0] != 0x16:
        return None
    end = 5 + int.from_bytes(peek[3:5], "big")
    if end > len(peek):
        return None
    hello = peek[5:end]
    assert hello[0] == 1  # ClientHello
    at = 4 + 2 + 32
    at += 1 + hello[at]  # session id
    at += 2 + int.from_bytes(hello[at : at + 2], "big")  # cipher suites
    at += 1 + hello[at]  # compression methods
    stop = at + 2 + int.from_bytes(hello[at : at + 2], "big")
    at += 2
    while at < stop:
        kind = int.from_bytes(hello[at : at + 2], "big")
        size = int.from_bytes(hello[at + 2 : at + 4], "big")
        if kind == 0:  # server_name: list length, type, name length, name
            return hello[at + 9 : at + 4 + size].decode()
        at += 4 + size
    return None


def client_hello(env: dict[str, str]) -> tuple[bytes, str]:
    """A ClientHello of pyOpenSSL on cryptography's bundled (newest) OpenSSL.

    OPENSSL_CONF is read when the library initialises: a fresh process each time.
    """
    base = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
    out = subprocess.run(
        [sys.executable, "-c", CLIENT_HELLO],
        env=base | env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    result = json.loads(out.stdout)
    return bytes.fromhex(result["hello"]), result["openssl"]


@pytest.fixture(scope="module")
def profile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trust volume as the workspace sees it, with the profile's files."""
    args = SandboxEgressArgs(session_id="compat")
    ca = generate_ca(args)
    secret = manifests.secret_manifest(
        args,
        manifests.secret_data(args, ca.cert_pem, ca.key_pem),
        manifests.secret_binary_data(args, ca.cert_pem),
        name=manifests.secret_name(args, ca.cert_pem),
    )
    root = tmp_path_factory.mktemp("condukt")
    pod_spec = manifests.inject({"containers": [{"name": "w"}]}, args)
    for path, content in workspace_trust_view(secret, pod_spec).items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    (root / "ca-key.pem").write_text(ca.key_pem)  # for minting leaves in the test only
    return root


# --- Item 4: ClientHellos the sidecar can read ----------------------------------------


def test_without_the_profile_the_newest_openssl_hides_the_sni(tmp_path: Path) -> None:
    hello, version = client_hello({"OPENSSL_CONF": str(tmp_path / "absent.cnf")})
    if len(hello) <= PEEK:
        pytest.skip(f"{version} does not send a post-quantum key share by default")
    assert sni_from_peek(hello[:PEEK]) is None  # the sidecar names it by IP, and denies
    assert sni_from_peek(hello) == "api.github.com"


@pytest.mark.parametrize("system_config", [compat.SYSTEM_OPENSSL_CONF, "/nonexistent/openssl.cnf"])
def test_with_the_profile_the_hello_fits_the_peek(system_config: str, tmp_path: Path) -> None:
    conf = tmp_path / "openssl.cnf"
    conf.write_text(compat.openssl_config(system_config))
    hello, _ = client_hello({"OPENSSL_CONF": str(conf)})
    assert len(hello) <= PEEK
    assert sni_from_peek(hello[:PEEK]) == "api.github.com"


def test_the_profile_file_is_the_one_injected(profile_dir: Path) -> None:
    hello, _ = client_hello({"OPENSSL_CONF": str(profile_dir / "openssl.cnf")})
    assert len(hello) <= PEEK
    assert sni_from_peek(hello[:PEEK]) == "api.github.com"


def test_the_openssl_config_keeps_the_image_config_and_names_both_sections() -> None:
    text = compat.openssl_config()
    lines = text.splitlines()
    assert ".include /etc/ssl/openssl.cnf" in lines
    # After the include, back to the default section, where the last value wins.
    assert lines.index("[ default ]") > lines.index(".include /etc/ssl/openssl.cnf")
    assert "openssl_conf = condukt_egress_init" in lines
    assert "nodejs_conf = condukt_egress_init" in lines  # Node >= 18.5 reads this one
    assert "Groups = X25519:P-256:P-384" in lines


def test_the_workspace_env_points_at_the_profile_and_merges_user_values() -> None:
    spec = manifests.inject(
        {"containers": [{"name": "w", "env": [
            {"name": "GODEBUG", "value": "http2client=0"},
            {"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g"},
            {"name": "PYTHONPATH", "value": "/app"},
        ]}, {"name": "v", "env": [
            {"name": "OPENSSL_CONF", "value": "/mine.cnf"},
            {"name": "GODEBUG", "value": "tlsmlkem=1"},
            {"name": "JAVA_TOOL_OPTIONS", "valueFrom": {"configMapKeyRef": {"name": "j",
                                                                             "key": "k"}}},
        ]}]},
        SandboxEgressArgs(session_id="p"),
    )  # fmt: skip
    env: list[dict[str, Any]] = [
        {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
        for container in spec["containers"]
    ]
    assert env[0]["OPENSSL_CONF"] == "/etc/condukt/openssl.cnf"
    assert env[0]["GODEBUG"] == "http2client=0,tlsmlkem=0,tlskyber=0"
    assert env[0]["JAVA_TOOL_OPTIONS"] == (
        "-Xmx1g -Djdk.tls.namedGroups=x25519,secp256r1,secp384r1"
        " -Djavax.net.ssl.trustStore=/etc/condukt/truststore.p12"
        " -Djavax.net.ssl.trustStoreType=PKCS12"
    )
    assert env[0]["PYTHONPATH"] == "/etc/condukt/python:/app"
    assert env[1]["OPENSSL_CONF"] == "/mine.cnf"  # the user's choice wins
    assert env[1]["GODEBUG"] == "tlsmlkem=1,tlskyber=0"  # their tlsmlkem choice stands
    assert env[1]["JAVA_TOOL_OPTIONS"] == {"configMapKeyRef": {"name": "j", "key": "k"}}
    assert manifests.inject(spec, SandboxEgressArgs(session_id="p")) == spec
    trust = next(v for v in spec["volumes"] if v["name"] == manifests.TRUST_VOLUME)
    assert trust["secret"]["items"][2:] == [
        {"key": "openssl.cnf", "path": "openssl.cnf"},
        {"key": "sitecustomize.py", "path": "python/sitecustomize.py"},
        {"key": "truststore.p12", "path": "truststore.p12"},
    ]


def test_the_profile_can_be_switched_off() -> None:
    args = SandboxEgressArgs(session_id="p", client_compat=False)
    spec = manifests.inject({"containers": [{"name": "w"}]}, args)
    names = {e["name"] for e in spec["containers"][0]["env"]}
    assert not names & {"OPENSSL_CONF", "GODEBUG", "JAVA_TOOL_OPTIONS", "PYTHONPATH"}
    data = manifests.secret_data(args, "c", "-----BEGIN PRIVATE KEY-----\n")
    assert "openssl.cnf" not in data
    assert "sitecustomize.py" not in data
    assert manifests.secret_binary_data(args, "c") == {}
    binary = manifests.secret_binary_data(args, "c")
    secret = manifests.secret_manifest(args, data, binary, name=args.names.secret_name({}))
    assert "data" not in secret  # the Secret stays as it was before the trust store
    trust = next(v for v in spec["volumes"] if v["name"] == manifests.TRUST_VOLUME)
    assert "truststore.p12" not in {i["key"] for i in trust["secret"]["items"]}


# --- Item 5: the sidecar's leaves under Python 3.13's strict verification ------------


def sidecar_leaf(ca_cert_pem: str, ca_key_pem: str, host: str) -> tuple[bytes, bytes]:
    """A leaf minted as the sidecar mints it (tests/sidecar_leaf.py): no AKI."""
    cert_pem, key_pem = mint_leaf(ca_cert_pem, ca_key_pem, host)
    leaf = x509.load_pem_x509_certificate(cert_pem.encode())
    assert not any(e.oid == ExtensionOID.AUTHORITY_KEY_IDENTIFIER for e in leaf.extensions)
    return cert_pem.encode(), key_pem.encode()


HANDSHAKE = textwrap.dedent(
    """
    import json, ssl, sys
    leaf, key, cafile, order = sys.argv[1:5]
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(leaf, key)
    if order == "strict-first":  # as Python 3.13's create_default_context does
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.verify_flags |= getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0) | ssl.VERIFY_X509_STRICT
        client.load_verify_locations(cafile)
    elif order == "strict-after":  # urllib3 style: trust first, strict afterwards
        client = ssl.create_default_context(cafile=cafile)
        client.verify_flags |= ssl.VERIFY_X509_STRICT
    else:  # the interpreter's own default: strict from Python 3.13
        client = ssl.create_default_context(cafile=cafile)
    strict = bool(client.verify_flags & ssl.VERIFY_X509_STRICT)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname="api.github.com")
    s = server.wrap_bio(s_in, s_out, server_side=True)
    error = None
    for _ in range(10):
        for side in (c, s):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                error = str(exc)
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if error:
            break
    print(json.dumps({"strict": strict, "error": error, "ssl": ssl.OPENSSL_VERSION}))
    """
)


def handshake(
    profile_dir: Path, cafile: Path, order: str, *, profile: bool, python: str = sys.executable
) -> dict[str, Any]:
    leaf, key = sidecar_leaf(
        (profile_dir / "ca.pem").read_text(), (profile_dir / "ca-key.pem").read_text(),
        "api.github.com",
    )  # fmt: skip
    (profile_dir.parent / "leaf.pem").write_bytes(leaf)
    (profile_dir.parent / "leaf-key.pem").write_bytes(key)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SSL_CERT_FILE")}
    if profile:
        env["PYTHONPATH"] = str(profile_dir / "python")
    out = subprocess.run(
        [python, "-c", HANDSHAKE, str(profile_dir.parent / "leaf.pem"),
         str(profile_dir.parent / "leaf-key.pem"), str(cafile), order],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@functools.cache
def other_pythons() -> tuple[str, ...]:
    """Interpreters other than this one that run here: the hook claims Python 3.8+."""
    found: dict[str, str] = {}
    candidates = [shutil.which(f"python3.{minor}") or "" for minor in range(8, 16)]
    pyenv = os.environ.get("PYENV_ROOT")
    if pyenv:
        candidates += sorted(str(p) for p in Path(pyenv).glob("versions/3.*/bin/python3"))
    for path in candidates:
        if not path:
            continue
        probe = subprocess.run(
            [path, "-c", "import sys, ssl; print(*sys.version_info[:2], sep='.')"],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        version = tuple(int(n) for n in probe.stdout.split(".")) if probe.returncode == 0 else ()
        if (3, 8) <= version != sys.version_info[:2]:
            found.setdefault(".".join(map(str, version)), path)
    return tuple(found[v] for v in sorted(found, key=lambda v: tuple(map(int, v.split(".")))))


@pytest.mark.parametrize("order", ["strict-first", "strict-after", "python-default"])
def test_the_profile_under_every_other_python_here(profile_dir: Path, order: str) -> None:
    pythons = other_pythons()
    if not pythons:
        pytest.skip(
            "no other Python >= 3.8 here (python3.8 ... python3.15 on PATH, or pyenv versions "
            "under PYENV_ROOT); install one to run the hook under it"
        )
    for python in pythons:
        without = handshake(profile_dir, profile_dir / "bundle.pem", order, profile=False,
                            python=python)  # fmt: skip
        with_profile = handshake(profile_dir, profile_dir / "bundle.pem", order, profile=True,
                                 python=python)  # fmt: skip
        assert with_profile["error"] is None, (python, with_profile)
        assert with_profile["strict"] is False, (python, with_profile)
        if without["strict"]:  # 3.13+ by default; everywhere when the test sets it
            assert "Missing Authority Key Identifier" in without["error"], (python, without)


@pytest.mark.parametrize("order", ["strict-first", "strict-after"])
def test_strict_verification_rejects_the_sidecar_leaf_without_the_profile(
    profile_dir: Path, order: str
) -> None:
    result = handshake(profile_dir, profile_dir / "bundle.pem", order, profile=False)
    assert result["strict"] is True
    assert "Missing Authority Key Identifier" in result["error"], result


@pytest.mark.parametrize("order", ["strict-first", "strict-after"])
def test_the_profile_accepts_the_sidecar_leaf_under_strict_semantics(
    profile_dir: Path, order: str
) -> None:
    result = handshake(profile_dir, profile_dir / "bundle.pem", order, profile=True)
    assert result == {"strict": False, "error": None, "ssl": result["ssl"]}


def test_the_profile_keeps_strict_checks_for_other_trust(profile_dir: Path, tmp_path: Path) -> None:
    other = generate_ca(SandboxEgressArgs(session_id="other"))
    cafile = tmp_path / "other.pem"
    cafile.write_text(other.cert_pem)
    result = handshake(profile_dir, cafile, "strict-first", profile=True)
    assert result["strict"] is True  # only contexts that trust the session CA are relaxed
    assert result["error"]  # and this one does not trust the leaf's issuer at all


def test_the_profile_runs_the_image_sitecustomize_too(profile_dir: Path, tmp_path: Path) -> None:
    theirs = tmp_path / "site"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text("import builtins\nbuiltins.IMAGE_HOOK = 1\n")
    env = dict(os.environ, PYTHONPATH=f"{profile_dir / 'python'}:{theirs}")
    out = subprocess.run(
        [sys.executable, "-c", "import builtins; print(getattr(builtins, 'IMAGE_HOOK', 0))"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert out.stdout.strip() == "1"
    assert out.stderr == ""


def test_the_profile_loads_nothing_but_ssl_and_weakref(profile_dir: Path) -> None:
    # Every Python process of the workspace runs the hook at start-up: it must
    # not make each of them import, say, typing (a few ms a process).
    probe = "import sys; print(' '.join(sorted(sys.modules)))"
    needed = "import base64, encodings.ascii, importlib.machinery, importlib.util, ssl, weakref; "
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    bare = subprocess.run(
        [sys.executable, "-c", needed + probe], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    env["PYTHONPATH"] = str(profile_dir / "python")
    hooked = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "ssl" in hooked  # the hook ran (the session CA is there)
    assert set(hooked) - set(bare) == {"sitecustomize"}


# --- The JVM reads its own trust store, not the PEM bundle ---------------------------


def need_java(*tools: str) -> None:
    """Skip unless the JDK tools are on PATH; with ``CI=true`` fail instead (CI has a JDK)."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        reason = f"not on PATH: {', '.join(missing)} (install a JDK, e.g. openjdk-17-jdk-headless)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.mark.parametrize("trust_bundle", ["session-ca", "public-roots"])
def test_the_java_trust_store_holds_the_bundle_and_is_the_same_bytes_each_time(
    trust_bundle: TrustBundle,
) -> None:
    args = SandboxEgressArgs(session_id="j", trust_bundle=trust_bundle)
    ca, other = generate_ca(args), generate_ca(args)
    data = manifests.secret_binary_data(args, ca.cert_pem)
    # Deterministic: the Secret is immutable, and new bytes would replace it and the pod.
    assert manifests.secret_binary_data(args, ca.cert_pem) == data
    assert manifests.secret_binary_data(args, other.cert_pem) != data
    store = base64.b64decode(data["truststore.p12"])
    pfx = Pfx.load(store)  # the full PKCS#12 schema reads it: a PFX with no MAC
    assert pfx["mac_data"].native is None  # its salt is what made it random
    assert pfx.dump(force=True) == store
    bundle = manifests.bundle_pem(args, ca.cert_pem).encode()
    assert java_trusted(store) == pem_certificates(bundle)
    assert java_trusted(store)[-1] == pem_certificates(ca.cert_pem.encode())[0]
    assert (len(java_trusted(store)) > 100) is (trust_bundle == "public-roots")


def test_a_users_own_java_trust_store_wins() -> None:
    env = compat.compat_env(
        [{"name": "JAVA_TOOL_OPTIONS", "value": "-Djavax.net.ssl.trustStore=/app/mine.jks"}],
        "/etc/condukt",
    )
    assert env[0]["value"] == (
        "-Djavax.net.ssl.trustStore=/app/mine.jks -Djdk.tls.namedGroups=x25519,secp256r1,secp384r1"
    )
    assert compat.compat_env(env, "/etc/condukt") == env


def test_keytool_reads_the_trust_store_with_no_password(profile_dir: Path) -> None:
    need_java("keytool")
    out = subprocess.run(
        ["keytool", "-list", "-keystore", str(profile_dir / "truststore.p12"),
         "-storetype", "PKCS12", "-storepass", ""],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert "Your keystore contains 1 entry" in out.stdout, out.stdout
    assert "condukt-egress-session-ca, " in out.stdout
    assert "trustedCertEntry" in out.stdout


JAVA_PROBE = textwrap.dedent(
    """\
    import java.net.Socket;
    import java.util.List;
    import javax.net.ssl.*;

    public class Probe {
        public static void main(String[] a) throws Exception {
            SSLSocketFactory factory = (SSLSocketFactory) SSLSocketFactory.getDefault();
            Socket plain = new Socket("127.0.0.1", Integer.parseInt(a[1]));
            try (SSLSocket tls = (SSLSocket) factory.createSocket(plain, a[0], 443, true)) {
                SSLParameters params = tls.getSSLParameters();
                params.setEndpointIdentificationAlgorithm("HTTPS");
                params.setServerNames(List.of(new SNIHostName(a[0])));
                tls.setSSLParameters(params);
                try {
                    tls.startHandshake();
                    System.out.println("trusted " + tls.getSession().getProtocol());
                } catch (SSLHandshakeException e) {
                    System.out.println("rejected " + e.getMessage());
                }
            }
        }
    }
    """
)


@pytest.mark.parametrize("profile", [True, False], ids=["profile", "no-profile"])
def test_java_trusts_a_sidecar_leaf_through_the_profile_options(
    profile_dir: Path, tmp_path: Path, profile: bool
) -> None:
    need_java("java")
    leaf, key = sidecar_leaf(
        (profile_dir / "ca.pem").read_text(), (profile_dir / "ca-key.pem").read_text(),
        "api.github.com",
    )  # fmt: skip
    (tmp_path / "leaf.pem").write_bytes(leaf)
    (tmp_path / "leaf-key.pem").write_bytes(key)
    (tmp_path / "Probe.java").write_text(JAVA_PROBE)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf-key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(60)

    def serve() -> None:
        with (
            contextlib.suppress(OSError),
            listener.accept()[0] as conn,
            server.wrap_socket(conn, server_side=True),
        ):
            pass  # the handshake is all the client needs

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    existing = [{"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx64m"}]
    merged = compat.compat_env(existing, str(profile_dir)) if profile else existing
    options = next(e["value"] for e in merged if e["name"] == "JAVA_TOOL_OPTIONS")
    try:
        out = subprocess.run(
            ["java", str(tmp_path / "Probe.java"), "api.github.com",
             str(listener.getsockname()[1])],
            env={**os.environ, "JAVA_TOOL_OPTIONS": options},
            capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
    finally:
        thread.join(60)
        listener.close()
    if profile:
        assert out.stdout.startswith("trusted TLSv1."), out.stdout + out.stderr
    else:  # the JVM's own cacerts: what every Java client met before the trust store
        assert out.stdout.startswith("rejected "), out.stdout + out.stderr
