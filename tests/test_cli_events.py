"""``condukt-egress events`` end to end: a subprocess against the sidecar double."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from condukt_egress.cli import cli
from tests.sidecar_double import (
    ThreadedDouble,
    all_kinds,
    decision_request_frame,
    event_frame,
    line,
)

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-live-123"


@pytest.fixture
def double() -> Iterator[ThreadedDouble]:
    d = ThreadedDouble()
    try:
        yield d
    finally:
        d.close()


def spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "condukt_egress", "events", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"command did not stop\nstdout:\n{out}\nstderr:\n{err}")
    return proc.returncode, out, err


def test_text_output_shows_events_live_answers_decisions_and_survives_junk(
    double: ThreadedDouble,
) -> None:
    proc = spawn(
        "--connect",
        f"127.0.0.1:{double.port}",
        "--count",
        "7",
        "--decider",
        "tests.sidecar_double:allow_example_org",
    )
    d = double.double
    double.run(d.wait_for_peer())
    kinds = all_kinds()
    stream = b"".join(line(k) for k in kinds[:3])
    double.run(d.send_split(stream, [5, 100, 3, 250]))
    double.run(d.send(b"garbage\n", b"\xff\xfe\r\n", b"\n", kinds[3], kinds[4]))
    answer = double.run(d.ask(decision_request_frame("api.example.org", request_id="7b0c-ok")))
    assert answer == {"type": "decision", "id": "7b0c-ok", "action": "allow"}
    code, out, err = finish(proc)
    assert code == 0, err
    rows = out.splitlines()
    assert len(rows) == 7  # 5 events, 1 decision request, 1 decision
    assert [row.split()[1] for row in rows[:5]] == [k["kind"] for k in kinds]
    closed = rows[2]
    assert closed.startswith("2026-11-28T19:37:07.123Z request_closed")
    assert "GET api.example.com:443 /v1/models 200" in closed
    assert "reason=matched_deny_list rule=#0:deny" in rows[3]
    assert "decision_request https api.example.org:443 id=7b0c-ok" in rows[5]
    assert "decision         allow api.example.org:443 by=decider" in rows[6]
    assert SECRET not in out
    assert "connected to 127.0.0.1:" in err
    assert "skipped line" in err
    assert "summary: 7 shown" in err
    assert "by kind: " in err
    assert "by host: api.example.com 4, evil.example 1" in err
    assert "malformed lines 2" in err


def test_stopping_at_the_count_still_answers_the_last_decision_request(
    double: ThreadedDouble,
) -> None:
    # --count reached by a decision request: its answer must still reach the sidecar.
    proc = spawn(
        "--connect",
        f"127.0.0.1:{double.port}",
        "--count",
        "1",
        "--kind",
        "decision_request",
        "--decider",
        "tests.sidecar_double:allow_example_org",
    )
    d = double.double
    double.run(d.wait_for_peer())
    double.run(d.send(decision_request_frame("api.example.org", request_id="7b0c-last")))
    code, _out, err = finish(proc)
    assert code == 0, err
    assert d.received == [{"type": "decision", "id": "7b0c-last", "action": "allow"}]


def test_a_cached_decision_is_printed_after_its_request(double: ThreadedDouble) -> None:
    proc = spawn(
        "--connect", f"127.0.0.1:{double.port}", "--count", "4",
        "--decider", "tests.sidecar_double:allow_example_org",
    )  # fmt: skip
    d = double.double
    double.run(d.wait_for_peer())
    for request_id in ("7b0c-first", "7b0c-cached"):
        double.run(d.ask(decision_request_frame("api.example.org", request_id=request_id)))
    code, out, err = finish(proc)
    assert code == 0, err
    rows = [row.split()[1:3] for row in out.splitlines()]
    assert rows == [
        ["decision_request", "https"], ["decision", "allow"],
        ["decision_request", "https"], ["decision", "allow"],
    ], out  # fmt: skip
    assert "by=cache" in out.splitlines()[3]


def test_json_output_follows_the_documented_schema_and_redacts(
    double: ThreadedDouble, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"rules": [], "default": "deny", "redact": ["x-tenant-*"]}))
    proc = spawn(
        "--connect", f"127.0.0.1:{double.port}", "--format", "json", "--count", "1",
        "--policy", str(policy),
    )  # fmt: skip
    headers = {"authorization": f"Bearer {SECRET}", "x-tenant-key": "t1", "accept": "*/*"}
    frame = event_frame(
        "request_closed", method="POST", path=f"/v1?api_key={SECRET}&q=1", headers=headers,
        status=201, rule=(2, "decide"), finished_at="2026-11-28T19:37:08.5Z",
    )  # fmt: skip
    double.run(double.double.send(frame))
    code, out, err = finish(proc)
    assert code == 0, err
    (record,) = [json.loads(row) for row in out.splitlines()]
    assert record == {
        "type": "event",
        "at": "2026-11-28T19:37:07.123456789Z",
        "kind": "request_closed",
        "session_id": "s-1",
        "request_id": frame["request"]["id"],
        "scheme": "https",
        "host": "api.example.com",
        "port": 443,
        "method": "POST",
        "path": "/v1?api_key=[REDACTED]&q=1",
        "status": 201,
        "reason": None,
        "rule": {"index": 2, "kind": "decide"},
        "remote_addr": "10.0.0.7:40312",
        "bytes_in": 0,
        "bytes_out": 0,
        "started_at": "2026-11-28T19:37:07.100Z",  # as the sidecar sent it: no round trip
        "finished_at": "2026-11-28T19:37:08.5Z",
        "headers": {"authorization": "[REDACTED]", "x-tenant-key": "[REDACTED]", "accept": "*/*"},
    }


def test_show_secrets_shows_credentials(double: ThreadedDouble) -> None:
    proc = spawn("--connect", f"127.0.0.1:{double.port}", "--format", "json", "--count", "1",
                 "--show-secrets")  # fmt: skip
    frame = event_frame("request_closed", headers={"cookie": SECRET})
    double.run(double.double.send(frame))
    code, out, _err = finish(proc)
    assert code == 0
    assert json.loads(out)["headers"] == {"cookie": SECRET}


def test_kind_and_host_filters(double: ThreadedDouble) -> None:
    proc = spawn(
        "--connect", f"127.0.0.1:{double.port}", "--format", "json", "--count", "2",
        "--kind", "request_denied", "--host", "*.example.org",
    )  # fmt: skip
    double.run(
        double.double.send(
            event_frame("request_denied", host="a.b.example.org", reason="default_deny"),
            event_frame("request_opened", host="x.example.org"),
            event_frame("request_denied", host="other.com", reason="default_deny"),
            event_frame("request_denied", host="x.example.org", reason="default_deny"),
            event_frame("request_denied", host="Y.EXAMPLE.ORG", reason="default_deny"),
        )
    )
    code, out, _err = finish(proc)
    assert code == 0
    assert [json.loads(row)["host"] for row in out.splitlines()] == [
        "x.example.org",
        "Y.EXAMPLE.ORG",
    ]


def test_a_failing_decider_denies_through_the_command(double: ThreadedDouble) -> None:
    proc = spawn("--connect", f"127.0.0.1:{double.port}", "--decider",
                 "tests.sidecar_double:broken", "--kind", "decision", "--count", "1")  # fmt: skip
    answer = double.run(double.double.ask(decision_request_frame("x.io", request_id="b-1")))
    assert answer == {
        "type": "decision",
        "id": "b-1",
        "action": "deny",
        "reason": "condukt-egress: decider failed",
    }
    code, out, err = finish(proc)
    assert code == 0
    assert "deny x.io:443 by=fail_closed" in out
    assert "decider failed for x.io:443 (id b-1): raised RuntimeError" in err
    assert "decider failures 1" in err


def test_reconnects_after_the_channel_drops(double: ThreadedDouble) -> None:
    proc = spawn("--connect", f"127.0.0.1:{double.port}", "--count", "2")
    d = double.double
    double.run(d.send(event_frame("request_opened", request_id="one")))
    double.run(d.send(b'{"type":"event","kind":"requ'))
    double.run(d.drop_peer())
    double.run(d.wait_for_peer())
    double.run(d.send(event_frame("request_opened", request_id="two")))
    code, out, err = finish(proc)
    assert code == 0, err
    first, gap, second = out.splitlines()
    assert "request_opened" in first
    assert "request_opened" in second
    assert " gap " in gap
    assert "reconnect #1: control channel reconnected; frames around this point may be " in gap
    assert "(the sidecar notices a dropped peer only when a write to it fails)" in gap
    assert "dropped (closed by the sidecar); reconnecting in" in err
    assert "reconnected to 127.0.0.1:" in err
    assert "reconnects 1" in err


def test_json_marks_every_reconnect_as_a_gap_and_count_ignores_it(
    double: ThreadedDouble,
) -> None:
    # The sidecar notices a dropped peer only when a write fails (upstream
    # src/proxy/control.rs:137-156, write_loop returns only when write_all fails):
    # frames around a reconnect may be lost.
    proc = spawn("--connect", f"127.0.0.1:{double.port}", "--format", "json", "--count", "2",
                 "--kind", "request_closed")  # fmt: skip
    d = double.double
    for _ in range(2):
        double.run(d.wait_for_peer())
        double.run(d.drop_peer())
    double.run(d.wait_for_peer())
    double.run(d.send(event_frame("request_closed", request_id="a")))
    double.run(d.send(event_frame("request_closed", request_id="b")))
    code, out, err = finish(proc)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["type"] for r in records] == ["gap", "gap", "event", "event"]
    assert [r["reconnects"] for r in records[:2]] == [1, 2]
    assert set(records[0]) == {"type", "at", "reconnects", "reason"}
    assert records[0]["reason"].startswith("control channel reconnected; frames around")
    assert "reconnects 2" in err


def test_no_reconnect_stops_with_the_summary(double: ThreadedDouble) -> None:
    proc = spawn("--connect", f"127.0.0.1:{double.port}", "--no-reconnect")
    double.run(double.double.send(event_frame("request_opened")))
    double.run(double.double.drop_peer())
    code, out, err = finish(proc)
    assert code == 0
    assert len(out.splitlines()) == 1
    assert "closed (closed by the sidecar)" in err
    assert "summary: 1 shown" in err


def test_ctrl_c_exits_cleanly_with_the_summary(double: ThreadedDouble) -> None:
    proc = spawn("--connect", f"127.0.0.1:{double.port}")
    double.run(double.double.send(event_frame("request_opened")))
    assert proc.stdout is not None
    assert "request_opened" in proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    code, _out, err = finish(proc)
    assert code == 0
    assert "Traceback" not in err
    assert "summary: 1 shown" in err


def test_duration_stops_a_quiet_channel(double: ThreadedDouble) -> None:
    code, out, err = finish(spawn("--connect", f"127.0.0.1:{double.port}", "--duration", "0.3"))
    assert code == 0
    assert out == ""
    assert "summary: 0 shown" in err


def test_an_unreachable_target_is_one_line_and_exit_1() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out, err = finish(spawn("--connect", f"127.0.0.1:{port}"))
    assert code == 1
    assert out == ""
    assert err.strip().splitlines()[-1] == (
        f"error: cannot connect to the control channel at 127.0.0.1:{port}: Connection refused"
    )
    assert "summary" not in err
    assert "Traceback" not in err


def test_port_forward_without_credentials_is_one_line_and_exit_1(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    code, _out, err = finish(
        spawn("--namespace", "agents", "--pod", "p", "--kubeconfig", str(missing))
    )
    assert code == 1
    assert err.strip().startswith("error: cannot load Kubernetes credentials")
    assert len(err.strip().splitlines()) == 1


# -- bad flags ------------------------------------------------------------------------


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, ["events", *args])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "--connect HOST:PORT, or --pod NAME or --session-id ID (in -n NS, else the kube"),
        (("--connect", "localhost"), "'--connect': 'localhost' is not HOST:PORT; write e.g."),
        (("--connect", "h:99999"), "'--connect'"),
        (("--connect", "h:1", "--pod", "p"), "--pod is for the port-forward path"),
        (("-n", "ns"), "--connect HOST:PORT, or --pod NAME or --session-id ID"),
        (("-n", "ns", "--pod", "p", "--session-id", "s"), "one of --pod NAME and --session-id"),
        (("--connect", "h:1", "--decider", "nocolon"), "'--decider': 'nocolon' is not MODULE:FUNC"),
        (("--connect", "h:1", "--decider", "no_such_mod_xyz:f"), "cannot import module"),
        (("--connect", "h:1", "--decider", "tests.sidecar_double:nope"), "has no attribute 'nope'"),
        (("--connect", "h:1", "--decider", "tests.sidecar_double:not_callable"), "not a function"),
        (("--connect", "h:1", "--kind", "request_exploded"), "'--kind'"),
        (("--connect", "h:1", "--count", "0"), "'--count'"),
        (("--connect", "h:1", "--duration", "0"), "'--duration'"),
        (("--connect", "h:1", "--format", "yaml"), "'yaml' is not an output format"),
        (("--connect", "h:1", "-o", "yaml"), "-o/--output takes one of text, json"),
        (("--connect", "h:1", "--output", "out.txt"), "'out.txt' is not an output format"),
    ],
)
def test_bad_flags_name_the_flag_and_the_fix(args: tuple[str, ...], expected: str) -> None:
    result = _invoke(*args)
    assert result.exit_code == 2, result.output
    assert expected in result.output


def test_without_n_the_kube_contexts_namespace_is_used(tmp_path: Path) -> None:
    from condukt_egress.cli.events import _target  # noqa: PLC0415
    from condukt_egress.portforward import PortForwardTarget  # noqa: PLC0415

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "a", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}},
                    {"name": "b", "context": {"cluster": "c", "user": "u"}},
                ],
                "current-context": "a",
            }
        )
    )

    def namespace(*, context: str | None = None, explicit: str | None = None) -> str:
        target = _target(None, explicit, "p", None, context, str(kubeconfig), 15002)
        assert isinstance(target, PortForwardTarget)
        return target.namespace

    assert namespace() == "team-a"  # the current context's
    assert namespace(context="b") == "default"  # a context without one: kubectl's default
    assert namespace(explicit="agents") == "agents"  # -n wins
    result = _invoke("--pod", "p", "--context", "nope", "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 2
    assert "no context 'nope' in the kubeconfig" in result.stderr


def test_a_bad_policy_file_names_the_flag(tmp_path: Path) -> None:
    policy = tmp_path / "p.json"
    policy.write_text('{"rules": [{"type": "allow", "hosts": ["https://x.com"]}]}')
    result = _invoke("--connect", "h:1", "--policy", str(policy))
    assert result.exit_code == 2
    assert "Invalid value for '--policy'" in result.output
    assert "rules[0]" in result.output


# -- --decider loading ----------------------------------------------------------------


def test_decider_is_loaded_from_the_current_directory_without_putting_it_on_sys_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Round 2: `--decider` put the current directory first on sys.path, so a
    # `kubernetes.py` lying there was imported with the operator's credentials.
    from condukt_egress.cli.events import _load_decider  # noqa: PLC0415

    (tmp_path / "shadowed_client_r2.py").write_text("raise SystemExit('imported from cwd')\n")
    (tmp_path / "my_decider_r2.py").write_text("def decide(request):\n    return 'allow'\n")
    package = tmp_path / "my_decider_pkg_r2"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "policy.py").write_text("def decide(request):\n    return 'deny'\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        assert _load_decider("my_decider_r2:decide")(None) == "allow"  # type: ignore[arg-type]
        assert _load_decider("my_decider_pkg_r2.policy:decide")(None) == "deny"  # type: ignore[arg-type]
        assert str(tmp_path) not in sys.path
        assert "" not in sys.path
        import importlib.util  # noqa: PLC0415

        assert importlib.util.find_spec("shadowed_client_r2") is None
    finally:
        for name in ("my_decider_r2", "my_decider_pkg_r2", "my_decider_pkg_r2.policy"):
            sys.modules.pop(name, None)


def test_a_decider_that_fails_to_import_is_not_left_half_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_decider_r2.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.chdir(tmp_path)
    result = _invoke("--connect", "h:1", "--decider", "broken_decider_r2:decide")
    assert result.exit_code == 2
    assert "cannot import module 'broken_decider_r2': boom" in result.output
    assert "broken_decider_r2" not in sys.modules


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_values_no_sidecar_sends_are_still_written_as_valid_utf8(
    double: ThreadedDouble, fmt: str
) -> None:
    # serde_json never writes a lone surrogate or a port past u16, but any peer
    # may: the command must keep going and write valid UTF-8, JSON parsing back
    # to the values received.
    proc = spawn("--connect", f"127.0.0.1:{double.port}", "--format", fmt, "--count", "2")
    hostile = event_frame("request_opened", host="evil\ud800.example")
    hostile["request"]["port"] = 2**70
    hostile["request"]["path"] = "/\udfff"
    double.run(double.double.send(line(hostile), event_frame("request_opened")))
    try:
        out_bytes, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("command did not stop")
    assert proc.returncode == 0, err
    rows = out.splitlines() if (out := out_bytes) else []
    assert len(rows) == 2, (out, err)
    if fmt == "json":
        first = json.loads(rows[0])
        assert (first["host"], first["port"], first["path"]) == (
            "evil\ud800.example",
            2**70,
            "/\udfff",
        )
        assert json.loads(rows[1])["host"] == "api.example.com"
    else:
        assert "evil\\ud800.example:1180591620717411303424" in rows[0]


# Security round 3: JSON lets these stand raw in a string, and orjson wrote them
# so; a terminal showing the stream (`| jq`, `tail -f`) acts on them.
TERMINAL_HOSTILE = (
    "\x7f",  # DEL
    "\x85",  # NEL, a C1 control
    "\x9b",  # CSI, the C1 form of ESC [
    "\u061c",  # Arabic letter mark
    "\u200e",
    "\u200f",  # left-to-right and right-to-left marks
    "\u2028",
    "\u2029",  # line and paragraph separators
    *(chr(c) for c in range(0x202A, 0x202F)),  # bidi embeddings and overrides
    *(chr(c) for c in range(0x2066, 0x206A)),  # bidi isolates
)


def test_json_records_escape_what_a_terminal_would_execute(double: ThreadedDouble) -> None:
    hostile = "".join(TERMINAL_HOSTILE)
    proc = spawn("--connect", f"127.0.0.1:{double.port}", "--format", "json", "--count", "2")
    event = event_frame("request_opened", host=f"evil{hostile}.example", path=f"/{hostile}")
    asked = decision_request_frame(f"x{hostile}.example", request_id="d1")
    double.run(double.double.send(event, asked))
    code, out, err = finish(proc)
    assert code == 0, err
    rows = out.splitlines()
    assert len(rows) == 2, (out, err)
    for row in rows:
        assert not any(c in row for c in TERMINAL_HOSTILE), row
        assert row.isascii()
    assert json.loads(rows[0])["host"] == f"evil{hostile}.example"
    assert json.loads(rows[0])["path"] == f"/{hostile}"
    assert json.loads(rows[1])["host"] == f"x{hostile}.example"
    assert "\\u202e" in rows[0]
