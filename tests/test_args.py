import dataclasses
import inspect
import warnings
from typing import Any

import pytest

from condukt_egress import checks
from condukt_egress.args import SandboxEgressArgs, UnproxiedEgress
from condukt_egress.errors import ConfigError, PolicyError
from condukt_egress.options import options_of
from condukt_egress.policy import DENY_ALL, EgressPolicy


def test_defaults_are_safe() -> None:
    args = SandboxEgressArgs(session_id="42")
    assert args.egress_policy == DENY_ALL
    assert args.allow_plain_http is False
    assert args.native_sidecar is True
    assert args.trust_bundle == "session-ca"
    assert args.ca_key_algorithm == "ecdsa-p256"
    assert args.unsafe_allowed_capabilities == ()
    assert args.dns_filter == "policy"  # the filtering resolver is on


def test_policy_document_form_is_accepted() -> None:
    args = SandboxEgressArgs(
        session_id="42", policy={"rules": [{"allow": ["API.github.com"]}], "default": "deny"}
    )
    assert isinstance(args.policy, EgressPolicy)
    assert args.egress_policy.evaluate("api.github.com").action == "allow"


def test_policy_errors_name_the_policy_field() -> None:
    with pytest.raises(PolicyError, match=r"^policy\.rules\[0\]"):
        SandboxEgressArgs(session_id="42", policy={"rules": [{"allow": ["https://x.com"]}]})


def test_integral_floats_from_stack_config_are_accepted() -> None:
    args = SandboxEgressArgs(session_id="42", proxy_port=15001.0, ca_validity_hours=48.0)  # type: ignore[arg-type]
    assert args.proxy_port == 15001
    assert isinstance(args.proxy_port, int)
    assert args.ca_validity_hours == 48


@pytest.mark.parametrize(
    ("options", "field", "fix"),
    [
        ({"namespace": "Agents"}, "namespace", "lower-case"),
        ({"namespace": ""}, "namespace", "at most 63"),
        ({"sidecar_image": "ghcr.io/x y"}, "sidecar_image", "without spaces"),
        ({"allow_plain_http": "yes"}, "allow_plain_http", "true or false"),
        ({"trust_bundle": "public_roots"}, "trust_bundle", "did you mean 'public-roots'"),
        ({"ca_key_algorithm": "ed25519"}, "ca_key_algorithm", "'ecdsa-p256'"),
        ({"proxy_port": 0}, "proxy_port", "from 1 to 65535"),
        ({"proxy_port": 443}, "proxy_port", "redirected"),
        ({"control_port": 15001}, "control_port", "its own port"),
        ({"proxy_port": True}, "proxy_port", "from 1 to 65535"),
        ({"sidecar_uid": 0}, "sidecar_uid", "non-root"),
        ({"sidecar_gid": 1.5}, "sidecar_gid", "non-root"),
        ({"node_local_dns": "fd00::10"}, "node_local_dns", "no IPv6"),
        ({"node_local_dns": "nodelocal"}, "node_local_dns", "IPv4 address"),
        ({"cluster_cidrs": ["fd00::/8"]}, "cluster_cidrs", "no IPv6"),
        ({"cluster_cidrs": ["10.96.0.1/12"]}, "cluster_cidrs", "IPv4 CIDR"),
        ({"cluster_cidrs": "10.96.0.0/12"}, "cluster_cidrs", "must be a list"),
        ({"ca_validity_hours": 0}, "ca_validity_hours", "from 1 to 8760"),
        ({"dns_pod_labels": {}}, "dns_pod_labels", "non-empty"),
        ({"unsafe_allowed_capabilities": ["net raw"]}, "unsafe_allowed_capabilities", "NET_RAW"),
        ({"unproxied_egress": [{"cidr": "10.0.0.5/32"}]}, "unproxied_egress", "'ports'"),
        (
            {"unproxied_egress": [{"cidr": "10.0.0.5/32", "ports": []}]},
            "unproxied_egress.ports",
            "ports=[5432]",
        ),
        (
            {"unproxied_egress": [{"cidr": "10.0.0.5/32", "ports": [1], "proto": "TCP"}]},
            "unproxied_egress",
            "accepted keys",
        ),
        ({"sidecar_resources": {"request": {}}}, "sidecar_resources", "'requests' and 'limits'"),
        ({"policy": ["allow"]}, "policy", "document form"),
        ({"dns_filter": "on"}, "dns_filter", "'policy', 'strict', 'off'"),
        ({"dns_image": "registry.k8s.io/coredns coredns"}, "dns_image", "without spaces"),
        (
            {"dns_filter": "strict", "dns_decide_hosts": ["https://pypi.org/simple"]},
            "dns_decide_hosts[0]",
            "write the host name only: 'pypi.org'",
        ),
        ({"dns_filter": "strict", "dns_decide_hosts": "pypi.org"}, "dns_decide_hosts", "a list"),
        ({"dns_decide_hosts": ["pypi.org"]}, "dns_decide_hosts", "set dns_filter to 'strict'"),
    ],
)
def test_bad_options_name_the_field_and_the_fix(
    options: dict[str, Any], field: str, fix: str
) -> None:
    with pytest.raises(ConfigError) as info:
        SandboxEgressArgs(session_id="42", **options)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert fix in str(info.value)


def test_unproxied_egress_is_normalised() -> None:
    args = SandboxEgressArgs(
        session_id="42", unproxied_egress=[{"cidr": "10.0.0.5/32", "ports": [5432.0]}]
    )
    assert args.unproxied_egress == (UnproxiedEgress("10.0.0.5/32", (5432,), "TCP"),)


def test_capabilities_are_normalised() -> None:
    args = SandboxEgressArgs(session_id="42", unsafe_allowed_capabilities=["cap_net_raw"])
    assert args.unsafe_allowed_capabilities == ("NET_RAW",)


def test_image_is_the_deprecated_name_of_sidecar_image() -> None:
    with pytest.warns(DeprecationWarning, match="sidecar_image"):
        args = SandboxEgressArgs(session_id="42", image="ghcr.io/acme/egress:2")
    assert args.sidecar_image == "ghcr.io/acme/egress:2"
    with pytest.warns(DeprecationWarning, match="sidecar_image"):
        assert args.image == "ghcr.io/acme/egress:2"  # type: ignore[attr-defined]
    with (
        pytest.warns(DeprecationWarning, match="sidecar_image"),
        pytest.raises(ConfigError, match="give sidecar_image"),
    ):
        SandboxEgressArgs(session_id="42", image="a:1", sidecar_image="b:2")


def test_image_is_a_keyword_argument_type_checkers_see_and_replace_does_not_revive() -> None:
    # Issue 25 item 3: declared (an InitVar), not monkeypatched into __init__.
    parameter = inspect.signature(SandboxEgressArgs).parameters["image"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
    assert parameter.default is None
    args = SandboxEgressArgs(session_id="42", sidecar_image="a:1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DeprecationWarning: image= was not used
        copy = dataclasses.replace(args, namespace="agents")
    assert (copy.sidecar_image, copy.namespace) == ("a:1", "agents")


def test_every_field_carries_its_check_but_the_cross_field_one() -> None:
    # Issue 25 item 3: the declaration carries the check; __post_init__ loops.
    unchecked = [
        f.name
        for f in dataclasses.fields(SandboxEgressArgs)
        if "condukt_egress.check" not in f.metadata
    ]
    assert unchecked == ["ca_early_renewal_hours"]  # checked against ca_validity_hours
    registry = {o.name: o for o in options_of(SandboxEgressArgs)}
    assert registry["trust_bundle"].check is not None  # derived from its choices
    with pytest.raises(ConfigError, match=r"^trust_bundle: must be one of 'session-ca'"):
        registry["trust_bundle"].check("trust_bundle", "session_ca")


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (checks.sidecar_port, 443, "x: must not be 443: TCP 80 and 443 are redirected"),
        (checks.port, 0, "x: must be a port number from 1 to 65535, got 0"),
        (checks.user_id, 0, "x: must be a non-root id from 1 to 2147483647, got 0"),
        (checks.list_of(checks.capability), "NET_RAW", "x: must be a list, got 'NET_RAW'"),
        (checks.labels, {"a b": "c"}, "x['a b']: is not a valid Kubernetes label key"),
        (checks.boolean, "true", "x: must be true or false, got 'true'"),
        (checks.optional(checks.ipv4_address), "::1", "x: must be IPv4, got '::1'"),
    ],
)
def test_checks_name_the_field_they_are_given(check: Any, value: Any, message: str) -> None:
    # The guard's args reuse these checks under their own field names.
    with pytest.raises(ConfigError) as info:
        check("x", value)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("key", ["a: b", "x.y", "rules[0]: allow", ": "])
def test_a_policy_error_keeps_the_key_whole(key: str) -> None:
    """The field is composed from parts, never cut out of a message (it held ': ' before)."""
    with pytest.raises(PolicyError) as info:
        SandboxEgressArgs(session_id="1", policy={key: 1})
    assert info.value.field.startswith("policy.")
    assert repr(key) in info.value.field
    assert str(info.value) == f"{info.value.field}: {info.value.message}"
    assert "unknown key" in info.value.message
    assert info.value.message.count(repr(key)) <= 1


# -- security round 2: unsafe options refused unless acknowledged ------------------

UNSAFE_OPTIONS = [
    ({"unproxied_egress": [{"cidr": "0.0.0.0/0", "ports": [53], "protocol": "UDP"}]},
     "unproxied_egress[0].cidr", "most of the internet"),
    ({"unproxied_egress": [{"cidr": "0.0.0.0/0", "ports": [443], "protocol": "UDP"}]},
     "unproxied_egress[0].cidr", "most of the internet"),
    ({"unproxied_egress": [{"cidr": "64.0.0.0/3", "ports": [8080]}]},
     "unproxied_egress[0].cidr", "most of the internet"),
    ({"unproxied_egress": [{"cidr": "169.254.169.254/32", "ports": [80]}]},
     "unproxied_egress[0].cidr", "overlaps 169.254.0.0/16"),
    ({"unproxied_egress": [{"cidr": "100.100.100.200/32", "ports": [80]}]},
     "unproxied_egress[0].cidr", "overlaps 100.100.100.200/32"),
    ({"unproxied_egress": [{"cidr": "10.0.0.5/32", "ports": [5432]},
                           {"cidr": "127.0.0.1/32", "ports": [6379]}]},
     "unproxied_egress[1].cidr", "overlaps 127.0.0.0/8"),
    ({"unproxied_egress": [{"cidr": "10.0.0.10/32", "ports": [53], "protocol": "UDP"}]},
     "unproxied_egress[0].ports", "contains 53: DNS to a resolver"),
    ({"unproxied_egress": [{"cidr": "10.0.0.10/32", "ports": [8443, 443], "protocol": "UDP"}]},
     "unproxied_egress[0].ports", "contains 443: UDP 443 is QUIC"),
    ({"node_local_dns": "8.8.8.8"}, "node_local_dns", "not a private or link-local address"),
    ({"node_local_dns": "169.254.169.254"}, "node_local_dns", "a cloud metadata service"),
]  # fmt: skip


@pytest.mark.parametrize(("options", "field", "needle"), UNSAFE_OPTIONS)
def test_unsafe_destinations_are_refused_unless_acknowledged(
    options: dict[str, Any], field: str, needle: str
) -> None:
    # Round 2: each of these passed silently.
    with pytest.raises(ConfigError) as info:
        SandboxEgressArgs(session_id="42", **options)
    assert info.value.field == field
    assert needle in info.value.message
    assert "unsafe_unproxied_egress=True" in info.value.message
    args = SandboxEgressArgs(session_id="42", unsafe_unproxied_egress=True, **options)
    assert args.unsafe_unproxied_egress is True


@pytest.mark.parametrize(
    "options",
    [
        {"unproxied_egress": [{"cidr": "10.0.12.7/32", "ports": [5432]}]},
        {"unproxied_egress": [{"cidr": "203.0.113.0/24", "ports": [5432, 6379]}]},
        {"unproxied_egress": [{"cidr": "10.0.0.0/8", "ports": [8125], "protocol": "UDP"}]},
        {"node_local_dns": "169.254.20.10"},
        {"node_local_dns": "10.96.0.10"},
    ],
)
def test_ordinary_unproxied_destinations_need_no_acknowledgement(options: dict[str, Any]) -> None:
    SandboxEgressArgs(session_id="42", **options)


@pytest.mark.parametrize(
    ("resources", "field", "needle"),
    [
        ({}, "sidecar_resources.limits.memory", "is missing"),
        ({"requests": {"cpu": "10m", "memory": "16Mi"}}, "sidecar_resources.limits.memory",
         "is missing"),
        ({"limits": {"cpu": "1"}}, "sidecar_resources.limits.memory", "is missing"),
        ({"limits": {"cpu": "1", "memory": "lots"}}, "sidecar_resources.limits.memory",
         "'lots' is not a Kubernetes quantity (non-negative, e.g. '256Mi')"),
        ({"limits": {"cpu": "1", "memory": "-1Gi"}}, "sidecar_resources.limits.memory",
         "non-negative"),
        ({"limits": {"cpu": "1e99999999", "memory": "1Gi"}}, "sidecar_resources.limits.cpu",
         "not a Kubernetes quantity"),
        ({"limits": {"cpu": "1", "memory": "1Gi", "gpu": "1"}}, "sidecar_resources.limits.gpu",
         "is not a resource the sidecar uses"),
        ({"requests": {"cpu": "2"}, "limits": {"cpu": "1", "memory": "1Gi"}},
         "sidecar_resources.requests.cpu", "above the limit '1'"),
    ],
)  # fmt: skip
def test_sidecar_resources_are_checked_as_the_api_server_would(
    resources: dict[str, Any], field: str, needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        SandboxEgressArgs(session_id="42", sidecar_resources=resources)
    assert info.value.field == field
    assert needle in info.value.message


def test_numeric_quantities_from_stack_config_are_accepted() -> None:
    args = SandboxEgressArgs(
        session_id="42",
        sidecar_resources={"limits": {"cpu": 1, "memory": "256Mi"}},  # type: ignore[dict-item]
    )
    assert args.sidecar_resources == {"limits": {"cpu": "1", "memory": "256Mi"}}


@pytest.mark.parametrize(
    ("key", "needle"),
    [
        ("Example.com/app", "bad prefix"),
        ("a/b/app", "bad prefix"),
        ("/app", "bad prefix"),
        ("example.com/", "bad name part"),
        ("x" * 64, "bad name part"),
        ("-app", "bad name part"),
    ],
)
def test_label_keys_the_api_server_rejects_are_refused(key: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        SandboxEgressArgs(session_id="42", dns_pod_labels={key: "dns"})
    assert info.value.field == f"dns_pod_labels[{key!r}]"
    assert needle in info.value.message
    SandboxEgressArgs(session_id="42", dns_pod_labels={"k8s.example.com/app": "dns"})


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"ca_validity_hours": 10**5000}, "ca_validity_hours"),
        ({"proxy_port": -(10**5000)}, "proxy_port"),
        ({"sidecar_uid": 10**4400}, "sidecar_uid"),
        ({"unproxied_egress": [{"cidr": "10.0.0.1/32", "ports": [10**5000]}]},
         "unproxied_egress.ports"),
        ({"namespace": "X" * 1_000_000}, "namespace"),
    ],
)  # fmt: skip
def test_huge_values_give_our_error_with_a_short_message(
    options: dict[str, Any], field: str
) -> None:
    # Round 2: integers past Python's 4,300-digit limit raised a bare ValueError from repr().
    with pytest.raises(ConfigError) as info:
        SandboxEgressArgs(session_id="42", **options)
    assert info.value.field == field
    assert len(str(info.value)) < 300
