"""A stub upstream resolver on loopback that records every query it receives.

It answers any A query with 192.0.2.1 and any AAAA query with 2001:db8::1
(documentation addresses), over UDP and TCP on the same port, so a test can
tell what a resolver in front of it forwarded, and that AAAA was not.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dns.message
import dns.rdatatype
import dns.rrset

A_ANSWER = "192.0.2.1"
AAAA_ANSWER = "2001:db8::1"


@dataclass
class Stub:
    """The running stub: its address and what it has seen, as ``(proto, name, type)``."""

    host: str
    port: int
    queries: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self) -> set[str]:
        """Query names seen so far, lower-cased, without the final dot."""
        with self.lock:
            return {name.lower().rstrip(".") for _, name, _ in self.queries}

    def answer(self, wire: bytes, proto: str) -> bytes:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        with self.lock:
            self.queries.append(
                (proto, question.name.to_text(), dns.rdatatype.to_text(question.rdtype))
            )
        response = dns.message.make_response(query)
        if question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(question.name, 30, "IN", "A", A_ANSWER))
        elif question.rdtype == dns.rdatatype.AAAA:
            response.answer.append(
                dns.rrset.from_text(question.name, 30, "IN", "AAAA", AAAA_ANSWER)
            )
        return response.to_wire()


def _free_port(host: str) -> int:
    """A port free for both UDP and TCP on ``host``."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port


@contextmanager
def running(host: str = "127.0.0.1", port: int | None = None) -> Iterator[Stub]:
    """Serve a :class:`Stub` on ``host`` (UDP and TCP) until the block ends."""
    stub = Stub(host, port or _free_port(host))

    class Udp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            sock.sendto(stub.answer(data, "udp"), self.client_address)

    class Tcp(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while header := self.rfile.read(2):
                (length,) = struct.unpack("!H", header)
                reply = stub.answer(self.rfile.read(length), "tcp")
                self.wfile.write(struct.pack("!H", len(reply)) + reply)

    socketserver.ThreadingUDPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    udp = socketserver.ThreadingUDPServer((host, stub.port), Udp)
    tcp = socketserver.ThreadingTCPServer((host, stub.port), Tcp)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (udp, tcp)]
    for thread in threads:
        thread.start()
    try:
        yield stub
    finally:
        for server in (udp, tcp):
            server.shutdown()
            server.server_close()
