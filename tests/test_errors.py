"""Errors keep their parts: re-labelling changes a field, never cuts up a message."""

from __future__ import annotations

import importlib
import pickle
import pkgutil
import re

import pytest

import condukt_egress
from condukt_egress import errors
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


# -- the drawing in errors.py is the whole tree (issue 25 item 6) -----------------------

_DRAWN = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z]\w*Error)\b(?:.*?\[(?P<module>[\w.]+)\])?")


def _drawing() -> dict[str, tuple[str | None, str]]:
    """Each class drawn in errors.py's docstring: (its parent, the module it is imported from)."""
    doc = errors.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    drawn: dict[str, tuple[str | None, str]] = {}
    parents: list[str] = []  # the open ancestors, one per depth
    for text in block.splitlines():
        match = _DRAWN.match(text.strip("\n")[4:])  # the block is indented by 4
        assert match, f"not a tree line: {text!r}"
        depth = len(match["indent"]) // 4
        del parents[depth:]
        drawn[match["name"]] = (parents[-1] if parents else None, match["module"] or "errors")
        parents.append(match["name"])
    return drawn


def _subclasses() -> dict[str, tuple[str | None, str]]:
    """Every EgressError subclass of the package (all modules imported), with its parent."""
    for info in pkgutil.walk_packages(condukt_egress.__path__, "condukt_egress."):
        importlib.import_module(info.name)
    found: dict[str, tuple[str | None, str]] = {"EgressError": (None, errors.__name__)}
    todo = [errors.EgressError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("condukt_egress."):
                found[sub.__name__] = (cls.__name__, sub.__module__)
                todo.append(sub)
    return found


def test_the_drawing_in_errors_is_the_whole_error_tree() -> None:
    drawn, real = _drawing(), _subclasses()
    assert {name: parent for name, (parent, _m) in drawn.items()} == {
        name: parent for name, (parent, _m) in real.items()
    }, "draw every EgressError subclass, under its parent, in errors.py's docstring"
    for name, (_parent, module) in drawn.items():
        public = importlib.import_module(f"condukt_egress.{module}")
        assert getattr(public, name).__module__ == real[name][1], (name, module)
