"""Split a byte stream into bounded lines (the control channel is NDJSON)."""

from __future__ import annotations

from typing import Final

from condukt_egress.errors import ConfigError

DEFAULT_MAX_LINE_BYTES: Final = 1 << 20
"""Longest accepted line; longer ones are skipped up to their newline."""


class LineSplitter:
    r"""Split a byte stream into lines, incrementally and within a bound.

    Lines may arrive cut across reads. ``\\r\\n`` endings are accepted, blank
    lines dropped, and a line longer than ``max_line_bytes`` is skipped up to
    its newline (counted in :attr:`oversized`) without touching its neighbours.

    Args:
        max_line_bytes: The bound on one line, line ending excluded.
    """

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ConfigError("max_line_bytes", f"must be at least 1, got {max_line_bytes!r}")
        self.max_line_bytes = max_line_bytes
        self.oversized = 0
        self._partial = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data``; return the complete, non-blank lines it finished."""
        if self._discarding:
            newline = data.find(b"\n")
            if newline < 0:
                return []
            self._discarding = False
            data = data[newline + 1 :]
        newline = data.find(b"\n")
        if newline < 0:
            self._keep(data)
            return []
        if self._partial:
            self._partial += data[:newline]
            head = bytes(self._partial)
            self._partial.clear()
            lines = data[newline + 1 :].split(b"\n")
            lines.insert(0, head)
        else:
            lines = data.split(b"\n")
        self._keep(lines.pop())
        limit = self.max_line_bytes
        out = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]  # noqa: PLW2901
            if not line or line.isspace():
                continue
            if len(line) > limit:
                self.oversized += 1
                continue
            out.append(line)
        return out

    def finish(self) -> bytes:
        """Return (and forget) an unterminated tail left at end of stream."""
        tail = bytes(self._partial).rstrip(b"\r")
        self._partial.clear()
        self._discarding = False
        return b"" if tail.isspace() else tail

    def _keep(self, tail: bytes) -> None:
        if not tail:
            return
        self._partial += tail
        if len(self._partial) > self.max_line_bytes + 1:  # +1: a trailing \r
            self._partial.clear()
            self._discarding = True
            self.oversized += 1
