"""A sans-I/O HTTP/1.1 client connection on h11, shared by the load generator and the wire probe.

:meth:`ClientConnection.request` gives the bytes of one whole request (head and body in one piece,
so a request costs one send); :meth:`ClientConnection.feed` takes received bytes and returns the
response once its end has arrived. The connection is kept alive between requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import h11

from ._payload import PATH


@dataclass
class Response:
    status: int
    body: bytes


class ClientConnection:
    def __init__(self, host: str) -> None:
        self._conn = h11.Connection(h11.CLIENT)
        self._host = host
        self._status = 0
        self._body = bytearray()

    def request(self, body: bytes) -> bytes:
        if self._conn.our_state is h11.DONE:
            self._conn.start_next_cycle()
        self._status, self._body = 0, bytearray()
        headers = [
            ("host", self._host),
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
        ]
        head = self._conn.send(h11.Request(method="POST", target=PATH, headers=headers))
        return head + (self._conn.send(h11.Data(data=body)) or b"") + (self._conn.send(h11.EndOfMessage()) or b"")

    def feed(self, data: bytes) -> Response | None:
        """Feed received bytes (``b""`` at end of file); the response when it is complete, else None."""
        self._conn.receive_data(data)
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.Response):
                self._status = event.status_code
            elif isinstance(event, h11.Data):
                self._body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return Response(self._status, bytes(self._body))
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the server closed the connection")
