"""The ``condukt-egress`` command: a thin click group over the library.

One module per subcommand; each registers itself on :data:`cli` when it is
imported, and the group imports only the one invoked (``render`` never loads
the control channel, ``events`` never loads the CA code). Library errors
(:class:`~condukt_egress.errors.EgressError`) are printed as
``Type: message`` on stderr with exit status 1, never as a traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import click

from condukt_egress.errors import EgressError
from condukt_egress.options import Option

__all__ = ["COMMANDS", "cli", "format_option", "from_flags", "main", "option_flags"]

_T = TypeVar("_T")

COMMANDS: Final = {
    "events": "condukt_egress.cli.events",
    "explain": "condukt_egress.cli.explain",
    "render": "condukt_egress.cli.render",
    "render-guard": "condukt_egress.cli.render_guard",
}
"""Each subcommand and the module that defines it (add one line per new command)."""


class _LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(COMMANDS[cmd_name])
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="condukt-egress")
def cli() -> None:
    """Per-session egress control for AI-agent sandbox pods."""


def format_option(choices: Sequence[str], help_text: str) -> Callable[[Any], Any]:
    """The ``--format`` flag every command shares; the first choice is the default.

    ``--format`` always names the output format and ``--output`` always a file,
    so one concept keeps one flag across commands.
    """
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=choices[0],
        show_default=True,
        help=help_text,
    )


def option_flags(options: Sequence[Option]) -> Callable[[Any], Any]:
    """One flag per declared option, in declaration order (``render``, ``render-guard``).

    Flag name, short alias, ``--no-`` form of a boolean, choices, repeatability
    and help all come from each :class:`~condukt_egress.options.Option`; every
    flag defaults to ``None`` so the option's own default applies.
    """

    def one(opt: Option) -> Callable[[Any], Any]:
        decls = [opt.flag] if opt.short is None else [opt.short, opt.flag]
        if opt.kind == "boolean":
            decls = [f"{opt.flag}/--no-{opt.flag.removeprefix('--')}"]
        help_text = opt.help if opt.required else f"{opt.help} [default: {opt.doc_default}]"
        if opt.repeatable:
            help_text += " (repeatable)"
        kind: Any = None
        if opt.choices:
            kind = click.Choice(opt.choices)
        elif opt.kind == "integer":
            kind = int
        elif opt.is_file:
            kind = click.Path(dir_okay=False)
        return click.option(
            *decls,
            opt.name,
            type=kind,
            default=None,
            required=opt.required,
            multiple=opt.repeatable,
            metavar=opt.metavar,
            help=help_text,
        )

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for opt in reversed(options):
            fn = one(opt)(fn)
        return fn

    return decorate


def from_flags(cls: Callable[..., _T], options: Sequence[Option], flags: Mapping[str, Any]) -> _T:
    """``cls`` built from a command's flags; a flag not given takes the option's default.

    Raises:
        ConfigError: A value is invalid; its field is the option's Python
            name (rename it to the flag for the user, as the commands do).
    """
    given = {o.name: o.from_flag(flags.get(o.name)) for o in options}
    return cls(**{name: value for name, value in given.items() if value is not None})


def main(argv: list[str] | None = None) -> None:
    """Run the command line; exit 1 with a one-line message on library errors."""
    try:
        cli.main(args=argv, prog_name="condukt-egress", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except EgressError as exc:
        click.echo(f"{type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
