"""Property tests of the egress policy: validator totality, round trips, matching.

The matcher is checked against two references written here, differently from
the library: a memoised recursive matcher over the raw pattern string that
follows the sidecar's rules character by character, and, for patterns without
``**``, a label-by-label matcher that states the documented semantics.
"""

from __future__ import annotations

import json
import string
from functools import cache
from typing import Any, cast

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from condukt_egress.errors import PolicyError
from condukt_egress.policy import (
    EgressPolicy,
    Rule,
    Verdict,
    allow,
    decide,
    deny,
    host_matches,
)

FAST = settings()  # the profile (tests/conftest.py)
THOROUGH = settings(max_examples=2 * settings().max_examples)

LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


# ------------------------------------------------------------------ references


def reference_match(pattern: str, host: str) -> bool:
    """Sidecar semantics, by recursion on the pattern string itself."""
    p = pattern.translate(LOWER)
    h = host.translate(LOWER)

    @cache
    def go(i: int, j: int) -> bool:
        if i == len(p):
            return j == len(h)
        if p.startswith("**", i):
            # one or more characters of anything, then the rest
            return any(go(i + 2, k) for k in range(j + 1, len(h) + 1))
        if p[i] == "*":
            # the whole rest of the current label, at least one character
            k = j
            while k < len(h) and h[k] != ".":
                k += 1
            return k > j and go(i + 1, k)
        return j < len(h) and h[j] == p[i] and go(i + 1, j + 1)

    return go(0, 0)


def label_match(pattern: str, host: str) -> bool:
    """The documented meaning for patterns without ``**``, label by label."""
    assert "**" not in pattern
    labels = pattern.translate(LOWER).split(".")
    names = host.translate(LOWER).split(".")
    if len(labels) != len(names):
        return False
    for label, name in zip(labels, names, strict=True):
        if label.endswith("*"):
            prefix = label[:-1]
            if not (name.startswith(prefix) and len(name) > len(prefix)):
                return False
        elif label != name:
            return False
    return True


# ------------------------------------------------------------------ strategies

# Small alphabets so that random patterns and hosts actually meet; the Kelvin
# sign and "é" check that only ASCII is case-folded.
pattern_chars = st.sampled_from(["a", "b", "A", ".", "*", "-", "k", "\u212a", "é"])
host_chars = st.sampled_from(["a", "b", "B", ".", "-", "k", "K", "\u212a", "é", ":"])
any_patterns = st.text(pattern_chars, max_size=10)
any_hosts = st.text(host_chars, max_size=12)

literals = st.text(st.sampled_from("ab-_0"), min_size=1, max_size=4)
single_star_labels = st.one_of(literals, st.just("*"), literals.map(lambda s: s + "*"))
labels = st.one_of(single_star_labels, st.just("**"), literals.map(lambda s: "**" + s))


def _valid(pattern: str) -> bool:
    try:
        allow(pattern)
    except PolicyError:
        return False
    return True


valid_patterns = st.lists(labels, min_size=1, max_size=4).map(".".join).filter(_valid)
single_star_patterns = st.lists(single_star_labels, min_size=1, max_size=4).map(".".join)


@st.composite
def pattern_and_matching_host(draw: st.DrawFn) -> tuple[str, str]:
    """A valid pattern and a host built to match it, in random case."""
    pattern = draw(valid_patterns)
    host: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            host.append(draw(st.text(st.sampled_from("ab.x"), min_size=1, max_size=6)))
            i += 2
        elif pattern[i] == "*":
            host.append(draw(st.text(st.sampled_from("abx-"), min_size=1, max_size=4)))
            i += 1
        else:
            host.append(pattern[i].upper() if draw(st.booleans()) else pattern[i])
            i += 1
    return pattern, "".join(host)


host_lists = st.lists(valid_patterns, min_size=1, max_size=3)
static_rules = st.one_of(
    host_lists.map(lambda hosts: allow(*hosts)),
    host_lists.map(lambda hosts: deny(*hosts)),
)


@st.composite
def policies(draw: st.DrawFn) -> EgressPolicy:
    rules: list[Rule] = draw(st.lists(static_rules, max_size=4))
    if draw(st.booleans()):
        rules.append(decide(draw(st.integers(1, 600_000))))
    return EgressPolicy(
        rules=rules,
        default=draw(st.sampled_from(["allow", "deny"])),
        redact=draw(st.lists(st.text(min_size=1, max_size=8), max_size=3)),
        max_body_capture=draw(st.integers(0, 16 * 1024 * 1024)),
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["allow", "deny", "decide", "Deny", "*.a.com", "a.com:443", "**"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=8) | st.sampled_from(["timeout_ms"]), children, max_size=3
        )
    ),
    max_leaves=12,
)
rule_keys = st.sampled_from(["allow", "deny", "decide", "alow", "type", "hosts"]) | st.text(
    max_size=6
)
rule_entries = json_values | st.dictionaries(rule_keys, json_values, max_size=2)
documents = json_values | st.fixed_dictionaries(
    {},
    optional={
        "rules": st.lists(rule_entries, max_size=4) | json_values,
        "default": st.sampled_from(["allow", "deny", "Deny", ""]) | json_values,
        "redact": st.lists(json_values, max_size=3) | json_values,
        "max_body_capture": st.integers(-5, 2**25) | st.floats() | json_values,
        "defualt": json_values,
    },
)


# ------------------------------------------------------------- validator totality


@given(documents)
@THOROUGH
def test_from_dict_validates_or_raises_policy_error(doc: Any) -> None:
    try:
        policy = EgressPolicy.from_dict(doc)
    except PolicyError as caught:
        error = caught
    else:
        assert EgressPolicy.from_dict(policy.to_dict()) == policy
        return
    assert error.field
    assert str(error).startswith(f"{error.field}: ")


@given(st.text(max_size=40))
@THOROUGH
def test_any_string_is_a_valid_pattern_or_a_policy_error(text: str) -> None:
    try:
        rule = deny(text)
    except PolicyError as caught:
        error = caught
    else:
        (pattern,) = rule.hosts
        assert pattern == text.lower()
        assert pattern.isascii()
        assert set(pattern) <= set(string.ascii_lowercase + string.digits + "-_.*")
        return
    assert error.field == "deny[0]"
    assert repr(text) in str(error)


@given(any_patterns)
@FAST
def test_small_alphabet_patterns_validate_or_raise(text: str) -> None:
    try:
        allow(text)
    except PolicyError as caught:
        assert caught.field == "allow[0]"  # noqa: PT017 - totality, not one expected error


@given(json_values, json_values, json_values, json_values)
@FAST
def test_constructor_validates_any_values(
    rules: object, default: object, redact: object, max_body_capture: object
) -> None:
    try:
        policy = EgressPolicy(
            rules=cast("Any", rules),
            default=cast("Any", default),
            redact=cast("Any", redact),
            max_body_capture=cast("Any", max_body_capture),
        )
    except PolicyError as caught:
        assert caught.field  # noqa: PT017 - totality, not one expected error
    else:
        assert isinstance(policy.rules, tuple)
        assert policy.default in ("allow", "deny")


# --------------------------------------------------------------------- round trips


@given(policies())
@FAST
def test_document_round_trip(policy: EgressPolicy) -> None:
    assert EgressPolicy.from_dict(policy.to_dict()) == policy
    # Through real JSON too, as a file or stack config would deliver it.
    assert EgressPolicy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy


@given(policies())
@FAST
def test_to_json_is_deterministic_and_parseable(policy: EgressPolicy) -> None:
    text = policy.to_json()
    assert json.loads(text) == policy.to_wire()
    assert EgressPolicy.from_dict(policy.to_dict()).to_json() == text
    assert text.isascii()
    wire = policy.to_wire()
    assert [rule["type"] for rule in wire["rules"]] == [rule.kind for rule in policy.rules]
    assert wire["decide_timeout_ms"] == policy.decide_timeout_ms


# ------------------------------------------------------------------------ matching


@given(any_patterns, any_hosts)
@THOROUGH
def test_host_matches_agrees_with_the_reference(pattern: str, host: str) -> None:
    assert host_matches(pattern, host) is reference_match(pattern, host)


@given(pattern_and_matching_host())
@THOROUGH
def test_constructed_hosts_match(case: tuple[str, str]) -> None:
    pattern, host = case
    assert reference_match(pattern, host)
    assert host_matches(pattern, host)


@given(single_star_patterns, st.text(st.sampled_from("ab-_0.xA"), max_size=12))
@THOROUGH
def test_single_star_patterns_mean_what_the_docs_say(pattern: str, host: str) -> None:
    assert _valid(pattern)
    assert host_matches(pattern, host) is label_match(pattern, host)


@given(pattern_and_matching_host(), st.sampled_from([":443", ".", " ", "/x"]))
@FAST
def test_ports_trailing_dots_and_paths_never_match(case: tuple[str, str], suffix: str) -> None:
    pattern, host = case
    # A final `*` or `**` swallows anything after it, a port included: that is
    # the sidecar's behaviour too (`example.*` matches `example.com:8080`).
    assume(not pattern.endswith("*"))
    assert not host_matches(pattern, host + suffix)
    assert not reference_match(pattern, host + suffix)


# ---------------------------------------------------------------------- evaluation


@given(policies(), st.text(max_size=30) | any_hosts)
@FAST
def test_evaluate_follows_the_first_matching_rule(policy: EgressPolicy, host: str) -> None:
    verdict = policy.evaluate(host)
    for index, rule in enumerate(policy.rules):
        if rule.kind == "decide":
            assert verdict == Verdict("decide", index, "decide", None)
            return
        if any(reference_match(pattern, host) for pattern in rule.hosts):
            reason = "matched_deny_list" if rule.kind == "deny" else None
            assert verdict == Verdict(rule.kind, index, rule.kind, reason)
            return
    reason = "default_deny" if policy.default == "deny" else None
    assert verdict == Verdict(policy.default, None, None, reason)


@pytest.mark.parametrize("policy", [EgressPolicy(rules=[allow("**"), deny("*")])])
@given(host=st.text())
@FAST
def test_evaluate_never_raises(policy: EgressPolicy, host: str) -> None:
    verdict = policy.evaluate(host)
    assert verdict.action in ("allow", "deny")
    assert (verdict.rule_index is None) == (verdict.rule_kind is None)
