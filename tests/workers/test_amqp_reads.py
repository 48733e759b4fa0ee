"""BufferedTCPTransport reads every AMQP frame whole and in order, however the bytes arrive."""

from __future__ import annotations

import itertools
import socket
import struct
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.amqp_reads import READ_AHEAD, BufferedTCPTransport


def frame(kind: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


def connected_transport(sock: socket.socket) -> BufferedTCPTransport:
    transport = BufferedTCPTransport("127.0.0.1:5672")
    transport.sock = sock
    transport._setup_transport()
    transport.connected = True
    return transport


def read_all(
    frames: list[tuple[int, int, bytes]], cuts: list[int], timeout: float
) -> list[tuple[int, int, bytes]]:
    """Send the frames' bytes cut at `cuts` from another thread, with pauses, and read them back
    through the transport with the given socket timeout (0: non-blocking, as kombu's event loop
    reads; above 0, a read may time out in the middle of a frame)."""
    stream = b"".join(frame(*f) for f in frames)
    ours, theirs = socket.socketpair()
    ours.settimeout(timeout)
    transport = connected_transport(ours)
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})

    def send() -> None:
        for start, end in itertools.pairwise(bounds):
            theirs.sendall(stream[start:end])
            time.sleep(0.0005)

    sender = threading.Thread(target=send)
    sender.start()
    got: list[tuple[int, int, bytes]] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < len(frames):
            assert time.monotonic() < deadline, f"read {len(got)} of {len(frames)} frames"
            try:
                kind, channel, payload = transport.read_frame()
            except TimeoutError:
                continue
            got.append((kind, channel, bytes(payload)))
    finally:
        sender.join()
        ours.close()
        theirs.close()
    return got


frames_strategy = st.lists(
    st.tuples(
        st.integers(1, 3),
        st.integers(0, 3),
        st.one_of(st.binary(max_size=64), st.integers(0, 3 * READ_AHEAD).map(lambda n: b"x" * n)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(
    frames=frames_strategy,
    cuts=st.lists(st.integers(0, 10**7), max_size=20),
    timeout=st.sampled_from([0.0, 0.001, 0.05]),
)
def test_frames_come_back_whole_and_in_order(
    frames: list[tuple[int, int, bytes]], cuts: list[int], timeout: float
) -> None:
    assert read_all(frames, cuts, timeout) == frames


def test_a_frame_cut_by_a_timeout_is_finished_by_the_next_read() -> None:
    """read_frame puts the part of a frame it read back in py-amqp's `_read_buffer` when the
    socket times out; the next read must take it before what is read ahead."""
    ours, theirs = socket.socketpair()
    ours.settimeout(0.01)
    transport = connected_transport(ours)
    first, second = frame(1, 1, b"a" * 1000), frame(3, 2, b"b" * 10)
    theirs.sendall(first[:500])
    with pytest.raises(TimeoutError):
        transport.read_frame()
    assert transport._read_buffer  # the half frame, put back by py-amqp
    theirs.sendall(first[500:] + second)
    assert transport.read_frame() == (1, 1, b"a" * 1000)
    assert transport.read_frame() == (3, 2, b"b" * 10)
    ours.close()
    theirs.close()


def test_frames_read_ahead_are_announced() -> None:
    """A wait for a reply can read frames that came after it: the socket no longer announces
    them, so the transport must say it holds a whole frame (the connection then has the event
    loop read it), and not when it holds only part of one."""
    ours, theirs = socket.socketpair()
    transport = connected_transport(ours)
    delivery = frame(1, 1, b"d" * 100)
    theirs.sendall(frame(1, 1, b"reply") + delivery[:50])
    assert transport.read_frame() == (1, 1, b"reply")
    assert not transport.whole_frame_ahead()  # half a frame: the socket brings the rest
    theirs.sendall(delivery[50:] + frame(3, 1, b"x"))
    assert transport.read_frame() == (1, 1, b"d" * 100)
    assert transport.whole_frame_ahead()
    assert transport.read_frame() == (3, 1, b"x")
    assert not transport.whole_frame_ahead()
    ours.close()
    theirs.close()


def test_the_reader_reads_every_message_read_ahead_before_the_loop_polls_again() -> None:
    """kombu's reader reads one message and queues itself behind the event loop's next poll of
    the socket; messages already read ahead are not announced by the socket, so that poll would
    wait for the next timer. The reader reads them all first."""
    from types import SimpleNamespace

    from workers.amqp_reads import BufferedAmqpTransport

    ours, theirs = socket.socketpair()
    ours.settimeout(0)
    transport = connected_transport(ours)
    theirs.sendall(b"".join(frame(1, 1, b"m%d" % n) for n in range(3)))
    read: list[bytes] = []

    def drain_events(timeout: float | None = None) -> None:
        read.append(transport.read_frame()[2])

    connection = SimpleNamespace(connected=True, drain_events=drain_events, _transport=transport)
    queued: list[object] = []
    loop = SimpleNamespace(call_soon=lambda *args: queued.append(args))
    reader: Any = SimpleNamespace(on_readable=object())  # the transport, as far as it is used
    BufferedAmqpTransport.on_readable(reader, connection, loop)
    assert read == [b"m0", b"m1", b"m2"]  # all three, in one call
    assert len(queued) == 1  # then queued again, as kombu's reader is
    BufferedAmqpTransport.on_readable(reader, connection, loop)
    assert read == [b"m0", b"m1", b"m2"] and len(queued) == 1  # nothing left: the socket times out
    ours.close()
    theirs.close()
