"""Byte streams to a sidecar's control port: the :class:`Target` protocol and plain TCP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from condukt_egress.errors import ControlChannelError

READ_CHUNK: Final = 1 << 16
"""Bytes asked for per read (and the stream reader's buffer limit)."""


@dataclass
class Connection:
    """An open byte stream to a sidecar's control port.

    Attributes:
        reader: The stream from the sidecar.
        writer: The stream to the sidecar.
        error_detail: Returns why the far end closed, when the transport knows
            (the port-forward error channel), else ``None``.
        on_close: Extra clean-up run after the writer is closed.
    """

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    error_detail: Callable[[], str | None] = lambda: None
    on_close: Callable[[], None] = lambda: None

    async def close(self) -> None:
        """Close the stream and release the transport; never raises."""
        self.writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)
        with contextlib.suppress(Exception):
            self.on_close()


class Target(Protocol):
    """Where a control channel lives; opens a fresh :class:`Connection`."""

    def describe(self) -> str:
        """Return a short human description, e.g. ``127.0.0.1:15002``."""
        ...

    async def open(self) -> Connection:
        """Connect; raise :class:`ControlChannelError` with a one-line reason."""
        ...


@dataclass(frozen=True)
class TcpTarget:
    """A control port reachable over plain TCP (a local port-forward, a test double).

    Attributes:
        host: Host name or IP address.
        port: TCP port.
        connect_timeout: Seconds before a connection attempt is abandoned.
    """

    host: str
    port: int
    connect_timeout: float = 10.0

    def describe(self) -> str:
        """Return ``host:port`` (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def open(self) -> Connection:
        """Open the TCP connection."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=READ_CHUNK),
                self.connect_timeout,
            )
        except TimeoutError as exc:
            raise ControlChannelError(
                f"cannot connect to the control channel at {self.describe()}: "
                f"no answer within {self.connect_timeout:g} s"
            ) from exc
        except OSError as exc:
            raise ControlChannelError(
                f"cannot connect to the control channel at {self.describe()}: {os_reason(exc)}"
            ) from exc
        return Connection(reader, writer)


def os_reason(exc: OSError) -> str:
    """The readable part of an OS error (asyncio wraps ``ECONNREFUSED`` oddly)."""
    if isinstance(exc, socket.gaierror) or not exc.errno:
        return exc.strerror or str(exc) or type(exc).__name__
    return os.strerror(exc.errno)
