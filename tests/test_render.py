"""``render``: the component's objects without the engine, serialised for kubectl."""

import base64
import json
import re
from pathlib import Path
from typing import Any

import certifi
import click
import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from condukt_egress.args import SandboxEgressArgs
from condukt_egress.ca import CaMaterial, generate_ca
from condukt_egress.cli import cli
from condukt_egress.cli import render as render_cli
from condukt_egress.errors import ConfigError
from condukt_egress.manifests import (
    CA_FINGERPRINT_ENV,
    SIDECAR_CONTAINER,
    ca_fingerprint,
    secret_name,
    with_secret_name,
)
from condukt_egress.program import CONFIG_KEYS, session_program
from condukt_egress.render import (
    prune_command,
    render_session,
    serialise,
    teardown_commands,
    to_json,
    to_yaml,
)
from condukt_egress.spec import SessionSpec
from tests.k8s_schema import assert_valid
from tests.pulumi_harness import run
from tests.security_properties import (
    assert_network_policy,
    assert_session_secure,
    java_trusted,
    pem_certificates,
)
from tests.transform_monitor import EngineMonitor

POLICY_DOC = {
    "rules": [{"deny": ["*.internal.example.com"]}, {"allow": ["api.github.com", "*.openai.com"]}],
    "default": "deny",
}
CA_FILES = ("ca.pem", "ca-key.pem", "bundle.pem")
KINDS = {
    "kubernetes:core/v1:Secret": ("v1", "Secret"),
    "kubernetes:networking.k8s.io/v1:NetworkPolicy": ("networking.k8s.io/v1", "NetworkPolicy"),
    "kubernetes:core/v1:Pod": ("v1", "Pod"),
}
FULL_CONFIG = {
    "sessionId": "Agent Run 42",
    "namespace": "agents",
    "policy": POLICY_DOC,
    "workspaceImage": "node:22",
    "sidecarImage": "ghcr.io/tuist/condukt-egress:1.11.0",
    "allowPlainHttp": "true",
    "trustBundle": "public-roots",
    "nativeSidecar": "false",
    "caKeyAlgorithm": "rsa-2048",
    "caValidityHours": 48,
    "caEarlyRenewalHours": 6,
    "clusterCidrs": ["203.0.113.0/24", "198.51.100.0/24"],
    "nodeLocalDns": "169.254.20.10",
    "dnsNamespace": "dns",
    "dnsPodLabels": {"k8s-app": "coredns", "tier": "dns"},
    "unproxiedEgress": [
        {"cidr": "10.0.12.7/32", "ports": [5432]},
        {"cidr": "10.0.0.0/24", "ports": [53, 5353], "protocol": "UDP"},
    ],
    "clientCompat": "false",
    "allowRootWorkspace": "true",
    "unsafeSecondaryNetworks": "true",
    "unsafeUnproxiedEgress": "true",  # port 53 above: accepted only with the acknowledgement
    "dnsFilter": "strict",
    "dnsImage": "mirror.example/coredns/coredns:v1.14.6",
    "dnsDecideHosts": ["pypi.org", "**.pythonhosted.org"],
}
REPEATED = {"clusterCidrs", "dnsPodLabels", "unproxiedEgress", "dnsDecideHosts"}
"""Keys given as one flag per entry, named for one entry (``--cluster-cidr``)."""


@pytest.fixture(scope="module")
def ca() -> CaMaterial:
    return generate_ca(SandboxEgressArgs(session_id="Agent Run 42"))


def session(**options: Any) -> SandboxEgressArgs:
    return SandboxEgressArgs(
        session_id="Agent Run 42", namespace="agents", policy=POLICY_DOC, **options
    )


# --- the objects -------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"allow_plain_http": True, "trust_bundle": "public-roots", "native_sidecar": False},
    ],
)
def test_rendered_objects_are_valid_and_secure(ca: CaMaterial, options: dict[str, Any]) -> None:
    args = session(**options)
    secret, policy, pod = render_session(args, ca, "python:3.13-slim")
    assert [o["kind"] for o in (secret, policy, pod)] == ["Secret", "NetworkPolicy", "Pod"]
    for obj in (secret, policy, pod):
        assert_valid(obj)
        assert obj["metadata"]["namespace"] == "agents"
    assert_network_policy(policy, args.names.pod_labels, plain_http=args.allow_plain_http)
    assert_session_secure(pod["spec"])
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    mounted = {v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v}
    assert mounted == {secret["metadata"]["name"]}
    assert secret["stringData"]["ca-key.pem"] == ca.key_pem


def test_a_non_pkcs8_key_is_refused(ca: CaMaterial) -> None:
    sec1 = CaMaterial(ca.cert_pem, ca.key_pem.replace("PRIVATE KEY", "EC PRIVATE KEY"))
    with pytest.raises(ConfigError, match="ca_key_pem: must be a PKCS#8 PEM key"):
        render_session(session(), sec1, "python:3.13-slim")


@pytest.mark.parametrize(
    ("kwargs", "image", "field"),
    [
        ({"session_id": "run-\ud800"}, "python:3.13-slim", "session_id"),
        ({"session_id": "1"}, "python:\udfff", "workspace_image"),
        ({"session_id": "1"}, " ", "workspace_image"),
    ],
)
def test_text_kubernetes_cannot_store_is_refused(
    ca: CaMaterial, kwargs: dict[str, Any], image: str, field: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}: "):
        render_session(SandboxEgressArgs(**kwargs), ca, image)


# --- one source of truth: render == the stack program under mocks -------------


def _flag(key: str) -> str:
    """The render flag of a stack config key: ``sessionId`` -> ``--session-id``."""
    flag = "--" + re.sub(r"[A-Z]", lambda m: "-" + m.group(0).lower(), key)
    plural = ("clusterCidrs", "dnsPodLabels", "dnsDecideHosts")
    return flag.removesuffix("s") if key in plural else flag


def _entry(key: str, value: Any) -> list[str]:
    """The values of a repeated flag, one per entry, in the syntax render documents."""
    if key == "dnsPodLabels":
        return [f"{k}={v}" for k, v in value.items()]
    if key == "unproxiedEgress":
        return [
            f"{u['cidr']}:{','.join(map(str, u['ports']))}"
            + (f"/{u['protocol']}" if "protocol" in u else "")
            for u in value
        ]
    return list(value)


def _flags(config: dict[str, Any], tmp_path: Path) -> list[str]:
    """The render flags for a stack config."""
    argv = ["render"]
    for key, value in config.items():
        flag = _flag(key)
        if key == "policy":
            path = tmp_path / "policy.yaml"
            path.write_text(yaml.safe_dump(value))
            argv += [flag, str(path)]
        elif key in REPEATED:
            for entry in _entry(key, value):
                argv += [flag, entry]
        elif value in ("true", "false"):
            argv.append(flag if value == "true" else flag.replace("--", "--no-", 1))
        else:
            argv += [flag, str(value)]
    return argv


def test_render_has_a_flag_for_every_stack_config_key() -> None:
    params = {opt: param for param in render_cli.render.params for opt in param.opts}
    params |= {opt: param for param in render_cli.render.params for opt in param.secondary_opts}
    # workload is -f/--filename: any number of documents, every workload of them injected.
    assert set(FULL_CONFIG) | {"workload"} == set(CONFIG_KEYS)
    assert params["-f"] is params["--filename"]
    assert params["-f"].multiple
    for key in FULL_CONFIG:
        option = params.get(_flag(key))
        assert isinstance(option, click.Option), f"no render flag for config {key}"
        assert option.multiple is (key in REPEATED), key
    assert set(render_cli.FIELD_FLAGS.values()) <= set(params)


def _declared(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What the program declares, through its transforms as the engine runs them."""
    recorder = run(session_program, config=config, monitor_factory=EngineMonitor)
    objects = {}
    for reg in recorder.registrations:
        if reg.type in KINDS:
            api_version, kind = KINDS[reg.type]
            objects[kind] = {"apiVersion": api_version, "kind": kind, **reg.inputs}
    return objects


def _ca_pem(objects: dict[str, dict[str, Any]]) -> str:
    return str(objects["Secret"]["stringData"]["ca.pem"])


def mounted(pod: dict[str, Any]) -> set[str]:
    return {v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v}


def _ca_of(pod: dict[str, Any], replace: str | None = None) -> Any:
    """The sidecar's CA fingerprint, or (with ``replace``) the pod with it and its Secret set."""
    copy = json.loads(json.dumps(pod))
    if replace is not None:
        copy["spec"] = with_secret_name(copy["spec"], replace)
    spec = copy["spec"]
    for container in spec.get("initContainers", []) + spec["containers"]:
        if container["name"] == SIDECAR_CONTAINER:
            (entry,) = [e for e in container["env"] if e["name"] == CA_FINGERPRINT_ENV]
            if replace is None:
                return entry["value"]
            entry["value"] = replace
    return copy


def _without_ca(secret: dict[str, Any]) -> dict[str, Any]:
    data = secret["stringData"]
    ca = data["ca.pem"]
    x509.load_pem_x509_certificate(ca.encode())
    bundle = data.get("bundle.pem", ca)
    assert bundle.endswith(ca)
    rest = {k: v for k, v in data.items() if k not in CA_FILES}
    # The JVM trust store differs with the CA: the same keys, the bundle's certificates.
    binary = secret.get("data", {})
    for store in binary.values():
        assert java_trusted(base64.b64decode(store)) == pem_certificates(bundle.encode())
    return {
        **secret,
        "metadata": {**secret["metadata"], "name": "<content hash>"},
        "stringData": rest,
        "data": sorted(binary),
        "bundle_prefix": bundle[: -len(ca)],
    }


@pytest.mark.parametrize("config", [{"sessionId": "sess-1"}, FULL_CONFIG], ids=["defaults", "all"])
def test_render_declares_what_the_component_declares(
    config: dict[str, Any], tmp_path: Path
) -> None:
    result = CliRunner().invoke(cli, _flags(config, tmp_path))
    assert result.exit_code == 0, result.output
    rendered = {o["kind"]: o for o in yaml.safe_load_all(result.stdout)}
    declared = _declared(config)
    assert set(rendered) == set(declared) == {"Secret", "NetworkPolicy", "Pod"}
    assert rendered["NetworkPolicy"] == declared["NetworkPolicy"]
    # Each pod carries the fingerprint of its own CA, and nothing else differs.
    assert _ca_of(rendered["Pod"]) == ca_fingerprint(rendered["Secret"]["stringData"]["ca.pem"])
    assert _ca_of(declared["Pod"]) == ca_fingerprint(declared["Secret"]["stringData"]["ca.pem"])
    assert _ca_of(rendered["Pod"]) != _ca_of(declared["Pod"])
    assert _ca_of(rendered["Pod"], "x") == _ca_of(declared["Pod"], "x")
    # And each Secret is named after its own content, which its pod mounts.
    for objects in (rendered, declared):
        name = objects["Secret"]["metadata"]["name"]
        assert name == secret_name(SessionSpec.from_config(config).args, _ca_pem(objects))
        assert mounted(objects["Pod"]) == {name}
    assert _without_ca(rendered["Secret"]) == _without_ca(declared["Secret"])
    public_roots = config.get("trustBundle") == "public-roots"
    prefix = _without_ca(rendered["Secret"])["bundle_prefix"]
    roots = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", prefix, re.S)
    certifi_roots = re.findall(
        r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", certifi.contents(), re.S
    )
    assert (roots == certifi_roots) is public_roots
    ca_cert = x509.load_pem_x509_certificate(rendered["Secret"]["stringData"]["ca.pem"].encode())
    hours = (ca_cert.not_valid_after_utc - ca_cert.not_valid_before_utc).total_seconds() / 3600
    assert round(hours) == int(config.get("caValidityHours", 24))
    key_type = rsa.RSAPublicKey if "caKeyAlgorithm" in config else ec.EllipticCurvePublicKey
    assert isinstance(ca_cert.public_key(), key_type)


# --- serialisation -----------------------------------------------------------


class Yaml11Loader(yaml.SafeLoader):
    """Reads scalars like kubectl's YAML 1.1 parser: a bare y/n is a boolean."""

    bool_values = {**yaml.SafeLoader.bool_values, "y": True, "n": False}  # noqa: RUF012


Yaml11Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN")
)

TRICKY = ["y", "N", "yes", "off", "null", "~", "1:20", "017", "0x1F", "1e3", ".inf", "- a", "#"]


@pytest.mark.parametrize("text", TRICKY)
def test_yaml_reads_back_unchanged_under_yaml_1_1(ca: CaMaterial, text: str) -> None:
    namespace = text if re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", text) else "agents"
    args = SandboxEgressArgs(session_id=text, namespace=namespace, policy=POLICY_DOC)
    objects = render_session(args, ca, "python:3.13-slim")
    stream = to_yaml(objects)
    assert list(yaml.load_all(stream, Loader=Yaml11Loader)) == objects
    assert list(yaml.safe_load_all(stream)) == objects


def test_yaml_is_readable_and_warns_about_the_key(ca: CaMaterial) -> None:
    stream = to_yaml(render_session(session(), ca, "python:3.13-slim"))
    assert stream.startswith("# ")
    assert "PRIVATE KEY" in stream.split("---", 1)[0]
    assert "  ca-key.pem: |\n    -----BEGIN PRIVATE KEY-----\n" in stream
    assert len(re.findall(r"^---$", stream, re.MULTILINE)) == 3  # one document per object


def test_json_is_a_list_of_the_objects(ca: CaMaterial) -> None:
    objects = render_session(session(trust_bundle="public-roots"), ca, "python:3.13-slim")
    document = json.loads(to_json(objects))
    assert (document["apiVersion"], document["kind"]) == ("v1", "List")
    assert document["items"] == objects
    assert serialise(objects, "json") == to_json(objects)


def test_unknown_format_is_refused(ca: CaMaterial) -> None:
    objects = render_session(session(), ca, "python:3.13-slim")
    with pytest.raises(ConfigError, match=r"^format: must be one of yaml, json, got 'toml'"):
        serialise(objects, "toml")  # type: ignore[arg-type]


# --- teardown (security round 2) ------------------------------------------------


def _kubectl_model(
    objects: list[dict[str, Any]], commands: list[str], *, sigterm_exits: bool
) -> list[str]:
    """Run kubectl delete commands against a model cluster; return the moments the pod
    ran without its NetworkPolicy.

    The model follows kubectl: ``delete -f`` issues every delete in file order and only
    then waits; a deleted Pod keeps running until its workspace exits (at once if it
    handles SIGTERM, else after the grace period); ``--wait=true`` on a single object
    returns once it is gone.
    """
    present = {o["kind"] for o in objects}
    pod_running = True
    exposed: list[str] = []

    def check(moment: str) -> None:
        if pod_running and "NetworkPolicy" not in present:
            exposed.append(moment)

    for command in commands:
        words = command.split()
        assert words[:2] == ["kubectl", "delete"], command
        if words[2] == "pod":
            present.discard("Pod")
            assert "--wait=true" in words
            pod_running = False  # waited until gone
            check(command)
            continue
        if words[2] != "-f":  # kinds by label, in the order given, e.g. networkpolicy,secret
            for plural in words[2].split(","):
                kind = next(o["kind"] for o in objects if o["kind"].lower() == plural)
                present.discard(kind)
                check(f"{command}: after {kind}")
            continue
        for obj in objects:
            present.discard(obj["kind"])
            if obj["kind"] == "Pod" and sigterm_exits:
                pod_running = False
            check(f"{command}: after {obj['kind']}")
        pod_running = False  # kubectl waits at the end
    return exposed


def test_the_prune_command_keeps_the_rendered_secret_and_selects_the_session() -> None:
    args = SandboxEgressArgs(session_id="run-42", namespace="agents")
    objects = render_session(args, generate_ca(args), "python:3.13-slim")
    secret = objects[0]["metadata"]["name"]
    assert args.names.owns_secret(secret)
    assert prune_command(objects) == (
        "kubectl delete secret --namespace agents -l app.kubernetes.io/managed-by=condukt-egress,"
        f"{args.names.label_key}={args.names.label_value} "
        f"--field-selector metadata.name!={secret}"
    )
    result = CliRunner().invoke(cli, ["render", "--session-id", "run-42", "-n", "agents"])
    rendered = list(yaml.safe_load_all(result.stdout))
    assert f"prune the older Secrets: {prune_command(rendered)}" in result.stderr


def test_the_documented_teardown_never_leaves_the_pod_without_its_network_policy() -> None:
    # Round 2: `kubectl delete -f` of a rendering deleted Secret, NetworkPolicy, then the
    # Pod, whose `sleep infinity` ignored SIGTERM: 5 s with every port open.
    args = SandboxEgressArgs(session_id="run-42", namespace="agents")
    objects = render_session(args, generate_ca(args), "python:3.13-slim")
    naive = ["kubectl delete -f FILE"]
    assert _kubectl_model(objects, naive, sigterm_exits=False), "the model must see the hole"
    documented = teardown_commands(objects)
    selector = f"{args.names.label_key}={args.names.label_value}"
    assert documented == [
        f"kubectl delete pod --namespace agents -l {selector} --wait=true",
        f"kubectl delete networkpolicy,secret --namespace agents -l {selector} --ignore-not-found",
    ]
    # The label selects the Pod, the Secret and the NetworkPolicy, and nothing needs a file.
    for obj in objects:
        assert obj["metadata"]["labels"][args.names.label_key] == args.names.label_value
    assert _kubectl_model(objects, documented, sigterm_exits=False) == []
    # The wrong order (the NetworkPolicy before the pods) is seen by the model.
    assert _kubectl_model(objects, documented[::-1], sigterm_exits=False)
    # The YAML header, the one place a file carries instructions, says the same.
    header = to_yaml(objects).split("\n---\n", 1)[0]
    for command in documented:
        assert f"#   {command}\n" in header + "\n"


def test_render_command_prints_the_teardown_on_stderr(tmp_path: Path) -> None:
    out = tmp_path / "session.yaml"
    result = CliRunner().invoke(
        cli,
        ["render", "--session-id", "run-42", "--namespace", "agents", "--output-file", str(out)],
    )
    assert result.exit_code == 0, result.output
    names = SandboxEgressArgs(session_id="run-42").names
    selector = f"{names.label_key}={names.label_value}"
    lines = result.stderr.splitlines()
    # stderr ends with the next steps: apply, watch, prune after a new rendering,
    # tear down (pods first, by label).
    assert lines[-4] == f"note: next: apply: kubectl apply --server-side -f {out}"
    assert lines[-3] == "note: next: watch: condukt-egress events -n agents --session-id run-42"
    assert "prune the older Secrets: kubectl delete secret " in lines[-2]
    assert lines[-1].endswith(
        f"kubectl delete pod --namespace agents -l {selector} --wait=true && "
        f"kubectl delete networkpolicy,secret --namespace agents -l {selector} --ignore-not-found"
    )


def test_the_idle_workspace_exits_on_sigterm_as_pid_1(tmp_path: Path) -> None:
    # PID 1 of a container ignores signals it installs no handler for: `sleep infinity`
    # outlived every delete by the whole grace period. Run the command as PID 1 of a
    # new PID namespace, as in a container, and send it SIGTERM.
    import os  # noqa: PLC0415
    import shutil  # noqa: PLC0415
    import signal  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import time  # noqa: PLC0415

    unshare = shutil.which("unshare")
    if (
        unshare is None
        or subprocess.run(
            [unshare, "--pid", "--fork", "true"], capture_output=True, check=False
        ).returncode
    ):
        pytest.skip("needs unshare(1) with PID namespaces (root or user namespaces)")
    args = SandboxEgressArgs(session_id="run-42")
    pod = render_session(args, generate_ca(args), "python:3.13-slim")[2]
    command = next(c for c in pod["spec"]["containers"] if c["name"] == "workspace")["command"]
    proc = subprocess.Popen([unshare, "--pid", "--fork", "--kill-child", *command])
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        deadline = time.monotonic() + 5
        while not children.read_text().split() and time.monotonic() < deadline:
            time.sleep(0.02)
        init = int(children.read_text().split()[0])
        time.sleep(0.5)  # let the shell install its trap
        os.kill(init, signal.SIGTERM)
        assert proc.wait(timeout=2) == 0
    finally:
        proc.kill()
        proc.wait()
