"""Hide credentials in what the sidecar reports before anything is shown.

The sidecar's events carry the workspace's request headers as sent,
credentials included, and paths with their query strings. A
:class:`Redactor` replaces the values of sensitive header names and query
parameters with :data:`REDACTED`. Header names are matched case-insensitively
against fnmatch-style globs: the built-in :data:`DEFAULT_HEADER_PATTERNS`
plus any extra ones (typically a policy's ``redact`` list).

Example:
    >>> r = Redactor(["x-tenant-*"])
    >>> r.headers({"authorization": "Bearer abc", "x-tenant-key": "k", "accept": "*/*"})
    {'authorization': '[REDACTED]', 'x-tenant-key': '[REDACTED]', 'accept': '*/*'}
    >>> r.path("/v1/items?api_key=abc&page=2")
    '/v1/items?api_key=[REDACTED]&page=2'
"""

from __future__ import annotations

import fnmatch
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Final

__all__ = ["DEFAULT_HEADER_PATTERNS", "REDACTED", "Redactor"]

REDACTED: Final = "[REDACTED]"
"""What a hidden value is replaced with."""

DEFAULT_HEADER_PATTERNS: Final = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "*auth*",
    "*token*",
    "*api-key*",
    "*api_key*",
    "*apikey*",
    "*secret*",
    "*password*",
    "*passwd*",
    "*credential*",
    "*signature*",
    "*session*",
    "*access*",
    "*private*",
    "*jwt*",
    "*-key",
    "*_key",
    "*.key",
    "key",
    "sig",
    "code",
    "pwd",
)
"""Header names (and query parameter names) always treated as credentials.

Besides the obvious ones, this covers Google/Gemini ``?key=``, Azure SAS
``sig=``, OAuth ``code=``, Azure ``ocp-apim-subscription-key`` and
``x-functions-key``, ``x-access-key`` and the like. Over-matching only hides
a value; under-matching shows a credential."""

_QUERY_PARAM: Final = re.compile(r"([?&;])([^=&;#]+)=([^&;#]*)")


class Redactor:
    """Replace the values of credential-bearing headers and query parameters.

    Args:
        patterns: Extra case-insensitive glob patterns over header names,
            e.g. a policy's ``redact`` entries.
        enabled: ``False`` shows everything (``--show-secrets``).
    """

    def __init__(self, patterns: Iterable[str] = (), *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.patterns: tuple[str, ...] = (*DEFAULT_HEADER_PATTERNS, *patterns)
        joined = "|".join(fnmatch.translate(p.lower()) for p in self.patterns)
        self._match = re.compile(joined, re.IGNORECASE).match
        self._cache: dict[str, bool] = {}

    def is_sensitive(self, name: str) -> bool:
        """Whether a header (or query parameter) named ``name`` holds a credential."""
        hit = self._cache.get(name)
        if hit is None:
            hit = self._match(name) is not None
            if len(self._cache) < 4096:  # bounded: names come from untrusted traffic
                self._cache[name] = hit
        return hit

    def headers(self, headers: Mapping[str, str] | None) -> dict[str, str] | None:
        """Return a copy of ``headers`` with sensitive values replaced."""
        if headers is None:
            return None
        if not self.enabled:
            return dict(headers)
        return {
            name: REDACTED if self.is_sensitive(name) else value for name, value in headers.items()
        }

    def path(self, path: str | None) -> str | None:
        """Return ``path`` with the values of sensitive query parameters replaced."""
        if path is None or not self.enabled or "?" not in path:
            return path

        def hide(match: re.Match[str]) -> str:
            sep, name, _value = match.groups()
            sensitive = self.is_sensitive(urllib.parse.unquote_plus(name))
            return f"{sep}{name}={REDACTED}" if sensitive else match.group(0)

        head, _, query = path.partition("?")
        return head + _QUERY_PARAM.sub(hide, "?" + query)
