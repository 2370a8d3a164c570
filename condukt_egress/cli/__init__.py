"""The ``condukt-egress`` command: a thin click group over the library, with kubectl's habits.

One module per subcommand; each registers itself on :data:`cli` when it is
imported, and the group imports only the one invoked (``render`` never loads
the control channel, ``events`` never loads the CA code).

No mistake ends in a traceback: the group's :meth:`~_LazyGroup.main` turns
every error into one ``error: ...`` line on stderr, without Python class
names, and exits 2 for a usage mistake (an unknown flag, a missing or
malformed flag value: what click refuses while parsing) or 1 for a value
the library refuses (:class:`~condukt_egress.errors.EgressError`) or a file
that cannot be read or written. As in kubectl, ``-o/--output`` names the
output format, ``-n`` the namespace, ``-f`` the input files and ``-`` stands
for stdin wherever a file is read; a file to write is ``--output-file``.
Notes on stderr go with ``--quiet``; colour appears only on a terminal (and
never with ``NO_COLOR`` set).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar

import click

from condukt_egress.contract import DEFAULT_IMAGE
from condukt_egress.errors import ConfigError, EgressError
from condukt_egress.options import Option

__all__ = [
    "COMMANDS",
    "FORMAT_WORDS",
    "InputFile",
    "cli",
    "format_option",
    "from_flags",
    "main",
    "note",
    "option_flags",
    "output_file_option",
    "policy_warnings",
    "quiet_option",
    "read_input",
    "warn",
    "write_output",
]

_T = TypeVar("_T")

COMMANDS: Final = {
    "completion": "condukt_egress.cli.completion",
    "events": "condukt_egress.cli.events",
    "explain": "condukt_egress.cli.explain",
    "inject": "condukt_egress.cli.inject",
    "render": "condukt_egress.cli.render",
    "render-guard": "condukt_egress.cli.render_guard",
}
"""Each subcommand and the module that defines it (add one line per new command)."""

FORMAT_WORDS: Final = frozenset({"yaml", "yml", "json", "text", "wide", "name"})
"""Values an ``--output-file`` refuses: they name an output format, not a file."""

_QUIET: Final = "condukt_egress.quiet"
_DEBUG_ENV: Final = "CONDUKT_EGRESS_DEBUG"


def _colour() -> bool | None:
    """``False`` when ``NO_COLOR`` is set; else None (click colours a terminal only)."""
    return False if os.environ.get("NO_COLOR") else None


def _say(prefix: str, colour: str, text: str) -> None:
    click.echo(f"{click.style(prefix, fg=colour, bold=True)} {text}", err=True, color=_colour())


def note(text: str) -> None:
    """Print ``note: text`` on stderr, unless ``--quiet`` was given."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or not ctx.find_root().meta.get(_QUIET):
        _say("note:", "cyan", text)


def warn(text: str) -> None:
    """Print ``warning: text`` on stderr (``--quiet`` keeps warnings: they may be mistakes)."""
    _say("warning:", "yellow", text)


def _fail(text: str, code: int) -> NoReturn:
    _say("error:", "red", text)
    sys.exit(code)


class _LazyGroup(click.Group):
    """A group that imports a subcommand's module only when used, and never shows a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(COMMANDS[cmd_name])
        return super().get_command(ctx, cmd_name)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command; every failure becomes one ``error:`` line and exit 1 or 2.

        With ``standalone_mode=False`` exceptions propagate, as click does.
        """
        prog = prog_name or "condukt-egress"
        if not standalone_mode:
            return super().main(args, prog, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else prog
            _fail(f"{exc.format_message().rstrip('.')} (see '{where} --help')", 2)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except click.exceptions.Abort:
            sys.exit(130)  # Ctrl-C: no message, as kubectl
        except EgressError as exc:
            _fail(str(exc), 1)
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, as a Unix filter does.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(1)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"{where}{exc.strerror or exc}", 1)
        except Exception as exc:
            if os.environ.get(_DEBUG_ENV):
                raise
            _fail(
                f"unexpected failure: {exc or 'no message'}. This is a bug; please report it "
                f"with the output of the same command run with {_DEBUG_ENV}=1",
                1,
            )
        sys.exit(code if isinstance(code, int) else 0)


def _set_quiet(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_root().meta[_QUIET] = True


def quiet_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``-q/--quiet``: leave out the ``note:`` lines on stderr (warnings and errors stay)."""
    return click.option(
        "-q",
        "--quiet",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_quiet,
        help="Leave out the notes on stderr (warnings and errors stay).",
    )(fn)


@click.group(
    "condukt-egress", cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(
    package_name="condukt-egress",
    message=f"%(prog)s %(version)s (sidecar {DEFAULT_IMAGE})",
)
@quiet_option
def cli() -> None:
    """Per-session egress control for AI-agent sandbox pods."""


class _Format(click.Choice[str]):
    """An output format; a value that is not one says ``-o`` is not a file any more."""

    name = "format"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.lower() in self.choices:
            return value.lower()
        choices = ", ".join(map(str, self.choices))
        hint = ""
        if ctx is not None and any(p.name == "output_file" for p in ctx.command.params):
            hint = "; write to a file with --output-file FILE"
        self.fail(
            f"{value!r} is not an output format: -o/--output takes one of {choices}, "
            f"as in kubectl{hint}",
            param,
            ctx,
        )
        return None  # unreachable: fail raises


def format_option(choices: Sequence[str], help_text: str) -> Callable[[Any], Any]:
    """``-o/--output FORMAT`` (also ``--format``), as in kubectl; the first choice is the default.

    ``-o`` always names the output format and ``--output-file`` always a file,
    so one concept keeps one flag across commands.
    """
    return click.option(
        "-o",
        "--output",
        "--format",
        "fmt",
        type=_Format(list(choices)),
        default=choices[0],
        show_default=True,
        metavar="|".join(choices),
        help=help_text,
    )


class _OutputFile(click.ParamType[Path | None]):
    """A file to write; ``-`` is stdout, and a format's name is refused as a file name."""

    name = "file"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Path):
            return value
        text = str(value)
        if text.lower() in FORMAT_WORDS:
            self.fail(
                f"{text!r} names an output format, not a file: use -o {text.lower()}; "
                f"to write a file of that name, give ./{text}",
                param,
                ctx,
            )
        if not text:
            self.fail("is empty; give a file name, or - for stdout", param, ctx)
        return None if text == "-" else Path(text)


class InputFile(click.Path):
    """A file to read (``-`` is stdin); a name with a NUL byte is a usage error, not a crash."""

    def __init__(self, *, stdin: bool = True) -> None:
        super().__init__(dir_okay=False, allow_dash=stdin)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The path, once it can be a file name (click's own check crashes on a NUL)."""
        if isinstance(value, str) and "\0" in value:
            self.fail("a file name cannot hold a NUL byte", param, ctx)
        return super().convert(value, param, ctx)


def output_file_option(help_text: str) -> Callable[[Any], Any]:
    """``--output-file FILE``: write there instead of stdout (``-`` is stdout)."""
    return click.option(
        "--output-file",
        "output_file",
        type=_OutputFile(),
        metavar="FILE",
        help=help_text,
    )


def write_output(path: Path | None, text: str, *, private: bool = False) -> None:
    """Write ``text`` to ``path``, or to stdout when None; ``private`` makes the file 0600.

    Raises:
        OSError: The file cannot be written (the group prints it as one line).
        click.BadParameter: The name holds a NUL byte.
    """
    if path is not None and "\0" in str(path):
        raise click.BadParameter("a file name cannot hold a NUL byte", param_hint="'--output-file'")
    if path is None:
        click.echo(text, nl=False)
        return
    if not private:
        path.write_text(text, encoding="utf-8")
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        os.fchmod(file.fileno(), 0o600)  # O_CREAT's mode does not apply to an existing file
        file.write(text)


def read_input(name: str) -> tuple[str, str]:
    """The text of the file ``name`` (``-``: stdin) and how messages name it.

    Raises:
        click.ClickException: The file cannot be read or is not UTF-8 (exit 1).
    """
    if name == "-":
        data = sys.stdin.buffer.read()
        shown = "stdin"
    else:
        try:
            data = Path(name).read_bytes()
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
            reason = getattr(exc, "strerror", None) or exc
            raise click.ClickException(f"{name!r}: cannot read: {reason}") from None
        shown = name
    try:
        return data.decode("utf-8"), shown
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"{shown}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None


def option_flags(options: Sequence[Option]) -> Callable[[Any], Any]:
    """One flag per declared option, in declaration order (``render``, ``render-guard``).

    Flag name, short alias, ``--no-`` form of a boolean, choices, repeatability
    and help all come from each :class:`~condukt_egress.options.Option`; every
    flag defaults to ``None`` so the option's own default applies. A file
    flag takes ``-`` for stdin.
    """

    def one(opt: Option) -> Callable[[Any], Any]:
        decls = [opt.flag] if opt.short is None else [opt.short, opt.flag]
        if opt.kind == "boolean":
            decls = [f"{opt.flag}/--no-{opt.flag.removeprefix('--')}"]
        help_text = opt.help if opt.required else f"{opt.help} [default: {opt.doc_default}]"
        if opt.repeatable:
            help_text += " (repeatable)"
        if opt.is_file:
            help_text += " (- reads stdin)"
        kind: Any = None
        if opt.choices:
            kind = click.Choice(opt.choices)
        elif opt.kind == "integer":
            kind = int
        elif opt.is_file:
            kind = InputFile()
        # No default at all for a required flag: click counts an explicit None as given.
        default: dict[str, Any] = {} if opt.required else {"default": None}
        return click.option(
            *decls,
            opt.name,
            type=kind,
            **default,
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
        ConfigError: A value is invalid; its field starts with the flag the
            user typed (``--policy.rules[0]``), not the option's Python name.
    """
    try:
        given = {o.name: o.from_flag(flags.get(o.name)) for o in options}
        return cls(**{name: value for name, value in given.items() if value is not None})
    except ConfigError as exc:
        flag = {o.name: o.flag for o in options}.get(exc.root)
        if flag is None:
            raise
        raise exc.renamed(flag) from None


def main(argv: list[str] | None = None) -> None:
    """Run the command line (the console script); returns on success, else exits 1 or 2."""
    try:
        cli.main(args=argv, prog_name="condukt-egress")
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise


def policy_warnings(policy: Any, where: str) -> None:
    """Warn about policy patterns that are valid but almost surely not meant.

    ``*`` alone matches a one-label name (``localhost``), never
    ``api.github.com``: whoever writes it means "every host", which is ``**``.
    """
    for index, rule in enumerate(getattr(policy, "rules", ())):
        for number, pattern in enumerate(rule.hosts):
            if pattern == "*":
                kind = rule.kind
                warn(
                    f"{where} rules[{index}].{kind}[{number}] is '*', which matches one-label "
                    f"names only (like 'localhost'), never 'api.github.com'; write '**' to "
                    f"{kind} every host"
                )
