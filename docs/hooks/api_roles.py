"""Sphinx cross-reference roles in docstrings, shown as code on the API page.

The docstrings name other objects as Sphinx does (``:class:`~a.b.C```), which
reads well in the source and in ``help()``. mkdocstrings renders Markdown, so
the role would show as ``:class:`` before the code; this MkDocs hook removes
it after rendering, keeping what Sphinx would show: the last component with
``~``, the whole path without.
"""

from __future__ import annotations

import re
from typing import Any, Final

_ROLE: Final = re.compile(r":(?:class|func|meth|data|mod|attr|exc|obj):<code>(~?)([^<]+)</code>")


def without_roles(html: str) -> str:
    """``html`` with every rendered Sphinx role reduced to its code.

    >>> without_roles(":class:<code>~condukt_egress.spec.SessionSpec</code>")
    '<code>SessionSpec</code>'
    >>> without_roles(":func:<code>condukt_egress.ca.generate_ca</code>")
    '<code>condukt_egress.ca.generate_ca</code>'
    """

    def one(match: re.Match[str]) -> str:
        target = match[2]
        return f"<code>{target.rsplit('.', 1)[-1] if match[1] else target}</code>"

    return _ROLE.sub(one, html)


def on_page_content(html: str, **_: Any) -> str:
    """MkDocs hook: every page, after Markdown, before the theme."""
    return without_roles(html)
