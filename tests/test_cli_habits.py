"""kubectl's habits on every command: one ``error:`` line, ``-o``, ``-``, ``-n``, completion."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from condukt_egress.cli import COMMANDS, cli
from condukt_egress.contract import DEFAULT_IMAGE
from condukt_egress.naming import session_names

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "policy.yaml"
ANSI = re.compile(r"\x1b\[")
SECRET_A = session_names("a").secret_name({})


def run(*argv: str, stdin: str | bytes | None = None, **env: str) -> Result:
    return CliRunner().invoke(cli, list(argv), input=stdin, env=env or None)


def one_error_line(result: Result, code: int) -> str:
    """The single ``error:`` line of a failed command, after checking the status."""
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.output
    assert not re.search(r"\b[A-Z][A-Za-z]*(Error|Exception)\b", errors[0]), errors[0]
    return errors[0]


# --- no traceback, ever --------------------------------------------------------------------


def _flags(command: str) -> list[str]:
    ctx = click.Context(cli)
    cmd = cli.get_command(ctx, command)
    assert cmd is not None
    return sorted({opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)})


_VALUES = st.one_of(
    st.sampled_from(
        [
            "-",
            "json",
            "yaml",
            "text",
            "0",
            "-1",
            "99999",
            "1.5",
            "",
            " ",
            "a=b",
            "a",
            "Bad_NS",
            "agents",
            "/nonexistent/dir/x.yaml",
            "10.0.0.0/8",
            "10.0.0.1/32:5432",
            "127.0.0.1:1",
            "x:y",
            "rsa-2048",
            "public-roots",
            "*",
            "**",
            "--",
            "=",
            str(EXAMPLE),
            "\x00",
            "é",
            "--session-id",
        ]
    ),
    st.text(max_size=12),
)
_STDIN = st.one_of(
    st.sampled_from(
        [
            "",
            "rules:\n\t- allow: [a.com]\n",
            "{rules: [{allow: ['*']}]}",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a}]}\n",
            "apiVersion: v1\nkind: Pod\nspec: {hostNetwork: true, containers: []}\n",
            "- 1\n- 2\n",
            "kind: Deployment\napiVersion: apps/v1\nspec: 3\n",
            "{",
        ]
    ),
    st.text(max_size=40),
)


@st.composite
def argvs(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from([*sorted(COMMANDS), "nope"]))
    flags = _flags(command) if command in COMMANDS else ["--help"]
    # --decider imports a module by name and --connect resolves a host name: never let
    # random text pick either (events only ever reaches a closed loopback port).
    flags = [f for f in flags if f not in ("--decider", "--connect")]
    tokens = draw(st.lists(st.one_of(st.sampled_from(flags), _VALUES), max_size=8))
    if command == "events":
        if draw(st.booleans()):
            tokens += ["--connect", "127.0.0.1:1"]
        tokens += ["--no-reconnect", "--duration", "0.01"]
    return [command, *tokens]


@given(argv=argvs(), stdin=_STDIN)
def test_no_argv_ends_in_a_traceback(argv: list[str], stdin: str) -> None:
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)  # any file a command writes lands here
        try:
            result = CliRunner().invoke(
                cli, argv, input=stdin, env={"KUBECONFIG": "/nonexistent/kubeconfig"}
            )
        finally:
            os.chdir(here)
    assert result.exception is None or isinstance(result.exception, SystemExit), argv
    assert result.exit_code in (0, 1, 2), (argv, result.exit_code, result.stderr)
    assert "Traceback" not in result.output
    assert "unexpected failure" not in result.stderr, (argv, result.stderr)
    if result.exit_code != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, (argv, result.stderr)


@pytest.mark.parametrize(
    ("argv", "code", "expected"),
    [
        (
            ["render"],
            2,
            "error: Missing option '--session-id' (see 'condukt-egress render --help')",
        ),
        (
            ["render", "--session-id", "a", "--output-file", "/nonexistent/dir/x.yaml"],
            1,
            "error: /nonexistent/dir/x.yaml: No such file or directory",
        ),
        (["render", "--session-id", "a", "-n", "Bad_NS"], 1, "error: --namespace: must be a"),
        (["explain", "--policy", "/nonexistent.yaml", "a.com"], 1, "error: /nonexistent.yaml:"),
        (["render", "--nope"], 2, "error: No such option '--nope'"),
        (["nope"], 2, "error: No such command 'nope'"),
        (  # found by the property test: click's own path check crashed on a NUL
            ["inject", "--session-id", "a", "-f", "\x00"],
            2,
            "error: Invalid value for '-f' / '--filename': a file name cannot hold a NUL byte",
        ),
    ],
)
def test_every_mistake_is_one_error_line(argv: list[str], code: int, expected: str) -> None:
    assert one_error_line(run(*argv), code).startswith(expected)


def test_the_console_script_prints_no_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "condukt_egress", "render", "--output-file", "/nonexistent/d/x"],
        capture_output=True, text=True, check=False, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("error: Missing option '--session-id'")
    assert "Traceback" not in done.stderr


def test_an_unexpected_failure_is_one_line_that_asks_for_a_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from condukt_egress.cli import explain  # noqa: PLC0415

    def broken(*_: Any) -> str:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(explain, "verdict_line", broken)
    line = one_error_line(run("explain", "--policy", str(EXAMPLE), "a.com"), 1)
    assert "unexpected failure: division by zero" in line
    assert "CONDUKT_EGRESS_DEBUG=1" in line
    # With the variable set, the traceback is there for the bug report.
    result = run("explain", "--policy", str(EXAMPLE), "a.com", CONDUKT_EGRESS_DEBUG="1")
    assert isinstance(result.exception, ZeroDivisionError)


# --- -o is the format, --output-file the file ---------------------------------------------


@pytest.mark.parametrize("command", ["render", "render-guard", "inject"])
def test_output_names_a_format_and_never_a_file(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = {"render-guard": [], "inject": ["--session-id", "a", f"--secret-name={SECRET_A}"]}
    session = sessions.get(command, ["--session-id", "a"])
    stdin = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
    result = run(command, *session, "-o", "json", stdin=stdin)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["kind"] == "List"
    # The old `--output FILE` wrote the CA key to a file named `json`; now it is the format,
    # and a file name there says where files go.
    monkeypatch.chdir(tmp_path)
    line = one_error_line(run(command, *session, "--output", "x.yaml", stdin=stdin), 2)
    assert "'x.yaml' is not an output format" in line
    assert "--output-file FILE" in line
    line = one_error_line(run(command, *session, "--output-file", "json", stdin=stdin), 2)
    assert "'json' names an output format, not a file: use -o json" in line
    assert list(tmp_path.iterdir()) == []
    result = run(command, *session, "-o", "yaml", "--output-file", "out.yaml", stdin=stdin)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert list(yaml.safe_load_all((tmp_path / "out.yaml").read_text()))


# --- stdin, namespaces, policies ----------------------------------------------------------


def test_policy_dash_reads_stdin_everywhere() -> None:
    policy = EXAMPLE.read_text()
    explained = run("explain", "--policy", "-", "api.github.com", stdin=policy)
    assert explained.stdout == "api.github.com: allow by rules[1] (allow)\n"
    rendered = run("render", "--session-id", "a", "--policy", "-", stdin=policy)
    assert rendered.exit_code == 0, rendered.stderr
    secret = next(yaml.safe_load_all(rendered.stdout))
    assert "api.github.com" in json.loads(secret["stringData"]["policy.json"])["rules"][1]["hosts"]
    # JSON on stdin is YAML too.
    as_json = json.dumps(yaml.safe_load(policy))
    assert run("explain", "--policy", "-", "api.github.com", stdin=as_json).stdout == (
        explained.stdout
    )


def test_a_tab_in_yaml_says_so() -> None:
    tabbed = "rules:\n\t- allow: [a.com]\n"
    for argv in (["explain", "--policy", "-", "a.com"], ["render", "--session-id", "a",
                                                         "--policy", "-"]):  # fmt: skip
        line = one_error_line(run(*argv, stdin=tabbed), 1)
        assert "YAML does not allow tabs; indent with spaces" in line
        assert "line 2, column 1" in line
    tabbed_pod = "kind: Pod\nspec:\n\tx: 1\n"
    line = one_error_line(run("inject", "--session-id", "a", stdin=tabbed_pod), 1)
    assert line == (
        "error: stdin: YAML does not allow tabs; indent with spaces (a tab at line 3, column 1)"
    )


def test_a_lone_star_gets_a_warning_suggesting_double_star() -> None:
    result = run("explain", "--policy", "-", "api.github.com", stdin="{rules: [{allow: ['*']}]}")
    assert result.exit_code == 0
    assert result.stdout == "api.github.com: deny by default: default_deny\n"
    assert result.stderr == (
        "warning: stdin rules[0].allow[0] is '*', which matches one-label names only "
        "(like 'localhost'), never 'api.github.com'; write '**' to allow every host\n"
    )
    # '**' and patterns with more labels are what people mean: no warning.
    quiet = run("explain", "--policy", "-", "a.com", stdin="{rules: [{allow: ['**', '*.a.com']}]}")
    assert quiet.stderr == ""
    rendered = run(
        "render", "--session-id", "a", "--policy", "-", stdin="{rules: [{allow: [x.com, '*']}]}"
    )
    assert "warning: --policy rules[0].allow[1] is '*'" in rendered.stderr


def test_n_is_the_namespace_everywhere_one_is_taken() -> None:
    for command in ("render", "inject", "events"):
        assert "-n" in _flags(command), command
        assert "--namespace" in _flags(command), command


# --- shell, terminal, version ---------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_that_completes_commands_and_choices(shell: str) -> None:
    script = run("completion", shell)
    assert script.exit_code == 0
    assert "_CONDUKT_EGRESS_COMPLETE" in script.stdout
    # The script calls the command back; this is that call.
    words = "condukt-egress render -o "
    env = {"COMP_WORDS": words, "COMP_CWORD": "3", "_CONDUKT_EGRESS_COMPLETE": "bash_complete"}
    done = subprocess.run(
        [sys.executable, "-c", "from condukt_egress.cli import main; main()"],
        capture_output=True, text=True, check=False, timeout=60, env={**os.environ, **env},
    )  # fmt: skip
    assert done.stdout.split() == ["plain,yaml", "plain,json"]
    assert one_error_line(run("completion", "tcsh"), 2).startswith("error: Invalid value")


def test_version_names_the_sidecar_too() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout == f"condukt-egress 0.1.0 (sidecar {DEFAULT_IMAGE})\n"


def test_quiet_drops_the_notes_but_keeps_warnings_and_output() -> None:
    loud = run("render", "--session-id", "a", "--policy", "-", stdin="{rules: [{allow: ['*']}]}")
    assert "note:" in loud.stderr
    for argv in (["render", "-q"], ["-q", "render"], ["render", "--quiet"]):
        quiet = run(*argv, "--session-id", "a", "--policy", "-", stdin="{rules: [{allow: ['*']}]}")
        assert quiet.exit_code == 0
        assert [line.split()[0] for line in quiet.stderr.splitlines()] == ["warning:"]
        assert quiet.stdout.count("kind: ") == loud.stdout.count("kind: ")


def test_colour_only_on_a_terminal_and_never_with_no_color() -> None:
    plain = run("render")  # CliRunner's stderr is no terminal
    assert not ANSI.search(plain.stderr)
    coloured = CliRunner().invoke(cli, ["render"], color=True)  # as on a terminal
    assert ANSI.search(coloured.stderr)
    assert "error:" in ANSI.sub("", coloured.stderr)
    no_color = CliRunner().invoke(cli, ["render"], color=True, env={"NO_COLOR": "1"})
    assert not ANSI.search(no_color.stderr)
