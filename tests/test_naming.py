import base64
import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from condukt_egress.errors import ConfigError
from condukt_egress.naming import HASH_CHARS, MAX_SESSION_ID_LENGTH, session_names
from tests.security_properties import assert_names

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

session_ids = st.text(min_size=1, max_size=MAX_SESSION_ID_LENGTH).filter(
    lambda s: bool(s.strip()) and "\x00" not in s
)


@given(session_ids)
@settings(max_examples=2 * settings().max_examples)
def test_names_are_valid_kubernetes_names_for_any_id(session_id: str) -> None:
    n = session_names(session_id)
    for value in (n.network_policy, n.pod, n.label_value, n.base):
        assert DNS_LABEL.match(value), value
        assert len(value) <= 63
    secret = n.secret_name({"policy.json": "{}"})
    assert DNS_SUBDOMAIN.match(secret), secret
    assert len(secret) <= 253
    assert n.owns_secret(secret)
    assert LABEL_VALUE.match(n.label_value)
    assert len(n.ca_common_name) <= 64
    assert n.session_id == session_id


@given(session_ids, session_ids)
@settings(max_examples=2 * settings().max_examples)
def test_distinct_ids_give_distinct_names_and_labels(a: str, b: str) -> None:
    if a == b:
        assert session_names(a) == session_names(b)
        return
    na, nb = session_names(a), session_names(b)
    assert_names(na, nb)
    assert na.secret_name({}) != nb.secret_name({})
    assert not na.owns_secret(nb.secret_name({}))
    assert not nb.owns_secret(na.secret_name({}))
    assert na.network_policy != nb.network_policy
    assert na.label_value != nb.label_value
    assert na.pod != nb.pod


def test_long_ids_sharing_a_prefix_do_not_collide() -> None:
    # The original glue truncated to 50 characters: these two overwrote each other.
    a = "x" * 60 + "-alpha"
    b = "x" * 60 + "-beta"
    assert session_names(a).secret_prefix != session_names(b).secret_prefix


def test_names_keep_a_readable_prefix() -> None:
    n = session_names("Agent Run #42")
    assert n.label_value.startswith("agent-run-42-")
    assert n.network_policy == f"condukt-egress-{n.label_value}"
    assert n.secret_prefix == f"condukt-egress-{n.label_value}-"


def test_names_are_stable() -> None:
    # Changing the derivation renames every running session's objects (a replace):
    # it changed once, from 64 bits of hex to 130 bits of base32 (security round 2).
    n = session_names("42")
    digest = base64.b32encode(hashlib.sha256(b"42").digest()).decode().lower()
    assert n.label_value == f"42-{digest[:26]}"
    assert n.network_policy == f"condukt-egress-42-{digest[:26]}"
    content = base64.b32encode(hashlib.sha256(b'{"ca.pem":"x"}').digest()).decode().lower()
    assert n.secret_name({"ca.pem": "x"}) == f"condukt-egress-42-{digest[:26]}-{content[:26]}"
    assert n.pod == f"workspace-42-{digest[:26]}"
    assert n.ca_common_name == f"condukt-egress 42-{digest[:26]}"


@given(session_ids)
@settings(max_examples=2 * settings().max_examples)
def test_names_carry_at_least_128_bits_of_the_full_id(session_id: str) -> None:
    # 64 bits of SHA-256 were collided in about 13 minutes on two cores (parallel
    # rho): two sessions then shared a NetworkPolicy and a label.
    n = session_names(session_id)
    hash_part = n.base.rsplit("-", 1)[-1]
    assert len(hash_part) == HASH_CHARS
    assert re.fullmatch(r"[a-z2-7]+", hash_part)
    assert len(hash_part) * 5 >= 128


def test_longest_names_fit_their_limits() -> None:
    n = session_names("a" * MAX_SESSION_ID_LENGTH)
    assert len(n.network_policy) == 62
    assert len(n.secret_name({})) == 89
    assert len(n.label_value) == 47
    assert len(n.pod) == 57
    assert len(n.ca_common_name) <= 64


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * (MAX_SESSION_ID_LENGTH + 1), "use a shorter id"),
        (42, "must be a string"),
        ("ab\udc80", "unpaired surrogate"),
    ],
)
def test_bad_session_ids_name_the_field_and_fix(bad: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=r"^session_id: ") as info:
        session_names(bad)  # type: ignore[arg-type]
    assert needle in str(info.value)


def test_the_secret_name_follows_its_content_and_only_it() -> None:
    n = session_names("42")
    files = {"policy.json": '{"rules":[]}', "ca.pem": "cert"}
    assert n.secret_name(files) == n.secret_name(dict(reversed(files.items())))
    assert n.secret_name(files) != n.secret_name({**files, "policy.json": "{}"})
    assert n.secret_name(files).startswith(n.secret_prefix)


@pytest.mark.parametrize(
    ("owner", "other"),
    [("a", "a-b"), ("a-b", "a"), ("x" * 60 + "-alpha", "x" * 60 + "-beta")],
)
def test_a_session_owns_no_secret_of_a_session_whose_id_extends_its_own(
    owner: str, other: str
) -> None:
    mine, theirs = session_names(owner), session_names(other)
    assert mine.owns_secret(mine.secret_name({"a": "b"}))
    assert not mine.owns_secret(theirs.secret_name({"a": "b"}))
    assert not mine.owns_secret(mine.secret_name({}) + "-x")
    assert not mine.owns_secret(mine.secret_prefix)
    assert not mine.owns_secret(mine.network_policy)
    assert not mine.owns_secret(None)
