r"""``condukt-egress events``: watch a sidecar's traffic live and answer its decisions.

A thin layer over :class:`~condukt_egress.control.ControlClient`: it builds a
target from the flags, prints each frame as a readable line or a JSON object,
and prints a summary on stderr when it stops (``--count``, ``--duration``,
the channel closing with ``--no-reconnect``, Ctrl-C or SIGTERM; all exit 0).

Output schema of ``--format json`` (version 1; one object per line, keys
always present, ``null`` when unknown; times are RFC 3339 UTC)::

    {"type": "event", "at", "kind", "session_id", "request_id", "scheme", "host",
     "port", "method", "path", "status", "reason", "rule": {"index", "kind"} | null,
     "remote_addr", "bytes_in", "bytes_out", "started_at", "finished_at",
     "headers": {name: value} | null}
    {"type": "decision_request", "at", "request_id", "session_id", "host", "port",
     "scheme"}
    {"type": "decision", "at", "request_id", "host", "port", "action", "reason",
     "decided_by": "decider" | "cache" | "fail_closed", "failure", "elapsed_ms"}
    {"type": "gap", "at", "reconnects", "reason"}

A ``gap`` record marks every reconnect: frames around it may be missing,
because the sidecar notices a dropped peer only when a write to it fails.

Example:
    condukt-egress events --namespace agents --session-id run-42 --kind request_denied
    condukt-egress events --connect 127.0.0.1:15002 --format json --decider mypkg.policy:decide
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import importlib.machinery
import importlib.util
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Final, TextIO

import click
import orjson

from condukt_egress.cli import InputFile, cli, format_option, policy_warnings
from condukt_egress.contract import DEFAULT_CONTROL_PORT, EVENT_KINDS
from condukt_egress.control import ControlClient, Decider, DecisionSent, Target, TcpTarget
from condukt_egress.errors import PolicyError
from condukt_egress.events import DecisionRequest, Event, Frame
from condukt_egress.redaction import Redactor

__all__ = ["events"]

_KINDS: Final = (*EVENT_KINDS, "decision_request", "decision")
_TOP_HOSTS: Final = 20
_TRACKED_HOSTS: Final = 1024
"""Distinct hosts counted one by one; events to hosts first seen later count as others."""
_SERVICE_ACCOUNT_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_HOST_CHARS: Final = 253
"""A host name is at most 253 characters; longer ones (hostile traffic) are cut."""


@cli.command("events")
@click.option(
    "--connect", metavar="HOST:PORT", help="A reachable control port (e.g. kubectl port-forward)."
)
@click.option(
    "-n",
    "--namespace",
    metavar="NS",
    help="Namespace of the session pod [default: the kube context's namespace].",
)
@click.option("--pod", metavar="NAME", help="The session pod, by name.")
@click.option("--session-id", metavar="ID", help="The session pod, by its session label.")
@click.option("--context", metavar="NAME", help="Kubeconfig context.")
@click.option(
    "--kubeconfig",
    type=InputFile(stdin=False),
    help="Kubeconfig file [default: $KUBECONFIG, ~/.kube/config, in-cluster].",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_CONTROL_PORT,
    show_default=True,
    help="The sidecar's control port inside the pod.",
)
@format_option(("text", "json"), "One readable line, or one JSON object (schema v1), per record.")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(_KINDS),
    help="Show only these kinds (repeatable).",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="GLOB",
    help="Show only hosts matching the policy glob (* one label, ** any); repeatable.",
)
@click.option("--count", type=click.IntRange(min=1), help="Stop after N shown records.")
@click.option(
    "--duration", type=click.FloatRange(min=0, min_open=True), help="Stop after S seconds."
)
@click.option("--decider", metavar="MODULE:FUNCTION", help="Answer decision requests.")
@click.option(
    "--decide-timeout-ms",
    type=click.IntRange(min=2),
    help="The sidecar's decide_timeout_ms [default: --policy's, else 5000].",
)
@click.option(
    "--cache-ttl",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to reuse a decider's answer per host, port and scheme (0: ask every time).",
)
@click.option("--no-reconnect", is_flag=True, help="Stop when the channel drops.")
@click.option(
    "--policy",
    "policy_file",
    type=InputFile(),
    help="Policy file whose redact patterns (and decide timeout) apply (- reads stdin).",
)
@click.option("--show-secrets", is_flag=True, help="Show credential headers unredacted.")
def events(  # noqa: PLR0917
    connect: str | None,
    namespace: str | None,
    pod: str | None,
    session_id: str | None,
    context: str | None,
    kubeconfig: str | None,
    port: int,
    fmt: str,
    kinds: Sequence[str],
    hosts: Sequence[str],
    count: int | None,
    duration: float | None,
    decider: str | None,
    decide_timeout_ms: int | None,
    cache_ttl: float,
    no_reconnect: bool,
    policy_file: str | None,
    show_secrets: bool,
) -> None:
    """Show live what a session's workspace tries to reach; answer `decide` requests.

    Reach the sidecar with --connect HOST:PORT, or with --pod or --session-id
    (in -n NS, else the kube context's namespace) through the Kubernetes
    port-forward API. Records go to
    stdout as readable lines, or as JSON objects with --format json; the
    summary goes to stderr. Credentials in headers and query strings are shown
    as [REDACTED] unless --show-secrets.
    """
    target = _target(connect, namespace, pod, session_id, context, kubeconfig, port)
    redact: tuple[str, ...] = ()
    if policy_file is not None:
        policy = _load_policy(policy_file)
        redact = tuple(policy.redact)
        decide_timeout_ms = decide_timeout_ms or policy.decide_timeout_ms
    view = View(
        fmt=fmt,
        redactor=Redactor(redact, enabled=not show_secrets),
        kinds=frozenset(kinds),
        hosts=tuple(hosts),
        count=count,
    )
    options: dict[str, Any] = {"cache_ttl": cache_ttl, "reconnect": not no_reconnect}
    if decide_timeout_ms is not None:
        options["decide_timeout_ms"] = decide_timeout_ms
    client = ControlClient(
        target,
        decider=_load_decider(decider) if decider else None,
        on_notice=_notice,
        on_decision=view.decision,
        on_reconnect=view.gap,
        **options,
    )
    # Everything loaded so far lives as long as the process: keep the cyclic
    # GC from walking it again on every collection while frames stream in.
    gc.collect()
    gc.freeze()
    asyncio.run(_watch(client, view, duration))


# -- flags ---------------------------------------------------------------------------


def _target(  # noqa: PLR0917
    connect: str | None,
    namespace: str | None,
    pod: str | None,
    session_id: str | None,
    context: str | None,
    kubeconfig: str | None,
    port: int,
) -> Target:
    if connect is not None:
        for flag, value in (
            ("--namespace", namespace),
            ("--pod", pod),
            ("--session-id", session_id),
            ("--context", context),
            ("--kubeconfig", kubeconfig),
        ):
            if value is not None:
                raise click.UsageError(
                    f"{flag} is for the port-forward path; drop it or drop --connect"
                )
        host, port_number = _parse_host_port(connect)
        return TcpTarget(host, port_number)
    if pod is None and session_id is None:
        raise click.UsageError(
            "say where the sidecar is: --connect HOST:PORT, or --pod NAME or --session-id ID "
            "(in -n NS, else the kube context's namespace)"
        )
    if pod is not None and session_id is not None:
        raise click.UsageError("give one of --pod NAME and --session-id ID, not both")
    if namespace is None:
        namespace = _context_namespace(kubeconfig, context)
    from condukt_egress.portforward import PortForwardTarget  # noqa: PLC0415  (kubernetes is slow)

    return PortForwardTarget(
        namespace=namespace,
        pod=pod,
        session_id=session_id,
        port=port,
        kubeconfig=kubeconfig,
        context=context,
    )


def _context_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace kubectl would use without ``-n``: the context's, else ``default``.

    Inside a pod with no kubeconfig, the service account's namespace.
    """
    from kubernetes.config import kube_config  # noqa: PLC0415  (kubernetes is slow)

    try:
        contexts, active = kube_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=kubeconfig
        )
    except Exception:  # no or unreadable kubeconfig: in-cluster, or the port-forward says why
        try:
            return _SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip() or "default"
        except OSError:
            return "default"
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    if chosen is None:
        raise click.BadParameter(
            f"no context {context!r} in the kubeconfig; `kubectl config get-contexts` lists them",
            param_hint="'--context'",
        )
    namespace = (chosen.get("context") or {}).get("namespace")
    return namespace if isinstance(namespace, str) and namespace else "default"


def _parse_host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(
            f"{text!r} is not HOST:PORT; write e.g. 127.0.0.1:{DEFAULT_CONTROL_PORT} "
            f"or [::1]:{DEFAULT_CONTROL_PORT}",
            param_hint="'--connect'",
        )
    return host, int(port)


def _load_policy(path: str) -> Any:
    from condukt_egress.policy import EgressPolicy  # noqa: PLC0415

    try:
        policy = EgressPolicy.load(path)
    except PolicyError as exc:
        raise click.BadParameter(str(exc), param_hint="'--policy'") from exc
    policy_warnings(policy, "--policy")
    return policy


def _load_decider(spec: str) -> Decider:
    module_name, sep, attr = spec.partition(":")
    hint = "'--decider'"
    if not sep or not module_name or not attr:
        raise click.BadParameter(
            f"{spec!r} is not MODULE:FUNCTION; write e.g. mypkg.policy:decide", param_hint=hint
        )
    try:
        target: Any = _import_decider_module(module_name)
    except Exception as exc:
        raise click.BadParameter(
            f"cannot import module {module_name!r}: {exc}; "
            "check the name and that it is in the current directory or on PYTHONPATH",
            param_hint=hint,
        ) from exc
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise click.BadParameter(
                f"module {module_name!r} has no attribute {attr!r}", param_hint=hint
            ) from None
    if not callable(target):
        raise click.BadParameter(
            f"{spec} is a {type(target).__name__}, not a function taking a decision request",
            param_hint=hint,
        )
    decider: Decider = target
    return decider


def _import_decider_module(name: str) -> ModuleType:
    """Import ``name``, taking only its top-level module or package from the current directory.

    Deciders next to you import as with ``python -m``, but the current
    directory is never put on ``sys.path``: a ``kubernetes.py`` lying there
    must not be imported, with the operator's credentials, in place of the
    real client. The decider's own imports come from the installed packages
    (make it a package to ship helpers alongside it).
    """
    top = name.partition(".")[0]
    if top not in sys.modules:
        spec = importlib.machinery.PathFinder.find_spec(top, [os.getcwd()])
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            sys.modules[top] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[top]
                raise
    return importlib.import_module(name)


# -- running ---------------------------------------------------------------------------


def _notice(message: str) -> None:
    click.echo(f"condukt-egress: {_clean(message)}", err=True)


async def _watch(client: ControlClient, view: View, duration: float | None) -> None:
    """Run until a stop condition; print the summary unless nothing ever connected."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    started = loop.time()
    reader = asyncio.ensure_future(client.run(view.frame))
    stopper = asyncio.ensure_future(stop.wait())
    counted = asyncio.ensure_future(view.finished.wait())
    waiting = (reader, stopper, counted)
    try:
        await asyncio.wait(waiting, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Close the client first, while the connection is still open: it lets the
        # decisions under way finish and sends them, then ends the reader.
        await client.aclose()
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
    error = None if reader.cancelled() else reader.exception()
    if error is not None and client.stats.connects == 0:
        raise error
    view.summary(client, loop.time() - started)
    if error is not None:
        raise error


# -- display ---------------------------------------------------------------------------


class View:
    """Filters, formats and counts what is shown; the only writer to stdout."""

    def __init__(
        self,
        *,
        fmt: str,
        redactor: Redactor,
        kinds: frozenset[str],
        hosts: tuple[str, ...],
        count: int | None,
        out: TextIO | None = None,
    ) -> None:
        self.fmt = fmt
        self.redactor = redactor
        self.kinds = kinds
        self.hosts = hosts
        self.count = count
        self.out = out or sys.stdout
        self.shown = 0
        self.by_kind: Counter[str] = Counter()
        self.by_host = HostCounts()
        self.actions: Counter[str] = Counter()
        self.finished = asyncio.Event()
        self._matches: Callable[[str, str], bool] | None = None
        self._format: Callable[[dict[str, Any]], str] = _to_json if fmt == "json" else _text_line
        self._flush_pending = False

    @property
    def done(self) -> bool:
        """Whether ``--count`` records have been shown."""
        return self.count is not None and self.shown >= self.count

    def frame(self, frame: Frame) -> bool:
        """Show a frame from the sidecar if the filters let it through; say if shown."""
        if isinstance(frame, Event):
            if not self._wanted(frame.kind, frame.request.host):
                return False
            record = self._event(frame)
            self.by_kind[frame.kind] += 1
            self.by_host.add(frame.request.host)
        elif isinstance(frame, DecisionRequest):
            if not self._wanted("decision_request", frame.host):
                return False
            record = self._decision_request(frame)
            self.by_kind["decision_request"] += 1
        else:
            return False
        self._emit(record)
        return True

    def decision(self, sent: DecisionSent) -> None:
        """Show an answer the client sent (``on_decision`` callback)."""
        self.actions[f"{sent.decision.action} ({sent.decided_by})"] += 1
        if self.done or not self._wanted("decision", sent.request.host):
            return
        self.by_kind["decision"] += 1
        self._emit(
            {
                "type": "decision",
                "at": _now(),
                "request_id": sent.request.id,
                "host": sent.request.host,
                "port": sent.request.port,
                "action": sent.decision.action,
                "reason": sent.decision.reason,
                "decided_by": sent.decided_by,
                "failure": sent.failure,
                "elapsed_ms": round(sent.seconds * 1000, 3),
            }
        )

    def gap(self, reconnects: int) -> None:
        """Mark a reconnect in the output (``on_reconnect`` callback).

        Shown whatever the filters, and not counted by ``--count``: the sidecar
        notices a dropped peer only when a write to it fails, so 1-2 frames
        per reconnect went to the dead connection and a new peer heard
        nothing until then.
        """
        if self.done:
            return
        self._write(
            {
                "type": "gap",
                "at": _now(),
                "reconnects": reconnects,
                "reason": GAP_REASON,
            }
        )

    def summary(self, client: ControlClient, seconds: float) -> None:
        """Print counts per kind and per host, and what was skipped, on stderr."""
        stats = client.stats
        lines = [f"summary: {self.shown} shown in {seconds:.1f} s"]
        if self.by_kind:
            lines.append("  by kind: " + _counts(self.by_kind))
        if self.by_host:
            top, others = self.by_host.top(_TOP_HOSTS)
            lines.append("  by host: " + _counts(top) + (f", others {others}" if others else ""))
        if self.actions:
            lines.append("  decisions: " + _counts(self.actions))
        extra = {
            "malformed lines": stats.malformed_lines,
            "over-long lines": stats.oversized_lines,
            "unknown frames": stats.unknown_frames,
            "decider failures": stats.decider_failures,
            "decisions lost": stats.decisions_lost,
            "reconnects": stats.reconnects,
        }
        if any(extra.values()):
            lines.append("  " + ", ".join(f"{k} {v}" for k, v in extra.items() if v))
        for text in lines:
            click.echo(_clean(text), err=True)

    # -- helpers

    def _wanted(self, kind: str, host: str) -> bool:
        if self.done or (self.kinds and kind not in self.kinds):
            return False
        if not self.hosts:
            return True
        if self._matches is None:
            from condukt_egress.policy import host_matches  # noqa: PLC0415

            self._matches = host_matches
        return any(self._matches(pattern, host) for pattern in self.hosts)

    def _event(self, event: Event) -> dict[str, Any]:
        request = event.request
        rule = event.matched_rule
        return {
            "type": "event",
            "at": event.at_text,
            "kind": event.kind,
            "session_id": request.session_id,
            "request_id": request.id,
            "scheme": request.scheme,
            "host": request.host,
            "port": request.port,
            "method": request.method,
            "path": self.redactor.path(request.path),
            "status": request.response_status,
            "reason": event.reason,
            "rule": None if rule is None else {"index": rule.index, "kind": rule.kind},
            "remote_addr": request.remote_addr,
            "bytes_in": request.bytes_in,
            "bytes_out": request.bytes_out,
            "started_at": request.started_at_text or _iso(request.started_at),
            "finished_at": request.finished_at_text
            or (None if request.finished_at is None else _iso(request.finished_at)),
            "headers": self.redactor.headers(request.request_headers),
        }

    def _decision_request(self, request: DecisionRequest) -> dict[str, Any]:
        return {
            "type": "decision_request",
            "at": _now(),
            "request_id": request.id,
            "session_id": request.session_id,
            "host": request.host,
            "port": request.port,
            "scheme": request.scheme,
        }

    def _emit(self, record: dict[str, Any]) -> None:
        self.shown += 1
        self._write(record)
        if self.done:
            self.finished.set()

    def _write(self, record: dict[str, Any]) -> None:
        self.out.write(self._format(record) + "\n")
        if self._flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the event loop
            self.out.flush()
            return
        # One flush per loop iteration: every frame of a read is written, then
        # flushed once, so a burst costs one write call and a quiet stream
        # still shows each line at once.
        self._flush_pending = True
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        self.out.flush()


GAP_REASON: Final = (
    "control channel reconnected; frames around this point may be missing "
    "(the sidecar notices a dropped peer only when a write to it fails)"
)


class HostCounts:
    """Events per host for the summary, in bounded memory.

    Hosts come from untrusted traffic: a workspace can name a new one per
    request. The first :data:`_TRACKED_HOSTS` distinct hosts are counted one
    by one (names cut to 253 characters); events to any host first seen after
    that only add to :attr:`untracked`.
    """

    def __init__(self, limit: int = _TRACKED_HOSTS) -> None:
        self.limit = limit
        self.counts: Counter[str] = Counter()
        self.untracked = 0

    def add(self, host: str) -> None:
        """Count one event to ``host``."""
        key = host[:_HOST_CHARS].lower()
        if key in self.counts or len(self.counts) < self.limit:
            self.counts[key] += 1
        else:
            self.untracked += 1

    def top(self, n: int) -> tuple[Counter[str], int]:
        """The ``n`` most frequent hosts, and the number of events to all others."""
        top = Counter(dict(self.counts.most_common(n)))
        return top, self.untracked + self.counts.total() - top.total()

    def __bool__(self) -> bool:
        return bool(self.counts) or self.untracked > 0


def _text_line(r: dict[str, Any]) -> str:
    """One readable line: time, kind, method, host:port, path, status, reason, rule."""
    at = _short_time(r["at"])
    where = f"{r.get('host')}:{r.get('port')}"
    if r["type"] == "event":
        rule = r["rule"]
        parts = [
            at,
            f"{r['kind']:<16}",
            r["method"] or "-",
            where,
            r["path"] or "-",
            "-" if r["status"] is None else str(r["status"]),
            f"reason={r['reason']}" if r["reason"] else "",
            f"rule=#{rule['index']}:{rule['kind']}" if rule else "",
        ]
    elif r["type"] == "gap":
        parts = [at, f"{'gap':<16}", f"reconnect #{r['reconnects']}:", r["reason"]]
    elif r["type"] == "decision_request":
        parts = [at, f"{'decision_request':<16}", r["scheme"], where, f"id={r['request_id']}"]
    else:
        parts = [
            at,
            f"{'decision':<16}",
            r["action"],
            where,
            f"by={r['decided_by']}",
            f"reason={r['reason']}" if r["reason"] else "",
            f"({r['elapsed_ms']:.1f} ms)",
            f"id={r['request_id']}",
        ]
    return _clean(" ".join(p for p in parts if p))


def _clean(text: str) -> str:
    """Escape control characters: hosts and paths come from untrusted traffic."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counter.most_common())


_ascii_json: Final = json.JSONEncoder(separators=(",", ":")).encode
"""The fallback encoder: any str or int, escaped to ASCII (``json.dumps`` builds one a call)."""


def _to_json(record: dict[str, Any]) -> str:
    """One compact JSON object, in UTF-8 text that any reader and terminal accepts.

    orjson encodes a record about ten times faster than the standard library,
    which sets the pace of ``--format json``. Values no sidecar sends but any
    peer may (a lone surrogate, an integer past 64 bits) make it refuse; such a
    record is written by the standard encoder with non-ASCII escaped, the one
    form that is both valid JSON and encodable as UTF-8.
    """
    try:
        return orjson.dumps(record).decode()
    except orjson.JSONEncodeError:
        return _ascii_json(record)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _now() -> str:
    return _iso(datetime.now(UTC))


def _short_time(text: str) -> str:
    """``2026-11-28T19:37:07.123456789Z`` -> ``2026-11-28T19:37:07.123Z``."""
    head, dot, frac = text.partition(".")
    if not dot:
        return text
    digits = frac.rstrip("Zz")
    return f"{head}.{(digits + '000')[:3]}Z"
