"""The ``condukt-egress`` command: a thin click group over the library.

One module per subcommand; each registers itself on :data:`cli`. Library
errors (:class:`~condukt_egress.errors.EgressError`) are printed as
``Type: message`` on stderr with exit status 1, never as a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from condukt_egress.errors import EgressError

__all__ = ["cli", "format_option", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


def _register() -> None:
    """Import the subcommand modules so they attach to :data:`cli`."""
    from condukt_egress.cli import _commands  # noqa: F401, PLC0415


def main(argv: list[str] | None = None) -> None:
    """Run the command line; exit 1 with a one-line message on library errors."""
    _register()
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
