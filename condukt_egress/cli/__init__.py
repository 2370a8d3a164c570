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
from collections.abc import Callable, Sequence
from typing import Any, Final

import click

from condukt_egress.errors import EgressError

__all__ = ["COMMANDS", "cli", "format_option", "main"]

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
