"""The configuration reference, generated so it cannot drift from the code.

``docs/configuration.md`` holds sections between marker comments; each is
rebuilt here from its source of truth: the stack options from the option
registry (:data:`condukt_egress.spec.SESSION_OPTIONS`), the Python-only
fields from :class:`~condukt_egress.args.SandboxEgressArgs`, the guard's
options from :class:`~condukt_egress.guard.SandboxGuardArgs`, and the flags
of every command from the click command tree itself.

Two ways in, one function behind both:

* as a MkDocs hook (``hooks:`` in ``mkdocs.yml``), :func:`on_page_markdown`
  rebuilds the sections whenever the site is built, so the site is always
  current;
* as a script, ``python docs/hooks/reference.py`` rewrites the checked-in
  page (which is what GitHub shows), and ``--check`` exits 1 while it is
  stale. ``tests/test_docs.py`` runs the same check.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import click

from condukt_egress.args import SandboxEgressArgs
from condukt_egress.cli import cli
from condukt_egress.cli.render_guard import GUARD_OPTIONS
from condukt_egress.options import STACK_YAML
from condukt_egress.spec import SESSION_OPTIONS

PAGE: Final = Path(__file__).resolve().parent.parent / "configuration.md"
"""The configuration page, whose generated sections this module owns."""
PAGES: Final = (PAGE, PAGE.parent / "security.md")
"""Every page with generated sections: the security model lists the pod rules."""

_SECTION: Final = re.compile(
    r"(?P<begin><!-- BEGIN GENERATED (?P<name>[a-z-]+)"
    r" \(python docs/hooks/reference.py\) -->\n)"
    r".*?"
    r"(?P<end><!-- END GENERATED (?P=name) -->)",
    re.DOTALL,
)

_TYPES: Final = {"array": "list"}


def _prose(text: str) -> str:
    """Help text as Markdown: brackets outside code escaped, so ``[a][b]`` is no link."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # even parts lie outside code spans
        parts[i] = parts[i].replace("[", "\\[").replace("]", "\\]")
    return "`".join(parts)


def _cell(text: str) -> str:
    """Help text safe inside a Markdown table cell."""
    return _prose(" ".join(text.split())).replace("|", "\\|")


def _code(text: str) -> str:
    """Inline code that survives a table cell (a pipe cannot be escaped in code)."""
    return f"`{text}`"


def stack_options() -> str:
    """One summary table, then one section per stack option, in declaration order."""
    lines = [
        "| stack config key | type | default | `render` flag |",
        "|---|---|---|---|",
    ]
    for opt in SESSION_OPTIONS:
        default = _code(opt.doc_default) if opt.doc_literal else opt.doc_default
        lines.append(
            f"| [`{opt.config}`](#{opt.config.lower()}) | {_TYPES.get(opt.kind, opt.kind)} "
            f"| {_cell(default)} | {_code(_flag_usage(opt.flag, opt.metavar, opt.kind))} |"
        )
    for opt in SESSION_OPTIONS:
        default = _code(opt.doc_default) if opt.doc_literal else opt.doc_default
        lines += ["", f"### `{opt.config}`", "", _prose(opt.help)]
        if opt.choices:
            lines += ["", "One of " + ", ".join(_code(c) for c in opt.choices) + "."]
        flag = _code(_flag_usage(opt.flag, opt.metavar, opt.kind))
        if opt.repeatable:
            flag += " (repeatable, one entry each)"
        lines += [
            "",
            f"- Type: {_TYPES.get(opt.kind, opt.kind)}; default: {default}.",
            f"- Python: `{opt.name}`; `render`: {flag}.",
            f"- Set it: {opt.config_fix.replace(STACK_YAML, _code(STACK_YAML))}.",
        ]
    return "\n".join(lines)


def _flag_usage(flag: str, metavar: str | None, kind: str) -> str:
    """How a flag is typed: ``--x / --no-x`` for a boolean, else ``--x METAVAR``."""
    if kind == "boolean":
        return f"{flag} / --no-{flag.removeprefix('--')}"
    return f"{flag} {metavar or 'CHOICE'}"


def python_only_options() -> str:
    """The ``SandboxEgressArgs`` fields that are not stack options, with their defaults."""
    stack = {opt.name for opt in SESSION_OPTIONS}
    lines = ["| `SandboxEgressArgs` field | default |", "|---|---|"]
    for f in dataclasses.fields(SandboxEgressArgs):
        if f.name in stack:
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        lines.append(f"| `{f.name}` | {_code(default)} |")
    return "\n".join(lines)


def guard_options() -> str:
    """The guard's options: ``SandboxGuardArgs`` fields and ``render-guard`` flags."""
    lines = [
        "| `SandboxGuardArgs` field | `render-guard` flag | default | meaning |",
        "|---|---|---|---|",
    ]
    for opt in GUARD_OPTIONS:
        default = _code(opt.doc_default) if opt.doc_literal else opt.doc_default
        meaning = opt.help
        if opt.choices:
            meaning += " One of " + ", ".join(_code(c) for c in opt.choices) + "."
        lines.append(
            f"| `{opt.name}` | {_code(_flag_usage(opt.flag, opt.metavar, opt.kind))} "
            f"| {_cell(default)} | {_cell(meaning)} |"
        )
    return "\n".join(lines)


def commands(
    group: click.Group | None = None, prefix: str = "condukt-egress"
) -> Iterator[tuple[str, click.Command]]:
    """Every command under ``group`` (default: the whole CLI), depth first, by full name."""
    if group is None:
        group = cli
    ctx = click.Context(group, info_name=prefix)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        full = f"{prefix} {name}"
        yield full, command
        if isinstance(command, click.Group):
            yield from commands(command, full)


def flag_names(command: click.Command) -> list[str]:
    """Every spelling of every option of ``command`` (``-n``, ``--namespace``, ``--no-x``)."""
    return [
        name
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden
        for name in (*param.opts, *param.secondary_opts)
    ]


def cli_flags() -> str:
    """One section per command: its arguments and flags with their help text."""
    lines: list[str] = []
    for full, command in commands():
        ctx = click.Context(command, info_name=full)
        lines += ["", f"### `{full}`", "", (command.get_short_help_str(limit=200))]
        if isinstance(command, click.Group):
            continue
        rows = []
        for param in command.params:
            if isinstance(param, click.Option) and param.hidden:
                continue
            usage = " / ".join((*param.opts, *param.secondary_opts))
            metavar = None if getattr(param, "is_flag", False) else param.make_metavar(ctx)
            if isinstance(param, click.Argument):
                usage = param.make_metavar(ctx)
            elif metavar:
                usage = f"{usage} {metavar}"
            help_text = getattr(param, "help", None) or ""
            if isinstance(param, click.Argument):
                help_text = help_text or "Argument" + ("s." if param.nargs != 1 else ".")
            if isinstance(param, click.Option) and param.multiple and "repeatable" not in help_text:
                help_text += " (repeatable)"
            if isinstance(param.type, click.Choice):
                # Choices go in the text: a pipe inside a table's code span breaks the table.
                usage = usage.replace(f" {metavar}", " CHOICE")
                help_text += " One of " + ", ".join(_code(str(c)) for c in param.type.choices)
                help_text += "."
            rows.append(f"| {_code(usage)} | {_cell(help_text)} |")
        if rows:
            lines += ["", "| flag | meaning |", "|---|---|", *rows]
    return "\n".join(lines).lstrip("\n")


def pod_rules() -> str:
    """The pod rules in the words of :mod:`condukt_egress.podrules`, by part of the pod."""
    from condukt_egress.podrules import POD_RULES  # noqa: PLC0415 - only this section

    titles = {
        "pod": "The pod",
        "volume": "Its volumes",
        "container": "Its user containers",
        "metadata": "Its metadata",
    }
    lines: list[str] = []
    for scope, title in titles.items():
        lines += ["", f"**{title}**", ""]
        lines += [
            f"- {_prose(r.rule)} (`{r.id}`): {_prose(r.why)}."
            for r in POD_RULES
            if r.scope == scope
        ]
    return "\n".join(lines).lstrip("\n")


SECTIONS: Final[dict[str, Callable[[], str]]] = {
    "pod-rules": pod_rules,
    "stack-options": stack_options,
    "python-only-options": python_only_options,
    "guard-options": guard_options,
    "cli-flags": cli_flags,
}
"""Each generated section of the page and the function that writes it."""


def expand(markdown: str) -> str:
    """``markdown`` with every generated section rebuilt from the code.

    Raises:
        KeyError: A marker names a section this module does not know.
    """

    def one(match: re.Match[str]) -> str:
        body = SECTIONS[match["name"]]()
        return f"{match['begin']}\n{body}\n\n{match['end']}"

    return _SECTION.sub(one, markdown)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """MkDocs hook: rebuild the generated sections of the pages that have them."""
    if page.file.src_uri in {p.name for p in PAGES}:
        return expand(markdown)
    return markdown


def main(argv: list[str]) -> int:
    """Rewrite the pages, or with ``--check`` report whether they are current."""
    stale = 0
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        current = expand(text)
        if "--check" in argv:
            if current != text:
                print(f"{page} is stale: run `python docs/hooks/reference.py`", file=sys.stderr)
                stale = 1
        else:
            page.write_text(current, encoding="utf-8")
    return stale


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
