"""Small builders of CEL text for the guard's admission policies.

Only standard CEL macros and functions are emitted (no Kubernetes
extension libraries), so the same text runs in the API server and in the
offline evaluator the tests use.
"""

from __future__ import annotations

import json

__all__ = ["has_path", "is_", "lit"]


def lit(value: object) -> str:
    """``value`` as a CEL literal (strings, ints, bools and lists of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if not value.isascii() or not value.isprintable():
            raise AssertionError(f"not a safe CEL string literal: {value!r}")
        return json.dumps(value)  # printable ASCII: JSON and CEL escapes agree
    if isinstance(value, list | tuple | frozenset | set):
        items = sorted(value) if isinstance(value, frozenset | set) else value
        return "[" + ", ".join(lit(v) for v in items) + "]"
    raise AssertionError(f"no CEL literal for {value!r}")


def has_path(root: str, path: str) -> str:
    """``has(a.b) && has(a.b.c) ...`` for ``root.path``: true iff every step is set."""
    steps = path.split(".")
    return " && ".join(f"has({root}.{'.'.join(steps[: i + 1])})" for i in range(len(steps)))


def is_(root: str, path: str, value: object = True) -> str:
    """CEL: ``root.path`` is set and is ``value`` (unset fields are never an error)."""
    test = f"{root}.{path}" if value is True else f"{root}.{path} == {lit(value)}"
    return f"({has_path(root, path)} && {test})"
