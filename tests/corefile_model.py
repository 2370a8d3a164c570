"""What a generated ``Corefile`` forwards, read from the file's own text.

A reader of the subset :mod:`condukt_egress.dns` emits: server blocks on one
address, the first (if any) selected by a ``view`` whose ``expr`` is
expr-lang over ``name() matches '<RE2>'`` with ``!``, ``&&``, ``||``,
parentheses, ``true`` and ``false``. The regexes are checked to use only
``^ $ (?: | ) [...] +`` and host characters, where Go's RE2 and Python's
``re`` agree but for ``$``, which RE2 reads as end of text (Python also
matches before a final newline): it becomes ``\\Z``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_REGEX_SUBSET = re.compile(r"\^(?:\(\?:)?(?:[-0-9_a-z|()+]|\[[-.0-9_a-z]+\])*(?:\[\.\])?\$")
_TOKEN = re.compile(r"\s*(name\(\) matches '([^'\\]*)'|!|\(|\)|&&|\|\||true|false)")


@dataclass(frozen=True)
class Resolver:
    """The forwarding rule of a Corefile: an expression, or none (nothing forwarded)."""

    expression: str | None

    def forwards(self, name: str) -> bool:
        """Whether a query for ``name`` (as CoreDNS's ``name()`` shows it) is forwarded."""
        if self.expression is None:
            return False
        return _Parser(self.expression, name).parse()


def read(corefile: str) -> Resolver:
    """The forwarding rule of ``corefile``; asserts the shape the generator promises."""
    blocks = re.findall(r"^(\S+) \{\n(.*?)^\}\n", corefile, re.S | re.M)
    assert blocks, corefile
    assert len({address for address, _ in blocks}) == 1, "all blocks share one address"
    *forwarding, last = [body for _, body in blocks]
    assert "rcode NXDOMAIN" in last
    assert "forward" not in last
    assert "view" not in last
    if not forwarding:
        return Resolver(None)
    (body,) = forwarding
    assert "forward . /etc/resolv.conf" in body
    (expression,) = re.findall(r"^\s*expr (.*)$", body, re.M)
    return Resolver(expression)


def python_regex(go_regex: str) -> re.Pattern[str]:
    """A Go RE2 regex of the emitted subset as an equivalent Python pattern."""
    assert _REGEX_SUBSET.fullmatch(go_regex), f"outside the RE2/re common subset: {go_regex}"
    return re.compile(go_regex[:-1] + r"\Z")


class _Parser:
    """Recursive descent over expr-lang's ``||`` < ``&&`` < ``!`` precedence."""

    def __init__(self, text: str, name: str) -> None:
        self.tokens: list[tuple[str, str | None]] = []
        position = 0
        while position < len(text):
            found = _TOKEN.match(text, position)
            assert found is not None, f"unexpected text at {text[position:]!r}"
            word = found.group(1)
            self.tokens.append(
                ("match", found.group(2)) if word.startswith("name()") else (word, None)
            )
            position = found.end()
        self.name = name
        self.index = 0

    def parse(self) -> bool:
        value = self._or()
        assert self.index == len(self.tokens), "trailing tokens"
        return value

    def _peek(self) -> str | None:
        return self.tokens[self.index][0] if self.index < len(self.tokens) else None

    def _take(self) -> tuple[str, str | None]:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def _or(self) -> bool:
        value = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            value = value or right
        return value

    def _and(self) -> bool:
        value = self._unary()
        while self._peek() == "&&":
            self._take()
            right = self._unary()
            value = value and right
        return value

    def _unary(self) -> bool:
        kind, regex = self._take()
        if kind == "!":
            return not self._unary()
        if kind == "(":
            value = self._or()
            assert self._take()[0] == ")"
            return value
        if kind in ("true", "false"):
            return kind == "true"
        assert kind == "match", kind
        assert regex is not None
        return python_regex(regex).match(self.name) is not None
