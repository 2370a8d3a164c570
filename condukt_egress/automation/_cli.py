"""The ``pulumi`` CLI as session stacks use it: found once, fed secrets on stdin, interrupted.

The Pulumi SDK runs most commands; three things it does not do live here:
finding and version-checking the CLI with an error that says how to install
it, setting a secret config value without putting it in a command line
(``ps`` shows argv to every local user), and interrupting a running
operation of this process the way Ctrl-C does.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from pulumi.automation import CommandResult, InvalidVersionError, PulumiCommand
from pulumi.automation.errors import create_command_error

from condukt_egress.automation._errors import PassphraseRequiredError, PulumiCliError

__all__ = [
    "INSTALL_HINT",
    "MIN_PULUMI_VERSION",
    "find_cli",
    "interrupt_operations",
    "passphrase_env",
    "set_secrets",
]

MIN_PULUMI_VERSION: Final = (3, 203)
"""Oldest ``pulumi`` CLI accepted: 3.181 runs inline programs for refresh and destroy,
3.187 checks object-typed config (``Pulumi.yaml``), 3.203 sets object values with
``config set-all --json``."""

INSTALL_HINT: Final = (
    "install it (https://www.pulumi.com/docs/iac/download-install/, e.g. "
    "`curl -fsSL https://get.pulumi.com | sh`) and put it on PATH, or pass "
    "pulumi_root=<directory holding bin/pulumi>"
)


def passphrase_env(passphrase: str | None, env: Mapping[str, str]) -> dict[str, str]:
    """The secrets-provider variable to pass: explicit, then ``env``, then ``os.environ``."""
    if passphrase is not None:
        if not isinstance(passphrase, str) or not passphrase:
            raise PassphraseRequiredError(
                "passphrase: must be a non-empty string; it encrypts the session CA key in "
                "the stack state, so pass the same secret every time (e.g. from a secret store)"
            )
        return {"PULUMI_CONFIG_PASSPHRASE": passphrase}
    for source in (env, os.environ):
        if source.get("PULUMI_CONFIG_PASSPHRASE"):
            return {"PULUMI_CONFIG_PASSPHRASE": source["PULUMI_CONFIG_PASSPHRASE"]}
        if source.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
            path = Path(source["PULUMI_CONFIG_PASSPHRASE_FILE"]).expanduser().resolve()
            return {"PULUMI_CONFIG_PASSPHRASE_FILE": str(path)}
    raise PassphraseRequiredError(
        "passphrase: none given; the session stacks encrypt their secrets (the CA key) with a "
        "passphrase and none is invented for you. Pass SessionStacks(passphrase=...), or set "
        "PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE in env= or the environment"
    )


def find_cli(root: str | None) -> PulumiCommand:
    """The ``pulumi`` CLI in ``root/bin`` or on PATH, checked to be new enough.

    Raises:
        PulumiCliError: Not found, not runnable, or older than :data:`MIN_PULUMI_VERSION`.
    """
    where = f"in {root}/bin" if root else "on PATH"
    try:
        command = PulumiCommand(root=root)
    except (FileNotFoundError, PermissionError, NotADirectoryError):
        raise PulumiCliError(f"the `pulumi` CLI was not found {where}; {INSTALL_HINT}") from None
    except subprocess.CalledProcessError as exc:
        raise PulumiCliError(
            f"`pulumi version` failed (exit {exc.returncode}); reinstall the CLI: {INSTALL_HINT}"
        ) from exc
    except InvalidVersionError as exc:
        raise PulumiCliError(f"unusable `pulumi` CLI: {exc}") from exc
    version = command.version
    if version is not None and (version.major, version.minor) < MIN_PULUMI_VERSION:
        raise PulumiCliError(
            f"the `pulumi` CLI is {version}; session stacks need "
            f"{'.'.join(map(str, MIN_PULUMI_VERSION))} or newer (object-typed stack "
            f"config set with `config set-all --json`); upgrade it: {INSTALL_HINT}"
        )
    return command


def set_secrets(
    command: PulumiCommand,
    work_dir: Path,
    stack: str,
    secrets: Mapping[str, str],
    env: Mapping[str, str],
    *,
    config_file: Path | None = None,
) -> None:
    """Set secret config values through the CLI's standard input, never its argv.

    ``pulumi config set --secret KEY`` with no value reads the value from a
    non-terminal stdin and drops one trailing newline, which we add.

    Raises:
        CommandError: The CLI refused (as the SDK raises it).
    """
    full_env = {**os.environ, **env, "PULUMI_AUTOMATION_API": "true"}
    if os.path.isabs(command.command):
        full_env["PATH"] = os.pathsep.join(
            [os.path.dirname(command.command), full_env.get("PATH", "")]
        )
    for key, value in secrets.items():
        args = [command.command, "--non-interactive", "config", "set", "--secret"]
        args += ["--stack", stack]
        if config_file is not None:
            args += ["--config-file", str(config_file)]
        done = subprocess.run(  # noqa: S603 - our CLI, fixed arguments, the value on stdin
            [*args, "--", key],
            input=value + "\n",
            capture_output=True,
            text=True,
            cwd=work_dir,
            env=full_env,
            check=False,
        )
        if done.returncode != 0:
            raise create_command_error(
                CommandResult(stdout=done.stdout, stderr=done.stderr, code=done.returncode)
            )


def interrupt_operations(work_dir: Path) -> int:
    """Send SIGINT to this process's CLI children running in ``work_dir``; how many.

    SIGINT is the CLI's Ctrl-C: it stops starting resource operations, lets
    the running ones finish, saves the state and releases the stack's lock,
    so the stack stays destroyable. Linux (``/proc``) only; elsewhere 0.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return 0
    me, target, sent = os.getpid(), os.path.realpath(work_dir), 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])
            if parent != me or os.path.realpath(entry / "cwd") != target:
                continue
            os.kill(int(entry.name), signal.SIGINT)
        except (OSError, ValueError):
            continue
        sent += 1
    return sent
