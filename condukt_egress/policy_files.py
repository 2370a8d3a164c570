r"""Policy files: reading a policy document from YAML or JSON, safely and with clear errors.

:meth:`EgressPolicy.load <condukt_egress.policy.EgressPolicy.load>` reads a
file here, then builds the policy from the document. A policy file is small
and written by a person, so reading it is strict:

* the suffix picks the parser (``.yaml``, ``.yml``, ``.json``); ``-`` reads
  stdin as YAML, which reads JSON too;
* at most :data:`MAX_POLICY_FILE_BYTES`, UTF-8, not empty;
* YAML is read safely, with no aliases (a few hundred bytes of nested
  aliases expand to gigabytes) and no integers past Python's 4,300 digits;
* a key repeated in one mapping or object is an error, never "the last wins";
* every error names the file, and the line and column when the parser gives
  them; a tab in YAML is named as such.

Example:
    >>> import yaml
    >>> try:
    ...     yaml.safe_load("rules:\n\t- allow: [a.com]")
    ... except yaml.MarkedYAMLError as error:
    ...     print(yaml_problem(error, "rules:\n\t- allow: [a.com]"))
    YAML does not allow tabs; indent with spaces (a tab at line 2, column 1)
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Hashable
from pathlib import Path
from typing import Any, Final, cast

import yaml

from condukt_egress._text import shown
from condukt_egress.errors import PolicyError

__all__ = ["MAX_POLICY_FILE_BYTES", "read_document", "yaml_problem"]

MAX_POLICY_FILE_BYTES: Final = 1024 * 1024
"""Largest policy file :meth:`~condukt_egress.policy.EgressPolicy.load` reads (1 MiB;
10,000 patterns of 100 characters fit in it)."""

_TOO_MANY_DIGITS: Final = (
    "an integer of more than 4,300 digits; "
    "no policy value is that large: write a number within its documented range"
)


def read_document(path: str | os.PathLike[str]) -> tuple[str, object]:
    """The document in a policy file, and the name its errors give the file.

    Args:
        path: The file; its suffix picks the parser. ``-`` reads stdin as
            YAML (which reads JSON too), as kubectl's ``-f -`` does.

    Returns:
        The file's name for messages (``stdin`` for ``-``) and the parsed
        document, never None.

    Raises:
        PolicyError: The suffix is not accepted, or the file cannot be read,
            is too large, is not UTF-8, cannot be parsed (with line and column
            when the parser gives them) or is empty.
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if str(path) == "-":
        file, suffix = Path("stdin"), ".yaml"
        raw = sys.stdin.buffer.read(MAX_POLICY_FILE_BYTES + 1)
        return str(file), _parsed(raw, file, suffix)
    if suffix not in (".yaml", ".yml", ".json"):
        raise PolicyError(
            str(file),
            f"unsupported suffix {file.suffix!r}; use .yaml, .yml or .json",
        )
    try:
        with file.open("rb") as stream:
            raw = stream.read(MAX_POLICY_FILE_BYTES + 1)
    except (OSError, ValueError) as error:  # ValueError: a NUL in the name
        reason = getattr(error, "strerror", None) or error
        raise PolicyError(str(file), f"cannot read the file: {reason}") from error
    return str(file), _parsed(raw, file, suffix)


def _parsed(raw: bytes, file: Path, suffix: str) -> object:
    """The document in ``raw``, read from ``file`` (named so in errors)."""
    try:
        if len(raw) > MAX_POLICY_FILE_BYTES:
            raise PolicyError(
                str(file),
                f"is larger than {MAX_POLICY_FILE_BYTES // 1024} KiB, far beyond any real "
                "policy; use '*' or '**' patterns to cover many names",
            )
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PolicyError(
            str(file), f"not UTF-8 text (byte {error.start}); save it as UTF-8"
        ) from error
    document = _parse_json(text, file) if suffix == ".json" else _parse_yaml(text, file)
    if document is None:
        raise PolicyError(
            str(file),
            "the document is empty; write a policy such as "
            '{"rules": [{"allow": ["api.github.com"]}], "default": "deny"}',
        )
    return document


class _DuplicateKeyError(Exception):
    """A JSON object repeats a key (the stdlib would keep the last silently)."""


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that refuses repeated keys."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _parse_json(text: str, file: Path) -> object:
    """Parse JSON, refusing duplicate keys; errors carry line and column."""
    try:
        return cast("object", json.loads(text, object_pairs_hook=_unique_pairs))
    except json.JSONDecodeError as error:
        raise PolicyError(
            str(file),
            f"not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}",
        ) from None
    except _DuplicateKeyError as error:
        raise PolicyError(
            str(file),
            f"duplicate key {shown(error.args[0])}; each key may appear once per object, "
            "merge the two entries",
        ) from None
    except RecursionError:
        raise PolicyError(str(file), "nested too deeply to be a policy") from None
    except ValueError:  # an integer past Python's 4,300-digit conversion limit
        raise PolicyError(str(file), _TOO_MANY_DIGITS) from None


class _PolicyLoader(yaml.SafeLoader):
    """A safe YAML loader for policy files: no aliases, no duplicate keys, bounded integers.

    Aliases (``*name``) are refused where the document is composed, before
    anything is built: a few hundred bytes of nested aliases expand to
    gigabytes (billion laughs) and every message quoting a value would walk
    them. A policy never needs one.
    """

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None,
                None,
                f"found an alias (*{event.anchor}); aliases are not accepted in a policy, "
                "write the value out in full",
                event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # past Python's 4,300-digit limit: ours, not a traceback
            raise yaml.constructor.ConstructorError(
                None, None, _TOO_MANY_DIGITS, node.start_mark
            ) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: {...}` merges (of inline mappings: aliases are refused)
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping",
                        node.start_mark,
                        f"found duplicate key {shown(key)}; merge the two entries",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_PolicyLoader.add_constructor("tag:yaml.org,2002:int", _PolicyLoader.construct_yaml_int)


def yaml_problem(error: yaml.MarkedYAMLError, text: str = "") -> str:
    """What a YAML parse error says, with its line and column; a tab gets the fix.

    PyYAML reports a tab as a character "that cannot start any token"
    (libyaml without saying which); a person needs to hear that YAML does
    not allow tabs. ``text`` is the parsed text, where the mark points.
    """
    mark = error.problem_mark or error.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = error.problem or error.context or "unreadable"
    lines = text.split("\n")
    before = lines[mark.line][: mark.column + 1] if mark and mark.line < len(lines) else ""
    if "\\t" in problem or "\t" in problem or "\t" in before:
        return f"YAML does not allow tabs; indent with spaces (a tab{where})"
    return f"not valid YAML{where}: {problem}"


def _parse_yaml(text: str, file: Path) -> object:
    """Parse YAML safely, refusing duplicate keys; errors carry line and column."""
    try:
        return cast("object", yaml.load(text, Loader=_PolicyLoader))  # noqa: S506
    except yaml.MarkedYAMLError as error:
        raise PolicyError(str(file), yaml_problem(error, text)) from None
    except yaml.YAMLError as error:
        raise PolicyError(str(file), f"not valid YAML: {error}") from None
    except RecursionError:
        raise PolicyError(str(file), "nested too deeply to be a policy") from None
