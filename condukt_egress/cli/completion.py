"""``condukt-egress completion bash|zsh|fish``: the shell completion script, as kubectl prints it.

Click's own completion (:mod:`click.shell_completion`): the script calls the
command back with ``_CONDUKT_EGRESS_COMPLETE`` set, so flags, choices and
subcommands complete from the same declarations the command parses.

Example:
    source <(condukt-egress completion bash)      # ~/.bashrc
    condukt-egress completion zsh > "${fpath[1]}/_condukt-egress"
    condukt-egress completion fish > ~/.config/fish/completions/condukt-egress.fish
"""

from __future__ import annotations

from typing import Final

import click
from click.shell_completion import get_completion_class

from condukt_egress.cli import cli

__all__ = ["COMPLETE_VAR", "SHELLS", "completion"]

SHELLS: Final = ("bash", "zsh", "fish")
COMPLETE_VAR: Final = "_CONDUKT_EGRESS_COMPLETE"
"""The variable click's completion scripts set when they call the command back."""


@cli.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish); source it from your rc file."""
    completer = get_completion_class(shell)
    if completer is None:  # pragma: no cover - click ships all three
        raise click.UsageError(f"no completion for {shell}")
    click.echo(completer(cli, {}, "condukt-egress", COMPLETE_VAR).source())
