"""One-input targets for the readers that take bytes from outside, shared by the property tests
(tests/test_properties.py, hypothesis) and the bounded fuzz runs (tools/fuzz.py, atheris).

Each target takes arbitrary bytes and checks the invariant: the reader either parses or raises
its module's own error class, never another exception, and holds no more memory than its
configured limits allow (an AssertionError says which invariant broke).
"""

from __future__ import annotations

import array
import os
import socket
import tempfile
import time
from collections.abc import Callable

from uzerg.config.ini import MAX_FILE_BYTES, ConfigError, read_ini
from uzerg.protocols import http
from uzerg.protocols.http import NEED_DATA, HttpError, RequestHead
from uzerg.protocols.http_stream import MAX_CHUNK_LINE, HttpRequestParser
from uzerg.protocols.uwsgi import UwsgiPacketReader, UwsgiProtocolError
from uzerg.zerg.handshake import HandshakeError, receive_sockets

HEAD_LIMITS = (64, 512, 4096)
BLOCK_LIMITS = (16, 512, 4096)


def _pieces(data: bytes, control: int) -> list[bytes]:
    """`data` cut into pieces whose sizes follow from `control` (whole, bytewise or mixed)."""
    if control % 3 == 0:
        return [data]
    if control % 3 == 1:
        return [data[i : i + 1] for i in range(len(data))]
    step = control % 13 + 2
    return [data[i : i + step] for i in range(0, len(data), step)]


def http_reader(data: bytes) -> None:
    """The HTTP reader over a stream: heads, bodies and pipelined requests, fed in pieces."""
    if not data:
        return
    control, stream = data[0], data[1:]
    max_head = HEAD_LIMITS[control % len(HEAD_LIMITS)]
    parser = HttpRequestParser(max_head)
    bound = max(max_head, MAX_CHUNK_LINE + 2)
    try:
        for piece in _pieces(stream, control >> 2):
            parser.feed(piece)
            while True:
                event = parser.next_event()
                if event is NEED_DATA:
                    assert len(parser.buffer) <= bound, (len(parser.buffer), bound)
                    break
                if isinstance(event, RequestHead):
                    assert event.head_size <= max_head
                    assert event.target and event.method
                    assert event.target[0] == "/" or event.target == "*" or (
                        event.method == "CONNECT" or event.authority is not None
                    ), event.target
                    assert "#" not in event.target
                elif event is http.END:
                    parser.start_next_request()
                else:
                    assert isinstance(event, bytes) and event
    except HttpError as exc:
        assert exc.status in HttpError.REASONS, exc.status
    assert len(http._HEADER_NAMES) <= 512 and len(http._HEADER_LINES) <= 4096


def uwsgi_reader(data: bytes) -> None:
    """The uwsgi packet reader, as the request path uses it, fed in pieces."""
    if not data:
        return
    control, stream = data[0], data[1:]
    max_block = BLOCK_LIMITS[control % len(BLOCK_LIMITS)]
    reader = UwsgiPacketReader(max_block)
    env: dict[str, object] = {"wsgi.version": (1, 0)}
    try:
        for piece in _pieces(stream, control >> 2):
            packet = reader.feed(piece, env)
            if packet is not None:
                assert packet.datasize <= max_block
                assert packet.vars is env and packet.var_count <= packet.datasize // 4
                return
            assert reader.buffered <= 4 + max_block
            assert list(env) == ["wsgi.version"], "vars added before the packet was whole"
    except UwsgiProtocolError as exc:
        assert str(exc)


def ini_reader(data: bytes) -> None:
    """read_ini() of a file holding `data` (magic variables, continuations, sections...)."""
    with tempfile.TemporaryDirectory(prefix="uzerg-fuzz-ini-") as tmp:
        path = os.path.join(tmp, "fuzz.ini")
        with open(path, "wb") as handle:
            handle.write(data)
        try:
            ini = read_ini(path, None)
        except ConfigError as exc:
            assert str(exc)
            return
        assert len(data) <= MAX_FILE_BYTES
        for line in ini.lines:
            assert isinstance(line.key, str) and isinstance(line.value, str)


def _attachments(kind: int, closers: list[Callable[[], None]]) -> list[int]:
    """Descriptors to send with one message: none, a listening TCP socket, a pipe end, a
    connected unix socket, or two listening sockets. What to close afterwards goes to closers."""
    if kind == 1 or kind == 4:
        fds = []
        for _ in range(1 if kind == 1 else 2):
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            closers.append(listener.close)
            fds.append(listener.fileno())
        return fds
    if kind == 2:
        read_end, write_end = os.pipe()
        closers.extend((lambda: os.close(read_end), lambda: os.close(write_end)))
        return [read_end]
    if kind == 3:
        a, b = socket.socketpair()
        closers.extend((a.close, b.close))
        return [a.fileno()]
    return []


def zerg_receiver(data: bytes) -> None:
    """The zerg handshake receiver reading what a hostile server sends: messages (separated by
    b"\\xff\\xfe"), each led by a byte choosing the descriptors it carries, then EOF."""
    before = len(os.listdir("/proc/self/fd"))
    closers: list[Callable[[], None]] = []
    server, client = socket.socketpair()
    try:
        for message in data.split(b"\xff\xfe")[:16]:
            kind, payload = (message[0] % 5, message[1:]) if message else (0, b"")
            fds = _attachments(kind, closers)
            if not payload and not fds:
                continue
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
            server.sendmsg([payload or b"\0"], ancillary if fds else [])
        server.close()
        try:
            received = receive_sockets(client, time.monotonic() + 2, hint_wait=0.2)
        except HandshakeError as exc:
            assert exc.detail
        else:
            assert received.announced == len(received.sockets) > 0
            for sock in received.sockets:
                sock.close()
            assert received.protocols is None or len(received.protocols) == received.announced
    finally:
        server.close()
        client.close()
        for close in closers:
            close()
    after = len(os.listdir("/proc/self/fd"))
    assert after <= before, f"descriptors leaked: {before} before, {after} after"


TARGETS: dict[str, Callable[[bytes], None]] = {
    "http": http_reader,
    "uwsgi": uwsgi_reader,
    "ini": ini_reader,
    "zerg": zerg_receiver,
}
