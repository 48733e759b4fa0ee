"""RabbitMQ connections whose socket reads fill a buffer: fewer system calls per message."""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from amqp.exceptions import RecoverableConnectionError
from amqp.transport import TCPTransport
from celery.app.amqp import AMQP
from kombu.connection import Connection
from kombu.transport import pyamqp

# py-amqp's TCP transport asks the socket for exactly the bytes it needs next: a frame's 7-byte
# header, its payload, its 1-byte end. A message is three frames (method, header, body), so a
# 40 KB message costs about nine recv calls, each with its Python around it: on a worker's
# consumer thread, which shares the GIL with sealing, recv was the largest single cost (about
# 15% of that thread's samples under py-spy). Reading up to this much at once serves several
# messages per call.
READ_AHEAD = 256 * 1024
_FRAME_SIZE = struct.Struct(">I")  # a frame header's last four bytes


class BufferedTCPTransport(TCPTransport):  # type: ignore[misc]  # py-amqp is untyped
    """py-amqp's TCP transport with reads that take what the socket has, up to READ_AHEAD.

    The bytes read but not yet asked for are kept as `_ahead[_at:]` (an offset, so serving one
    frame copies only that frame). py-amqp's own `_read_buffer` keeps its meaning: `read_frame`
    puts a frame it could not finish back there, in front of everything else, and `_read` takes
    it back first.
    """

    _read_buffer: bytes
    _ahead: bytes = b""
    _at: int = 0

    @contextmanager
    def having_timeout(self, timeout: float | None) -> Iterator[Any]:
        """py-amqp sets the socket's timeout around each frame it reads and puts it back after
        (two system calls a frame, kombu's event loop reading with a timeout of 0); a frame
        already read ahead whole needs no socket, so its timeout is left alone."""
        if timeout is not None and self.whole_frame_ahead():
            yield self.sock
            return
        with super().having_timeout(timeout) as sock:
            yield sock

    def whole_frame_ahead(self) -> bool:
        """Whether the next frame (7-byte header, payload, end octet) is all read ahead."""
        ahead, at = self._ahead, self._at
        if self._read_buffer or len(ahead) - at < 7:
            return False
        (size,) = _FRAME_SIZE.unpack_from(ahead, at + 3)
        return len(ahead) - at >= 8 + int(size)

    def _read(  # py-amqp's name and signature
        self, n: int, initial: bool = False, _errnos: tuple[int, ...] = (errno.EAGAIN, errno.EINTR)
    ) -> bytes:
        """Exactly `n` bytes from the peer (py-amqp's contract, timeouts and errors included)."""
        if self._read_buffer:
            self._ahead, self._at = self._read_buffer + self._ahead[self._at :], 0
            self._read_buffer = b""
        ahead, at = self._ahead, self._at
        if len(ahead) - at >= n:
            self._at = at + n
            return ahead[at : at + n]
        # The socket often has only a few KB at a time: the pieces are joined once, not the
        # remainder copied again with each piece.
        pieces = [ahead[at:]]
        have = len(pieces[0])
        try:
            while have < n:
                try:
                    more = self._quick_recv(max(READ_AHEAD, n - have))
                except OSError as error:
                    if error.errno in _errnos:
                        if initial and self.raise_on_initial_eintr:
                            raise TimeoutError from error
                        continue
                    raise
                if not more:
                    raise OSError("Server unexpectedly closed connection")
                pieces.append(more)
                have += len(more)
        finally:  # what was read stays, whether or not this call could finish
            self._ahead, self._at = b"".join(pieces), 0
        self._at = n
        return self._ahead[:n]


class BufferedConnection(Connection):
    """A kombu connection that talks to RabbitMQ through BufferedTCPTransport (TLS, and other
    brokers, as kombu would)."""

    def get_transport_cls(self) -> Any:
        transport_cls = super().get_transport_cls()  # type: ignore[no-untyped-call]
        if transport_cls is pyamqp.Transport:
            return BufferedAmqpTransport
        return transport_cls


class _BufferedAmqpConnection(pyamqp.Connection):
    # Set once an event loop reads this connection (BufferedAmqpTransport): schedules a read.
    read_soon: Callable[[], Any] | None = None

    def drain_events(self, timeout: float | None = None) -> None:
        """py-amqp's, then: a wait for a reply (basic.qos, basic.consume...) may have read ahead
        frames that came after the reply; the socket no longer announces them, so the event loop
        is asked to read them now. (The event loop's own reads, with a timeout of 0, go on until
        the socket is empty.)"""
        try:
            super().drain_events(timeout)
        finally:
            transport = self._transport  # the property warns while not connected
            if (
                timeout != 0
                and self.read_soon is not None
                and isinstance(transport, BufferedTCPTransport)
                and transport.whole_frame_ahead()
            ):
                self.read_soon()

    def Transport(  # py-amqp's name and signature
        self,
        host: str,
        connect_timeout: float | None,
        ssl: Any = False,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
        socket_settings: Any = None,
        **kwargs: Any,
    ) -> Any:
        if ssl:
            return super().Transport(
                host, connect_timeout, ssl, read_timeout, write_timeout, socket_settings, **kwargs
            )
        return BufferedTCPTransport(
            host,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            write_timeout=write_timeout,
            socket_settings=socket_settings,
            **kwargs,
        )


class BufferedAmqpTransport(pyamqp.Transport):
    """kombu's py-amqp transport over BufferedTCPTransport."""

    Connection = _BufferedAmqpConnection

    def on_readable(self, connection: Any, loop: Any) -> None:
        """kombu's reader (its Transport.on_readable) reads one message, then queues itself to
        read the next after the event loop has polled the socket again. Messages read ahead are
        not announced by the socket, so that poll would wait for the next timer (up to a
        second): they are all read here first, then the reader is queued as kombu's is."""
        while True:
            if not connection.connected:
                raise RecoverableConnectionError("Socket was disconnected")
            try:
                connection.drain_events(timeout=0)
            except TimeoutError:
                return
            except OSError as error:
                if error.errno in (errno.EAGAIN, errno.EINTR):
                    return
                raise
            transport = connection._transport
            if not (isinstance(transport, BufferedTCPTransport) and transport.whole_frame_ahead()):
                break
        loop.call_soon(self.on_readable, connection, loop)

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)  # type: ignore[no-untyped-call]
        connection.read_soon = partial(loop.call_soon, self.on_readable, connection, loop)


class BufferedAMQP(AMQP):  # type: ignore[misc]  # celery is untyped
    """Celery's AMQP layer with BufferedConnection (Celery(amqp=...), its extension point)."""

    Connection = BufferedConnection
