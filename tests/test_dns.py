"""The filtering resolver's config, container and redirect rules (condukt_egress.dns)."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from condukt_egress import dns
from condukt_egress.errors import ConfigError
from condukt_egress.policy import DENY_ALL, EgressPolicy, allow, decide, deny
from tests import corefile_model
from tests.test_policy_fuzz import pattern_and_matching_host, policies, valid_patterns

PLAIN = frozenset(string.ascii_lowercase + string.digits + "-_.")


def presented(host: str) -> str:
    """``host`` as CoreDNS's ``name()`` shows it: ASCII lower-cased, odd bytes escaped, a dot."""
    out = []
    for char in host:
        lower = char.lower() if char.isascii() else char
        if lower in PLAIN:
            out.append(lower)
        elif char.isascii() and char.isprintable() and char not in ' ."();@\\':
            out.append(char)  # printable ASCII such as '*' stays raw
        else:
            out.extend(f"\\{byte:03d}" for byte in char.encode())
    return "".join(out) + "."


def may_resolve(
    policy: EgressPolicy, host: str, mode: dns.DnsFilter = "policy", listed: tuple[str, ...] = ()
) -> bool:
    """The documented rule: a plain host name the policy could allow (strict: listed decides)."""
    if not all((char.lower() if char.isascii() else char) in PLAIN for char in host):
        return False
    verdict = policy.evaluate(host)
    if verdict.action == "decide":
        return mode == "policy" or any(
            EgressPolicy(rules=[allow(p)]).evaluate(host).action == "allow" for p in listed
        )
    return verdict.action == "allow"


# Labels that often meet the patterns of tests.test_policy_fuzz, plus odd characters.
label_text = st.text(
    st.sampled_from(["a", "b", "A", "-", "_", "0", "x", "*", " ", "\\", "é"]),
    min_size=1,
    max_size=5,
)
hosts = st.lists(label_text, min_size=1, max_size=5).map(
    ".".join
) | pattern_and_matching_host().map(lambda pair: pair[1]).filter(
    lambda host: "" not in host.split(".")
)  # DNS has no empty labels


@st.composite
def hosts_near(draw: st.DrawFn, patterns: list[str]) -> str:
    """A host built from one of ``patterns`` (so rules meet it), or any host."""
    if not patterns or draw(st.booleans()):
        return draw(hosts)
    pattern = draw(st.sampled_from(patterns))
    out = []
    for index, piece in enumerate(re.split(r"(\*\*|\*)", pattern)):
        if index % 2 == 0:
            out.append("".join(c.upper() if draw(st.booleans()) else c for c in piece))
        else:
            chars = "ab.x" if piece == "**" else "ab-x_"
            out.append(draw(st.text(st.sampled_from(chars), min_size=1, max_size=4)))
    return "".join(out)


@st.composite
def policy_and_host(draw: st.DrawFn) -> tuple[EgressPolicy, str]:
    policy = draw(policies())
    host = draw(hosts_near([p for rule in policy.rules for p in rule.hosts]))
    return policy, host


@settings(max_examples=settings().max_examples * 10)
@given(policy_and_host())
def test_forwards_exactly_what_the_policy_could_allow(pair: tuple[EgressPolicy, str]) -> None:
    policy, host = pair
    if "" in host.split("."):
        return  # no such DNS name
    resolver = corefile_model.read(dns.corefile(policy))
    assert resolver.forwards(presented(host)) == may_resolve(policy, host)


@settings(max_examples=settings().max_examples * 5)
@given(policy_and_host(), st.lists(valid_patterns, max_size=3))
def test_strict_mode_forwards_decide_names_only_when_listed(
    pair: tuple[EgressPolicy, str], listed: list[str]
) -> None:
    policy, host = pair
    if "" in host.split("."):
        return  # no such DNS name
    text = dns.corefile(policy, mode="strict", decide_hosts=listed)
    resolver = corefile_model.read(text)
    assert resolver.forwards(presented(host)) == may_resolve(policy, host, "strict", tuple(listed))


@given(pattern_and_matching_host())
def test_an_allowed_name_resolves_in_any_case(pair: tuple[str, str]) -> None:
    pattern, host = pair
    resolver = corefile_model.read(dns.corefile(EgressPolicy(rules=[allow(pattern)])))
    if "" not in host.split("."):
        assert resolver.forwards(presented(host))


@pytest.mark.parametrize(
    ("policy", "forwarded", "refused"),
    [
        (DENY_ALL, [], ["api.github.com", "secret-123.attacker.example"]),
        (
            EgressPolicy(rules=[allow("api.github.com", "*.openai.com")]),
            ["api.github.com", "API.GitHub.com", "chat.openai.com"],
            ["openai.com", "a.b.openai.com", "github.com", "x.api.github.com", "secret.attacker"],
        ),
        (
            EgressPolicy(rules=[deny("*.internal.example.com"), allow("**.example.com")]),
            ["a.example.com", "a.b.example.com", "internal.example.com"],
            ["db.internal.example.com", "example.com"],
        ),
        (
            EgressPolicy(rules=[deny("**.attacker.example")], default="allow"),
            ["anything.example", "attacker.example"],
            ["secret-123.attacker.example", "a\\.b.example"],
        ),
        (
            EgressPolicy(rules=[deny("evil.example"), decide()]),
            ["anything.example", "secret-123.attacker.example"],
            ["evil.example"],
        ),
        (EgressPolicy(rules=[allow("api-*.example.com")]), ["api-eu.example.com"], ["api-.x.com"]),
    ],
)
def test_examples(policy: EgressPolicy, forwarded: list[str], refused: list[str]) -> None:
    resolver = corefile_model.read(dns.corefile(policy))
    for host in forwarded:
        assert resolver.forwards(presented(host)), host
    for host in refused:
        assert not resolver.forwards(presented(host)), host


def test_a_policy_that_allows_nothing_has_no_forwarding_block() -> None:
    text = dns.corefile(DENY_ALL)
    assert "forward" not in text
    assert "view" not in text
    assert "rcode NXDOMAIN" in text


def test_strict_mode_without_listed_names_resolves_only_allow_rules() -> None:
    policy = EgressPolicy(rules=[allow("api.github.com"), decide()])
    resolver = corefile_model.read(dns.corefile(policy, mode="strict"))
    assert resolver.forwards("api.github.com.")
    assert not resolver.forwards("pypi.org.")
    resolver = corefile_model.read(dns.corefile(policy, mode="strict", decide_hosts=["*.org"]))
    assert resolver.forwards("pypi.org.")


def test_forwarded_names_get_no_ipv6_address() -> None:
    text = dns.corefile(EgressPolicy(rules=[allow("api.github.com")]))
    forwarding = text.split("\n}\n")[0]
    assert "template IN AAAA {\n        rcode NOERROR\n    }" in forwarding


def test_the_corefile_holds_nothing_a_lexer_would_reinterpret() -> None:
    policy = EgressPolicy(rules=[deny("**.a-b_c.example"), allow("*", "x*.y", "**"), decide()])
    for line in dns.corefile(policy).splitlines()[1:]:  # the header comment aside
        assert "#" not in line
        assert "\\" not in line
        assert "{$" not in line
        if "expr" in line:
            assert '"' not in line
            assert "{" not in line
            assert "}" not in line
            assert "  " not in line.strip()  # the lexer re-joins words with one space


@pytest.mark.parametrize("mode", ["off", "Policy", "", None])
def test_bad_modes_name_the_option_and_the_choices(mode: object) -> None:
    with pytest.raises(ConfigError, match=r"dns_filter.*use (one of policy, strict|policy)"):
        dns.corefile(DENY_ALL, mode=mode)  # type: ignore[arg-type]


def test_bad_decide_hosts_name_the_option_and_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"dns_decide_hosts.*URL.*'pypi.org'"):
        dns.corefile(DENY_ALL, mode="strict", decide_hosts=["https://pypi.org/simple"])


def test_resolver_container_is_hardened_and_unprivileged() -> None:
    container = dns.resolver_container()
    context = container["securityContext"]
    assert context["runAsUser"] == dns.DNS_UID
    assert dns.DNS_UID not in (0, 1337, 65532)
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert dns.DNS_PORT > 1024  # no NET_BIND_SERVICE
    assert container["restartPolicy"] == "Always"
    assert "restartPolicy" not in dns.resolver_container(native=False)
    assert re.fullmatch(
        r"registry\.k8s\.io/coredns/coredns:v[\d.]+@sha256:[0-9a-f]{64}", dns.DNS_IMAGE
    )
    assert container["startupProbe"]["httpGet"]["port"] == dns.DNS_READY_PORT
    assert f"ready :{dns.DNS_READY_PORT}" in dns.corefile(DENY_ALL)


def test_redirect_rules_exempt_only_the_resolver() -> None:
    rules = dns.redirect_rules()
    lines = rules.splitlines()
    assert lines[0] == "*nat"
    assert lines[-1] == "COMMIT"
    for protocol, line in zip(("udp", "tcp"), lines[1:3], strict=True):
        assert f"-p {protocol} --dport 53 " in line
        assert f"-m owner ! --uid-owner {dns.DNS_UID} " in line
        assert line.endswith(f"-j REDIRECT --to-ports {dns.DNS_PORT}")
        assert line.startswith("-I OUTPUT ")  # ahead of the sidecar's loopback exemption
    six = dns.redirect_rules_ipv6()
    assert f"-p udp --dport 53 -m owner ! --uid-owner {dns.DNS_UID} -j REJECT" in six
    assert f"-p tcp --dport 53 -m owner ! --uid-owner {dns.DNS_UID} -j REJECT" in six
