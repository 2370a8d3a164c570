r"""What ``condukt-egress events`` shows: filtered, redacted records, as lines or JSON, counted.

:class:`EventView` turns the frames a :class:`~condukt_egress.control.ControlClient`
reads, and the answers it sends, into records: it filters them by kind and
host glob, redacts credentials, writes each as one readable line or one JSON
object, stops at a count, and keeps the per-kind and per-host counts of the
summary. It is the library half of the command, usable by any service that
shows a sidecar's traffic.

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

Host names and paths are the workspace's choice: every record is written as
printable text (control characters, bidi overrides and line separators
escaped), in JSON as in text.

Example:
    >>> import io
    >>> from condukt_egress.redaction import Redactor
    >>> out = io.StringIO()
    >>> view = EventView(fmt="json", redactor=Redactor(), out=out)
    >>> view.gap(1)
    >>> out.getvalue().startswith('{"type":"gap"')
    True
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import orjson

from condukt_egress._text import json_printable, printable
from condukt_egress.control import ChannelStats, DecisionSent
from condukt_egress.events import DecisionRequest, Event, Frame
from condukt_egress.redaction import Redactor

__all__ = ["GAP_REASON", "EventView", "HostCounts", "text_line", "to_json"]

_TOP_HOSTS: Final = 20
_TRACKED_HOSTS: Final = 1024
"""Distinct hosts counted one by one; events to hosts first seen later count as others."""
_HOST_CHARS: Final = 253
"""A host name is at most 253 characters; longer ones (hostile traffic) are cut."""


class EventView:
    """Filters, redacts, formats and counts what is shown; the only writer to ``out``.

    Args:
        fmt: ``text`` (one readable line per record) or ``json`` (one object).
        redactor: Hides credentials in headers and paths.
        kinds: Show only these kinds (event kinds, ``decision_request``,
            ``decision``); empty shows all.
        hosts: Show only hosts matching one of these policy globs; empty shows all.
        count: Stop after this many shown records (:attr:`finished` is set).
        out: Where records go (default: stdout).
        err: Where the summary goes (default: stderr).
    """

    def __init__(
        self,
        *,
        fmt: str,
        redactor: Redactor,
        kinds: frozenset[str] = frozenset(),
        hosts: tuple[str, ...] = (),
        count: int | None = None,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.fmt = fmt
        self.redactor = redactor
        self.kinds = kinds
        self.hosts = hosts
        self.count = count
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.shown = 0
        self.by_kind: Counter[str] = Counter()
        self.by_host = HostCounts()
        self.actions: Counter[str] = Counter()
        self.finished = asyncio.Event()
        self._matches: Callable[[str, str], bool] | None = None
        self._format: Callable[[dict[str, Any]], str] = to_json if fmt == "json" else text_line
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

    def summary(self, stats: ChannelStats, seconds: float) -> None:
        """Write counts per kind and per host, and what the client skipped, to ``err``."""
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
        self.err.write("".join(printable(text) + "\n" for text in lines))
        self.err.flush()

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


def text_line(r: dict[str, Any]) -> str:
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
    return printable(" ".join(p for p in parts if p))


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counter.most_common())


_ascii_json: Final = json.JSONEncoder(separators=(",", ":")).encode
"""The fallback encoder: any str or int, escaped to ASCII (``json.dumps`` builds one a call)."""


def to_json(record: dict[str, Any]) -> str:
    """One compact JSON object, in UTF-8 text that any reader and terminal accepts.

    orjson encodes a record about ten times faster than the standard library,
    which sets the pace of ``--format json``. Values no sidecar sends but any
    peer may (a lone surrogate, an integer past 64 bits) make it refuse; such a
    record is written by the standard encoder with non-ASCII escaped, the one
    form that is both valid JSON and encodable as UTF-8. Characters a
    terminal would act on (C1 controls, DEL, bidi overrides, U+2028/2029),
    which JSON allows raw and workspaces choose in host names and paths, are
    escaped too: the stream is printable text.
    """
    try:
        data = orjson.dumps(record)
    except orjson.JSONEncodeError:
        return _ascii_json(record)  # ensure_ascii: DEL and all non-ASCII escaped
    if data.isascii() and b"\x7f" not in data:  # the usual record: nothing to escape
        return data.decode()
    return json_printable(data.decode())


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
