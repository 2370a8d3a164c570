"""Errors keep their parts: re-labelling changes a field, never cuts up a message."""

from __future__ import annotations

import pickle

import pytest

from condukt_egress.automation import (
    SessionBusyError,
    SessionError,
    SessionNotFoundError,
    SessionOperationError,
)
from condukt_egress.errors import ConfigError, FieldError, PolicyError


def test_text_is_built_from_field_and_message() -> None:
    error = ConfigError("namespace", "must be a Kubernetes namespace: x: y")
    assert (error.field, error.message) == ("namespace", "must be a Kubernetes namespace: x: y")
    assert str(error) == "namespace: must be a Kubernetes namespace: x: y"
    assert str(ConfigError("", "no field")) == "no field"


@pytest.mark.parametrize(
    ("field", "prefix", "sep", "expected"),
    [
        ("allow[0]", "rules[2]", ".", "rules[2].allow[0]"),
        ("[0]", "rules", ".", "rules[0]"),
        ("'a: b'", "policy", ".", "policy.'a: b'"),
        ("rules[0]", "policy.yaml", ": ", "policy.yaml: rules[0]"),
        ("spec.hostNetwork", "Pod 'ws'", " ", "Pod 'ws' spec.hostNetwork"),
        ("", "policy", ".", "policy"),
    ],
)
def test_under(field: str, prefix: str, sep: str, expected: str) -> None:
    error = PolicyError(field, "m: n").under(prefix, sep)
    assert type(error) is PolicyError
    assert (error.field, error.message) == (expected, "m: n")


@pytest.mark.parametrize(
    ("field", "new", "expected"),
    [
        ("unproxied_egress.ports", "config unproxiedEgress", "config unproxiedEgress.ports"),
        ("dns_pod_labels['a: b']", "--dns-pod-label", "--dns-pod-label['a: b']"),
        ("spec", "spec.template.spec", "spec.template.spec"),
        (
            "spec.containers[0] (container 'x')",
            "spec.template.spec",
            "spec.template.spec.containers[0] (container 'x')",
        ),
    ],
)
def test_renamed_replaces_the_first_segment(field: str, new: str, expected: str) -> None:
    error = ConfigError(field, "bad: value")
    renamed = error.renamed(new)
    assert (renamed.field, renamed.message) == (expected, "bad: value")
    assert isinstance(renamed, FieldError)


def test_field_errors_pickle_with_their_parts() -> None:
    error = pickle.loads(pickle.dumps(ConfigError("a.b", "c: d")))  # noqa: S301 - our own bytes
    assert (error.field, error.message, str(error)) == ("a.b", "c: d", "a.b: c: d")


def test_session_errors_share_one_shape() -> None:
    for cls in (SessionNotFoundError, SessionBusyError):
        error = cls("run-42", "session-run-42-abc", "do this: then that")
        assert isinstance(error, SessionError)
        assert (error.session_id, error.stack_name, error.message) == (
            "run-42",
            "session-run-42-abc",
            "do this: then that",
        )
        assert str(error) == "session 'run-42' (stack session-run-42-abc): do this: then that"
    failed = SessionOperationError("run-42", "s", "up", "retry", "error: boom")
    assert str(failed) == "session 'run-42' (stack s): up failed: retry\nerror: boom"
    assert (failed.operation, failed.details, failed.message) == ("up", "error: boom", "retry")
