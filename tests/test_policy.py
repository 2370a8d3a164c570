"""Unit tests of the egress policy: wire form, matching, evaluation, validation, files."""

from __future__ import annotations

import ast
import dataclasses
import doctest
import json
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from condukt_egress import host_patterns, policy_files
from condukt_egress import policy as policy_module
from condukt_egress.errors import PolicyError
from condukt_egress.policy import (
    DENY_ALL,
    MAX_BODY_CAPTURE,
    MAX_DECIDE_TIMEOUT_MS,
    MAX_HOST_PATTERNS,
    MAX_POLICY_FILE_BYTES,
    MAX_REDACT_ENTRIES,
    MAX_REDACT_LENGTH,
    MAX_RULES,
    EgressPolicy,
    Rule,
    Verdict,
    allow,
    decide,
    deny,
    host_matches,
)

POLICY_MODULES = (policy_module, host_patterns, policy_files)

EXAMPLE = EgressPolicy(
    rules=[
        deny("*.internal.example.com"),
        allow("api.github.com", "*.openai.com"),
        decide(timeout_ms=5000),
    ],
    default="deny",
)

# The policy.json example of the sidecar contract, verbatim.
CONTRACT_WIRE = json.loads(
    """
{
  "rules": [
    {"type": "deny", "hosts": ["*.internal.example.com"]},
    {"type": "allow", "hosts": ["api.github.com", "*.openai.com"]},
    {"type": "decide"}
  ],
  "default": "deny",
  "max_body_capture": 4096,
  "redact": [],
  "decide_timeout_ms": 5000
}
"""
)


# --------------------------------------------------------------------- wire form


def test_to_wire_is_the_contract_example() -> None:
    assert EXAMPLE.to_wire() == CONTRACT_WIRE


def test_to_json_is_compact_sorted_and_parses_back_to_the_wire_form() -> None:
    text = EXAMPLE.to_json()
    assert json.loads(text) == CONTRACT_WIRE
    assert " " not in text
    assert text.startswith('{"decide_timeout_ms":5000,"default":"deny",')
    rebuilt = EgressPolicy(rules=list(EXAMPLE.rules), default="deny")
    assert rebuilt.to_json() == text


def test_decide_timeout_moves_to_the_top_level_on_the_wire() -> None:
    wire = EgressPolicy(rules=[decide(timeout_ms=1234)]).to_wire()
    assert wire["decide_timeout_ms"] == 1234
    assert wire["rules"] == [{"type": "decide"}]


def test_decide_timeout_is_always_emitted_and_defaults_to_5000() -> None:
    assert DENY_ALL.to_wire() == {
        "rules": [],
        "default": "deny",
        "max_body_capture": 4096,
        "redact": [],
        "decide_timeout_ms": 5000,
    }
    assert decide().timeout_ms == 5000


def test_redact_and_max_body_capture_reach_the_wire() -> None:
    wire = EgressPolicy(redact=["token=\\w+"], max_body_capture=0).to_wire()
    assert wire["redact"] == ["token=\\w+"]
    assert wire["max_body_capture"] == 0


def test_patterns_are_lower_cased_and_duplicates_kept_in_order() -> None:
    rule = allow("API.GitHub.com", "b.com", "api.github.com")
    assert rule.hosts == ("api.github.com", "b.com", "api.github.com")
    assert EgressPolicy(rules=[rule]).to_wire()["rules"][0]["hosts"] == list(rule.hosts)


# ------------------------------------------------------------------- dataclasses


def test_policies_are_frozen_hashable_and_store_tuples() -> None:
    assert isinstance(EXAMPLE.rules, tuple)
    assert isinstance(EXAMPLE.redact, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        EXAMPLE.default = "allow"  # type: ignore[misc]
    twin = EgressPolicy(rules=tuple(EXAMPLE.rules))
    assert twin == EXAMPLE
    assert hash(twin) == hash(EXAMPLE)


def test_docstring_examples_hold() -> None:
    attempted = 0
    for module in POLICY_MODULES:
        result = doctest.testmod(module, raise_on_error=False, verbose=False)
        assert result.failed == 0, module.__name__
        attempted += result.attempted
    assert attempted >= 15


def test_deny_all_has_no_rules_and_denies_by_default() -> None:
    assert DENY_ALL.rules == ()
    assert DENY_ALL.default == "deny"
    assert DENY_ALL.evaluate("example.com") == Verdict("deny", None, None, "default_deny")


def defined_public_names(module: ModuleType) -> set[str]:
    """The public names a module's own source defines (not those it imports)."""
    tree = ast.parse(Path(str(module.__file__)).read_text(encoding="utf-8"))
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {name for name in defined if not name.startswith("_")}


# What users, docs and other modules import from condukt_egress.policy, at home
# in its parts.
RE_EXPORTED = {
    "MAX_HOST_PATTERNS",
    "MAX_LABEL_LENGTH",
    "MAX_PATTERN_LENGTH",
    "MAX_POLICY_FILE_BYTES",
    "host_matches",
    "yaml_problem",
}


@pytest.mark.parametrize("module", POLICY_MODULES, ids=lambda module: module.__name__)
def test_all_is_unique_and_complete(module: ModuleType) -> None:
    # The order is ruff's RUF022 (constants, classes, functions); ruff checks it.
    assert len(set(module.__all__)) == len(module.__all__)
    re_exported = RE_EXPORTED if module is policy_module else set()
    assert set(module.__all__) == defined_public_names(module) | re_exported


def test_policy_is_the_public_home_of_what_its_parts_offer_a_caller() -> None:
    assert "EgressPolicy" in defined_public_names(policy_module)
    for name in RE_EXPORTED:
        home = host_patterns if name in host_patterns.__all__ else policy_files
        assert name in home.__all__
        assert getattr(policy_module, name) is getattr(home, name)


# ---------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        # The contract's examples.
        ("*.openai.com", "api.openai.com", True),
        ("*.openai.com", "openai.com", False),
        ("*.openai.com", "a.b.openai.com", False),
        ("**.openai.com", "api.openai.com", True),
        ("**.openai.com", "a.b.openai.com", True),
        ("**.openai.com", "openai.com", False),
        ("example.com", "example.com:8080", False),
        ("example.com", "example.com.", False),
        # Case-insensitive over the whole name, ASCII only.
        ("API.GitHub.com", "api.github.COM", True),
        ("api.github.com", "api.github.com.evil.com", False),
        ("api.github.com", "xapi.github.com", False),
        ("k.com", "\u212a.com", False),  # Kelvin sign: Unicode-lowers to "k", ASCII does not
        # `*` at the end of a label: one or more characters, no dot.
        ("api-*.example.com", "api-eu.example.com", True),
        ("api-*.example.com", "api-.example.com", False),
        ("api-*.example.com", "api-a.b.example.com", False),
        # `*` followed by more of its label never matches in the sidecar.
        ("*-api.example.com", "eu-api.example.com", False),
        ("**-api.example.com", "eu-api.example.com", True),
        ("**-api.example.com", "a.eu-api.example.com", True),
        # `*` and `**` alone.
        ("*", "localhost", True),
        ("*", "a.b", False),
        ("*", "", False),
        ("**", "a.b.c", True),
        ("**", "", False),
        ("a.**", "a.b.c", True),
        ("a.**", "a.", False),
        ("**.**", "a.b", True),
        ("**.**", "a.", False),
        ("****", "a", False),  # two `**`: two characters at least
        ("****", "ab", True),
        ("***", "ab", True),  # `**` then `*`: what the sidecar does with it
        ("***", "a.b", True),
        ("***", "ab.", False),
        ("example.*", "example.com:8080", True),  # a final `*` swallows a port
        # Anything else is literal, even if it can never be a host.
        ("https://a.com", "a.com", False),
        ("a.com:443", "a.com:443", True),
        ("10.0.0.1", "10.0.0.1", True),
        ("10.0.0.*", "10.0.0.1", True),
    ],
)
def test_host_matches_like_the_sidecar(pattern: str, host: str, expected: bool) -> None:
    assert host_matches(pattern, host) is expected


def test_matching_is_not_catastrophic_on_long_hosts() -> None:
    # A backtracking `.+a.+a...` regex needs years for this; the sidecar-style
    # greedy segment placement needs milliseconds.
    pattern = "**a" * 30 + "**b"
    host = "a" * 20_000
    start = time.perf_counter()
    assert not host_matches(pattern, host)
    assert host_matches(pattern, host + "b")
    assert time.perf_counter() - start < 2.0


# -------------------------------------------------------------------- evaluation


@pytest.mark.parametrize(
    ("host", "verdict"),
    [
        ("db.internal.example.com", Verdict("deny", 0, "deny", "matched_deny_list")),
        ("api.github.com", Verdict("allow", 1, "allow", None)),
        ("CHAT.openai.com", Verdict("allow", 1, "allow", None)),
        ("example.org", Verdict("decide", 2, "decide", None)),
        ("", Verdict("decide", 2, "decide", None)),
    ],
)
def test_evaluate_reports_the_rule_and_the_sidecars_reason(host: str, verdict: Verdict) -> None:
    assert EXAMPLE.evaluate(host) == verdict


def test_first_matching_rule_wins() -> None:
    deny_first = EgressPolicy(rules=[deny("evil.com"), allow("evil.com")], default="allow")
    assert deny_first.evaluate("evil.com") == Verdict("deny", 0, "deny", "matched_deny_list")
    allow_first = EgressPolicy(rules=[allow("evil.com"), deny("evil.com")])
    assert allow_first.evaluate("evil.com") == Verdict("allow", 0, "allow", None)


def test_default_applies_without_a_rule() -> None:
    policy = EgressPolicy(rules=[allow("a.com")], default="allow")
    assert policy.evaluate("b.com") == Verdict("allow", None, None, None)
    policy = EgressPolicy(rules=[allow("a.com")])
    assert policy.evaluate("b.com") == Verdict("deny", None, None, "default_deny")


def test_rule_matches() -> None:
    assert allow("*.a.com").matches("X.A.com")
    assert not deny("*.a.com").matches("a.com")
    assert decide().matches("anything")


# -------------------------------------------------------------- document form


def test_document_round_trip() -> None:
    doc = EXAMPLE.to_dict()
    assert doc == {
        "rules": [
            {"deny": ["*.internal.example.com"]},
            {"allow": ["api.github.com", "*.openai.com"]},
            {"decide": {"timeout_ms": 5000}},
        ],
        "default": "deny",
        "redact": [],
        "max_body_capture": 4096,
    }
    assert EgressPolicy.from_dict(doc) == EXAMPLE


@pytest.mark.parametrize("options", [None, {}, {"timeout_ms": 5000}, {"timeout_ms": 5000.0}])
def test_decide_options_forms(options: object) -> None:
    policy = EgressPolicy.from_dict({"rules": [{"decide": options}]})
    assert policy.rules == (decide(),)


def test_document_defaults() -> None:
    assert EgressPolicy.from_dict({}) == DENY_ALL


def test_single_string_host_list() -> None:
    policy = EgressPolicy.from_dict({"rules": [{"allow": "api.github.com"}]})
    assert policy.rules == (allow("api.github.com"),)


def test_integral_floats_are_accepted() -> None:
    policy = EgressPolicy.from_dict(
        {"rules": [{"decide": {"timeout_ms": 2000.0}}], "max_body_capture": 1024.0}
    )
    assert policy.max_body_capture == 1024
    assert type(policy.max_body_capture) is int
    assert policy.decide_timeout_ms == 2000
    assert type(policy.decide_timeout_ms) is int


# ------------------------------------------------------------------- validation


def raises(build: Callable[[], object], field: str, *needles: str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        build()
    assert caught.value.field == field
    message = str(caught.value)
    assert message.startswith(f"{field}: ")
    for needle in needles:
        assert needle in message, message
    return caught.value


@pytest.mark.parametrize(
    ("pattern", "needles"),
    [
        ("", ["''", "empty", "write a host name"]),
        ("   ", ["'   '", "empty", "remove it"]),
        ("https://x.com", ["'https://x.com'", "write the host name only: 'x.com'"]),
        (
            "HTTPS://user@API.github.com:443/v3?q#f",
            ["URL", "write the host name only: 'api.github.com'"],
        ),
        ("x.com:443", ["'x.com:443'", "port", "write the host name only: 'x.com'"]),
        ("*.x.com:8443", ["port", "'*.x.com'"]),
        ("x.com/api", ["'x.com/api'", "path", "'x.com'"]),
        ("user@x.com", ["'@'", "'x.com'"]),
        ("::1", ["':'", "IPv4"]),
        (" x.com", ["whitespace", "write 'x.com'"]),
        ("x.com\t", ["whitespace", "write 'x.com'"]),
        ("a.com b.com", ["whitespace", "separate patterns"]),
        ("***.x.com", ["'***.x.com'", "'*' for exactly one label", "'**'"]),
        ("a.*****", ["three or more"]),
        ("x.com.", ["'x.com.'", "trailing", "write 'x.com'"]),
        (".", ["dot", "write a host name"]),
        (".x.com", ["starts with a dot", "'x.com'", "'**.x.com'"]),
        ("a..b", ["'a..b'", "empty label", "write 'a.b'"]),
        ("bücher.de", ["'bücher.de'", "non-ASCII", "write 'xn--bcher-kva.de'"]),
        ("*.BÜCHER.de", ["write '*.xn--bcher-kva.de'"]),
        ("straße.de", ["write 'xn--strae-oqa.de'"]),  # IDNA 2008, not 'strasse.de'
        ("*ü.de", ["non-ASCII", "IDNA (punycode) form"]),
        ("a!b.com", ["'!'", "a-z, 0-9, '-', '_', '.' and '*'"]),
        ("a%2eb", ["'%'"]),
        ("*-api.example.com", ["never matches", "'*-api'", "'**-api.example.com'"]),
        ("a*b.com", ["never matches", "'a*b'"]),
        ("a" * 64 + ".com", ["64 characters", "at most 63"]),
        ("a." * 126 + "ab", ["254 characters", "at most 253"]),
    ],
)
def test_invalid_patterns_name_the_value_and_the_fix(pattern: str, needles: list[str]) -> None:
    raises(lambda: allow(pattern), "allow[0]", *needles)
    raises(
        lambda: EgressPolicy.from_dict(
            {"rules": [{"allow": ["ok.com"]}, {"deny": ["b", pattern]}]}
        ),
        "rules[1].deny[1]",
        *needles,
    )


@pytest.mark.parametrize(
    "pattern",
    [
        "api.github.com",
        "*.openai.com",
        "**.googleapis.com",
        "api-*.example.com",
        "**-api.example.com",
        "*",
        "**",
        "a.**",
        "_dmarc.example.com",
        "10.0.0.1",
        "xn--bcher-kva.de",
        "a" * 63 + ".com",
        "a." * 126 + "a",
    ],
)
def test_valid_patterns(pattern: str) -> None:
    assert allow(pattern).hosts == (pattern,)


def test_non_string_pattern() -> None:
    raises(
        lambda: EgressPolicy.from_dict({"rules": [{"allow": [443]}]}), "rules[0].allow[0]", "443"
    )


@pytest.mark.parametrize(
    ("doc", "field", "needles"),
    [
        (
            {"defualt": "deny"},
            "defualt",
            ["unknown key", "rules, default, redact, max_body_capture", "'default'"],
        ),
        ({"decide_timeout_ms": 10}, "decide_timeout_ms", ["{'decide': {'timeout_ms'"]),
        ({1: 2}, "1", ["unknown key"]),
        ({"default": "Deny"}, "default", ["'Deny'", "did you mean 'deny'"]),
        ({"default": "block"}, "default", ["'allow' or 'deny'", "'block'"]),
        ({"default": False}, "default", ["False", "YAML", "write deny"]),
        ({"default": None}, "default", ["None"]),
        ({"rules": "allow"}, "rules", ["list of rules", "'allow'"]),
        ({"rules": {"allow": ["x"]}}, "rules", ["list of rules"]),
        ({"rules": [["x"]]}, "rules[0]", ["exactly one key", "{'allow': ['api.github.com']}"]),
        ({"rules": [{}]}, "rules[0]", ["exactly one key", "0 keys"]),
        ({"rules": [{"allow": ["a"], "deny": ["b"]}]}, "rules[0]", ["exactly one key", "2 keys"]),
        (
            {"rules": [{"type": "allow", "hosts": ["a"]}]},
            "rules[0]",
            ["wire form", "{'allow': [...]}"],
        ),
        ({"rules": [{"alow": ["a"]}]}, "rules[0]", ["'alow'", "did you mean 'allow'"]),
        ({"rules": [{"Deny": ["a"]}]}, "rules[0]", ["'Deny'", "did you mean 'deny'"]),
        ({"rules": [{"allow": []}]}, "rules[0].allow", ["at least one host", "remove the rule"]),
        ({"rules": [{"deny": None}]}, "rules[0].deny", ["list of host patterns", "None"]),
        ({"rules": [{"allow": {"a": 1}}]}, "rules[0].allow", ["list of host patterns"]),
        ({"rules": [{"decide": []}]}, "rules[0].decide", ["{'timeout_ms': 5000}"]),
        ({"rules": [{"decide": "5s"}]}, "rules[0].decide", ["'5s'"]),
        (
            {"rules": [{"decide": {"timeout": 5}}]},
            "rules[0].decide.timeout",
            ["unknown key", "timeout_ms", "did you mean 'timeout_ms'"],
        ),
        (
            {"rules": [{"decide": {"timeout_ms": 1.5}}]},
            "rules[0].decide.timeout_ms",
            ["whole number", "1.5", "5000"],
        ),
        (
            {"rules": [{"decide": {"timeout_ms": True}}]},
            "rules[0].decide.timeout_ms",
            ["whole number", "True"],
        ),
        (
            {"rules": [{"decide": {"timeout_ms": "5000"}}]},
            "rules[0].decide.timeout_ms",
            ["whole number", "'5000'"],
        ),
        (
            {"rules": [{"decide": {"timeout_ms": 0}}]},
            "rules[0].decide.timeout_ms",
            ["0 milliseconds is out of range", "1..600000"],
        ),
        (
            {"rules": [{"decide": {"timeout_ms": MAX_DECIDE_TIMEOUT_MS + 1}}]},
            "rules[0].decide.timeout_ms",
            ["out of range", "1..600000"],
        ),
        (
            {"rules": [{"decide": {"timeout_ms": float("inf")}}]},
            "rules[0].decide.timeout_ms",
            ["whole number", "inf"],
        ),
        (
            {"rules": [{"decide": None}, {"allow": ["a"]}]},
            "rules[1]",
            ["never run", "rules[0] is a decide rule", "move it before rules[0]"],
        ),
        (
            {"rules": [{"allow": ["a"]}, {"decide": None}, {"decide": {}}]},
            "rules[2]",
            ["a second decide rule", "rules[1]"],
        ),
        ({"max_body_capture": -1}, "max_body_capture", ["-1 bytes is out of range", "0..16777216"]),
        ({"max_body_capture": MAX_BODY_CAPTURE + 1}, "max_body_capture", ["out of range"]),
        ({"max_body_capture": 1e300}, "max_body_capture", ["out of range"]),
        ({"max_body_capture": True}, "max_body_capture", ["whole number", "True"]),
        ({"max_body_capture": 4096.5}, "max_body_capture", ["whole number", "4096.5"]),
        ({"redact": "token"}, "redact", ["list of strings", "['token']"]),
        ({"redact": None}, "redact", ["list of strings"]),
        ({"redact": ["a", ""]}, "redact[1]", ["non-empty string", "''"]),
        ({"redact": [3]}, "redact[0]", ["non-empty string", "int 3"]),
        ({"redact": ["x" * (MAX_REDACT_LENGTH + 1)]}, "redact[0]", ["limit is 4096"]),
        ({"redact": ["x"] * (MAX_REDACT_ENTRIES + 1)}, "redact", ["limit is 1000"]),
    ],
)
def test_invalid_documents_name_the_field_and_the_fix(
    doc: dict[Any, Any], field: str, needles: list[str]
) -> None:
    raises(lambda: EgressPolicy.from_dict(doc), field, *needles)


@pytest.mark.parametrize("doc", [None, [], "rules: []", 3])
def test_a_document_must_be_a_mapping(doc: object) -> None:
    raises(lambda: EgressPolicy.from_dict(doc), "policy", "expected a mapping", "rules, default")


def test_too_many_rules() -> None:
    doc = {"rules": [{"allow": ["a"]}] * (MAX_RULES + 1)}
    raises(lambda: EgressPolicy.from_dict(doc), "rules", "1001 rules", "limit is 1000")
    rules = [allow("a")] * (MAX_RULES + 1)
    raises(lambda: EgressPolicy(rules=rules), "rules", "limit is 1000")


def test_too_many_patterns() -> None:
    raises(lambda: allow(*["a"] * (MAX_HOST_PATTERNS + 1)), "allow", "limit is 10000", "'**'")
    half = allow(*["a"] * (MAX_HOST_PATTERNS // 2))
    assert len(EgressPolicy(rules=[half, half]).rules) == 2
    raises(
        lambda: EgressPolicy(rules=[half, half, allow("b")]),
        "rules",
        "10001 host patterns in total",
        "limit is 10000",
    )


def test_python_api_errors() -> None:
    raises(allow, "allow", "at least one host pattern")
    raises(deny, "deny", "at least one host pattern")
    raises(lambda: decide(timeout_ms=-5), "decide.timeout_ms", "out of range", "1..600000")
    raises(lambda: Rule("allow", "api.github.com"), "allow", "not one string", "['api.github.com']")
    raises(lambda: Rule("allow", {"a.com"}), "allow", "list of host patterns")  # type: ignore[arg-type]
    raises(lambda: Rule("allow", ("a",), timeout_ms=5), "allow.timeout_ms", "decide(timeout_ms=")
    raises(lambda: Rule("decide", ("a",)), "decide.hosts", "allow or deny rule before it")
    raises(lambda: Rule("alow"), "kind", "did you mean 'allow'")  # type: ignore[arg-type]
    raises(
        lambda: EgressPolicy(rules=[decide(), allow("a")]),
        "rules[1]",
        "never run",
        "move it before rules[0]",
    )
    raises(
        lambda: EgressPolicy(rules=["api.github.com"]),  # type: ignore[list-item]
        "rules[0]",
        "expected a Rule",
        "allow(...)",
    )
    raises(lambda: EgressPolicy(default="Allow"), "default", "did you mean 'allow'")  # type: ignore[arg-type]
    raises(lambda: EgressPolicy(redact="x"), "redact", "write ['x']")
    raises(lambda: EgressPolicy(max_body_capture=-1), "max_body_capture", "0..16777216")


def test_python_api_accepts_integral_floats() -> None:
    assert decide(timeout_ms=5000.0) == decide()  # type: ignore[arg-type]
    assert EgressPolicy(max_body_capture=4096.0) == DENY_ALL  # type: ignore[arg-type]


# ------------------------------------------------------------------------ files


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


YAML_POLICY = """\
rules:
  - deny: ["*.internal.example.com"]
  - allow: [api.github.com, "*.openai.com"]
  - decide: {timeout_ms: 5000}
default: deny
"""


@pytest.mark.parametrize("name", ["p.yaml", "p.yml", "P.YAML"])
def test_load_yaml(tmp_path: Path, name: str) -> None:
    assert EgressPolicy.load(write(tmp_path, name, YAML_POLICY)) == EXAMPLE


def test_load_json(tmp_path: Path) -> None:
    path = write(tmp_path, "p.json", json.dumps(EXAMPLE.to_dict()))
    assert EgressPolicy.load(str(path)) == EXAMPLE


def test_load_yaml_with_bare_decide(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "rules:\n  - allow: a.com\n  - decide:\n")
    assert EgressPolicy.load(path).rules == (allow("a.com"), decide())


def test_load_rejects_other_suffixes(tmp_path: Path) -> None:
    path = write(tmp_path, "policy.toml", "")
    raises(lambda: EgressPolicy.load(path), str(path), "'.toml'", ".yaml, .yml or .json")


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    raises(lambda: EgressPolicy.load(path), str(path), "cannot read", "No such file")


def test_load_directory(tmp_path: Path) -> None:
    path = tmp_path / "dir.json"
    path.mkdir()
    raises(lambda: EgressPolicy.load(path), str(path), "cannot read")


def test_load_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", b"default: \xff\n")
    raises(lambda: EgressPolicy.load(path), str(path), "not UTF-8", "byte 9")


def test_load_bad_yaml_gives_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "rules:\n  - allow: [a.com\ndefault: deny\n")
    raises(lambda: EgressPolicy.load(path), str(path), "not valid YAML at line 3")


def test_load_bad_json_gives_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "p.json", '{\n  "rules": [,]\n}')
    raises(lambda: EgressPolicy.load(path), str(path), "not valid JSON at line 2, column 13")


def test_load_refuses_duplicate_yaml_keys(tmp_path: Path) -> None:
    text = "rules:\n  - allow: [a.com]\n    allow: [b.com]\n"
    path = write(tmp_path, "p.yaml", text)
    raises(lambda: EgressPolicy.load(path), str(path), "line 3", "duplicate key 'allow'")


def test_load_refuses_duplicate_json_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "p.json", '{"default": "allow", "default": "deny"}')
    raises(lambda: EgressPolicy.load(path), str(path), "duplicate key 'default'")


def test_load_yaml_merge_keys_work_without_aliases(tmp_path: Path) -> None:
    # Aliases are refused (billion laughs), so `<<:` only merges inline mappings.
    path = write(tmp_path, "p.yaml", "rules:\n  - decide: {<<: {timeout_ms: 7}}\n")
    assert EgressPolicy.load(path).decide_timeout_ms == 7
    path = write(
        tmp_path, "q.yaml", "rules:\n  - decide: &d {timeout_ms: 7}\n  - decide: {<<: *d}\n"
    )
    raises(lambda: EgressPolicy.load(path), str(path), "line 3", "found an alias (*d)")


def _billion_laughs(depth: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, depth + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    lines.append(f"rules: [{{allow: *a{depth}}}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("depth", [1, 7, 9])
def test_load_refuses_yaml_aliases_before_expanding_them(tmp_path: Path, depth: int) -> None:
    # Round 2: ~420 bytes at depth 7 took 28 s and 1.9 GB (error messages repr'd the
    # shared values); depth 9 hung past 60 s, in render, explain and events --policy.
    path = write(tmp_path, "laughs.yaml", _billion_laughs(depth))
    started = time.perf_counter()
    error = raises(lambda: EgressPolicy.load(path), str(path), "line 2", "found an alias (*a0)")
    assert time.perf_counter() - started < 1.0
    assert len(str(error)) < 300


def test_load_refuses_a_file_over_the_size_cap_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("w") as out:
        out.write("rules:\n  - allow:\n")
        while out.tell() <= MAX_POLICY_FILE_BYTES:
            out.write("      - " + "a" * 60 + ".example.com\n")
    error = raises(lambda: EgressPolicy.load(path), str(path), "larger than 1024 KiB")
    assert len(str(error)) < 300


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("p.yaml", "max_body_capture: " + "9" * 5000 + "\n"),
        ("p.yaml", "rules:\n  - decide: {timeout_ms: -" + "1" * 4400 + "}\n"),
        ("p.json", '{"max_body_capture": ' + "9" * 5000 + "}"),
    ],
)
def test_load_turns_integers_past_the_digit_limit_into_our_error(
    tmp_path: Path, name: str, text: str
) -> None:
    path = write(tmp_path, name, text)
    error = raises(lambda: EgressPolicy.load(path), str(path), "more than 4,300 digits")
    assert len(str(error)) < 300


@pytest.mark.parametrize(
    "build",
    [
        lambda: EgressPolicy(max_body_capture=10**5000),
        lambda: EgressPolicy.from_dict({"max_body_capture": -(10**6000)}),
        lambda: EgressPolicy.from_dict({"rules": [{"decide": {"timeout_ms": 10**4400}}]}),
        lambda: EgressPolicy.from_dict({"default": "x" * 1_000_000}),
        lambda: EgressPolicy.from_dict({"rules": [{"allow": ["a b" * 500_000]}]}),
        lambda: EgressPolicy.from_dict({"redact": [["x" * 1000] * 1000]}),
        lambda: EgressPolicy.from_dict({"rules": "r" * 1_000_000}),
        lambda: EgressPolicy.from_dict([[["x"] * 1000] * 1000]),
    ],
)
def test_errors_about_huge_values_stay_short(build: Callable[[], object]) -> None:
    # Values are cut to 80 characters, host patterns to 1024 (room for escapes).
    started = time.perf_counter()
    with pytest.raises(PolicyError) as info:
        build()
    assert len(str(info.value)) < 2500
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("name", "text"), [("p.yaml", ""), ("p.yaml", "# nothing\n"), ("p.json", "null")]
)
def test_load_empty_document(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path, name, text)
    raises(lambda: EgressPolicy.load(path), str(path), "empty", '"default": "deny"')


def test_load_prefixes_document_errors_with_the_path(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "rules:\n  - allow: ['https://a.com']\n")
    raises(
        lambda: EgressPolicy.load(path),
        f"{path}: rules[0].allow[0]",
        "write the host name only: 'a.com'",
    )


def test_load_yaml_is_safe(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "default: !!python/object/apply:os.system ['true']\n")
    raises(lambda: EgressPolicy.load(path), str(path), "not valid YAML")
