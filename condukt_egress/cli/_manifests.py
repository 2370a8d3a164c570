"""Manifests in and out: ``-f FILE|-`` for ``render`` and ``inject``, and ``-o yaml|json``.

No CA code is imported here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import click

from condukt_egress.cli import InputFile, format_option, read_input
from condukt_egress.render import FORMATS, read_manifests

__all__ = ["manifest_files_option", "manifest_format_option", "read_documents"]

manifest_format_option: Final = format_option(
    FORMATS, "Output format: a multi-document YAML stream or a JSON v1/List."
)
"""``-o yaml|json`` of the commands that print manifests: render, render-guard, inject."""


def manifest_files_option(help_text: str) -> Callable[[Any], Any]:
    """``-f/--filename FILE`` (repeatable; ``-`` is stdin), as in ``kubectl apply -f``."""
    return click.option(
        "-f",
        "--filename",
        "files",
        multiple=True,
        metavar="FILE",
        type=InputFile(),
        help=help_text,
    )


def read_documents(files: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every document of ``files`` in order (``-`` is stdin, read once).

    Raises:
        click.UsageError: ``-`` is given twice.
        ConfigError: A file is not YAML or holds a document that is no object.
    """
    if files.count("-") > 1:
        raise click.UsageError("-f - (stdin) is given twice; stdin can be read once")
    documents: list[dict[str, Any]] = []
    for name in files:
        text, shown = read_input(name)
        documents.extend(read_manifests(text, shown))
    return documents
