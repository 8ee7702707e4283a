"""The zerg handshake on the wire (SPEC §2), byte-compatible with uWSGI, and no policy.

Server side: one ``sendmsg`` of ``b"uwsgi-zerg" + int32 count`` (host byte order) with one
``SCM_RIGHTS`` message; more than ``SCM_MAX_FD`` (253) descriptors go out as several such
messages, each header carrying the *total*; then, optionally, one JSON line naming each socket's
protocol. A uWSGI client reads the first 14 bytes and ignores the rest.

Client side: read messages until the total is held, check ``MSG_CTRUNC`` (``socket.recv_fds``
ignores it), receive close-on-exec, accept only listening stream sockets of family INET, INET6 or
UNIX, and close every received descriptor on any failure.
"""

from __future__ import annotations

import _socket  # not socket: ~14M instructions to import (IntEnums of every constant)
import os
import stat
import struct
import time
from collections.abc import Sequence

from uzerg.addresses import AddressError, parse_address
from uzerg.record import record

MAGIC = b"uwsgi-zerg"
HEADER = struct.Struct("=i")  # a C int in host byte order, as uWSGI writes it
HEADER_SIZE = len(MAGIC) + HEADER.size  # 14
SCM_MAX_FD = 253  # Linux: descriptors per SCM_RIGHTS message
MAX_SOCKETS = 65536  # a sane upper bound for a count announced by a peer
# Seconds a client waits for the optional protocol hint after the descriptors. Both uzerg and
# uWSGI servers close right after sending, so the wait normally ends at the line or at EOF at
# once; a short bound (it was 0.3 s) lost the hint when a loaded server was descheduled between
# the descriptors and the line, and a zerg then spoke uwsgi on an HTTP socket.
HINT_WAIT = 3.0
HINT_MAX_BYTES = 1 << 20
DEFAULT_TIMEOUT = 10.0

CONNECT_FAILED = "--- unable to connect to zerg server {address} ---"
INVALID_DATA = "--- invalid data received from zerg-server ---"
_ACCEPTED_FAMILIES = (_socket.AF_INET, _socket.AF_INET6, _socket.AF_UNIX)
_FD = struct.Struct("i")  # a descriptor in SCM_RIGHTS data: a C int


class HandshakeError(Exception):
    """A failed attach. ``str()`` is uWSGI's line; ``detail`` says what exactly went wrong."""

    def __init__(self, message: str, detail: str = "", *, not_up: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.not_up = not_up  # nothing listens (yet): refused, or no socket file (zerg-wait)

    @classmethod
    def connect_failed(cls, address: str, detail: str, *, not_up: bool = False
                       ) -> HandshakeError:
        return cls(CONNECT_FAILED.format(address=address), detail, not_up=not_up)

    @classmethod
    def invalid_data(cls, detail: str) -> HandshakeError:
        return cls(INVALID_DATA, detail)


@record
class Received:
    """What one server handed over: sockets in order, and the protocol hint (None if absent)."""

    sockets: list[_socket.socket]  # the C type socket.socket extends
    protocols: list[str | None] | None = None
    announced: int = 0
    messages: int = 0


# ---------------------------------------------------------------------------------------------
# server side


def header_bytes(count: int) -> bytes:
    return MAGIC + HEADER.pack(count)


def protocol_hint_line(protocols: Sequence[str | None]) -> bytes:
    import json  # a uzerg zerg server's hint only: a zerg's start-up does not load it

    return (
        json.dumps({"uzerg": 1, "protocols": list(protocols)}, separators=(",", ":")).encode()
        + b"\n"
    )


def send_sockets(
    conn: _socket.socket, fds: Sequence[int], protocols: Sequence[str | None] | None = None
) -> int:
    """Send the descriptor messages (and the hint line if ``protocols`` is given).

    Returns the number of messages sent. Raises OSError (BlockingIOError, BrokenPipeError, ...)
    as the socket does; the caller closes ``conn``. Works on blocking and non-blocking sockets:
    on a fresh connection everything fits in the socket buffer.
    """
    if not fds:
        raise ValueError("a zerg server needs at least one socket to hand out")
    header = header_bytes(len(fds))
    messages = 0
    for start in range(0, len(fds), SCM_MAX_FD):
        chunk = fds[start : start + SCM_MAX_FD]
        rights = struct.pack(f"{len(chunk)}i", *chunk)
        sent = conn.sendmsg(
            [header], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)], _socket.MSG_NOSIGNAL
        )
        if sent != len(header):  # the descriptors went with the first byte; the rest is lost
            raise BlockingIOError(f"short send of the zerg header ({sent} of {len(header)} bytes)")
        messages += 1
    if protocols is not None:
        line = protocol_hint_line(protocols)
        # Best effort: a truncated line is garbage to the client, which then ignores the hint.
        # A uWSGI client closes once it has the header and descriptors: EPIPE/ECONNRESET here
        # is no failure, the peer has its sockets.
        try:
            conn.send(line, _socket.MSG_NOSIGNAL)
        except OSError:
            pass
    return messages


# ---------------------------------------------------------------------------------------------
# client side


def connect_to_zerg_server(address_text: str, deadline: float) -> _socket.socket:
    """Connect to a zerg server (unix path or ``@name``) before ``deadline`` (monotonic)."""
    try:
        address = parse_address(address_text)
    except AddressError as exc:
        raise HandshakeError.connect_failed(address_text, str(exc)) from None
    if not address.is_unix:
        raise HandshakeError.connect_failed(
            address_text, "a zerg server address is a unix socket path or @name"
        )
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise HandshakeError.connect_failed(address_text, "timed out before connecting")
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        # A blocking unix connect waits on a full backlog for SO_SNDTIMEO, then fails with
        # EAGAIN; Python's settimeout() would make it non-blocking and fail at once instead.
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, _timeval(remaining))
        sock.connect(address.sockaddr())
    except OSError as exc:
        sock.close()
        if isinstance(exc, BlockingIOError):
            detail = f"timed out after {_seconds(remaining)} (the server's backlog is full)"
        else:
            detail = exc.strerror or str(exc)
        not_up = isinstance(exc, ConnectionRefusedError | FileNotFoundError)
        raise HandshakeError.connect_failed(address_text, detail, not_up=not_up) from None
    return sock


def receive_sockets(
    conn: _socket.socket,
    deadline: float,
    *,
    fds_per_message: int = SCM_MAX_FD,
    hint_wait: float = HINT_WAIT,
    started: float | None = None,
) -> Received:
    """Read the handshake from a connected ``conn`` (which the caller still owns and closes).

    ``fds_per_message`` is the room offered per message (uWSGI offers 8, then the count);
    ``started`` (monotonic) only words the timeout detail. Raises HandshakeError (``invalid
    data`` line) with a ``detail``; then no received descriptor stays open.
    """
    fds: list[int] = []
    clock = _Clock(deadline, time.monotonic() if started is None else started)
    try:
        total, messages = _receive_descriptors(conn, clock, fds, fds_per_message)
        for index, fd in enumerate(fds):
            try:
                _check_listening_socket(index, fd)
            except OSError as exc:
                detail = f"descriptor {index}: {exc.strerror or exc}"
                raise HandshakeError.invalid_data(detail) from None
        sockets = _adopt(fds)
    except BaseException:
        for fd in fds:
            _close_quietly(fd)
        raise
    try:
        # Past the deadline the hint is simply absent: the descriptors are what matters.
        protocols = _read_hint(conn, min(deadline, time.monotonic() + hint_wait), total)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return Received(sockets=sockets, protocols=protocols, announced=total, messages=messages)


def fetch_sockets(address_text: str, timeout: float = DEFAULT_TIMEOUT) -> Received:
    """Connect to one zerg server and receive its sockets, all within ``timeout`` seconds."""
    started = time.monotonic()
    deadline = started + timeout
    conn = connect_to_zerg_server(address_text, deadline)
    try:
        return receive_sockets(conn, deadline, started=started)
    finally:
        conn.close()


@record(frozen=True)
class _Clock:
    deadline: float
    started: float

    def expired(self, total: int | None, held: int) -> HandshakeError:
        waited = _seconds(self.deadline - self.started)
        if total is None:
            return HandshakeError.invalid_data(f"timed out after {waited} waiting for descriptors")
        return HandshakeError.invalid_data(
            f"timed out after {waited} holding {held} of {total} announced descriptors"
        )


def _receive_descriptors(
    conn: _socket.socket, clock: _Clock, fds: list[int], room: int
) -> tuple[int, int]:
    total: int | None = None
    messages = 0
    ancillary_size = _socket.CMSG_SPACE(room * _FD.size)
    while total is None or len(fds) < total:
        before = len(fds)
        header = _recv_header(conn, clock, fds, ancillary_size, total, len(fds))
        messages += 1
        if header[: len(MAGIC)] != MAGIC:
            raise HandshakeError.invalid_data(f"bad magic {header[: len(MAGIC)]!r}")
        (count,) = HEADER.unpack(header[len(MAGIC) :])
        if not 0 < count <= MAX_SOCKETS:
            raise HandshakeError.invalid_data(f"announced descriptor count {count} out of range")
        if total is None:
            total = count
        elif count != total:
            raise HandshakeError.invalid_data(
                f"message {messages} announces {count} descriptors, the first announced {total}"
            )
        if len(fds) == before:
            raise HandshakeError.invalid_data(f"message {messages} carries no descriptor")
        if len(fds) > total:
            raise HandshakeError.invalid_data(f"received {len(fds)} descriptors, {total} announced")
    assert total is not None
    return total, messages


def _recv_header(
    conn: _socket.socket,
    clock: _Clock,
    fds: list[int],
    ancillary_size: int,
    total: int | None,
    held: int,
) -> bytes:
    """Read exactly one 14-byte header, collecting any descriptors that come with it."""
    data = b""
    while len(data) < HEADER_SIZE:
        remaining = clock.deadline - time.monotonic()
        if remaining <= 0:
            raise clock.expired(total, held)
        conn.settimeout(remaining)
        try:
            chunk, ancdata, flags, _ = conn.recvmsg(
                HEADER_SIZE - len(data), ancillary_size, _socket.MSG_CMSG_CLOEXEC
            )
        except TimeoutError:
            raise clock.expired(total, held) from None
        except OSError as exc:
            raise HandshakeError.invalid_data(f"receive failed: {exc.strerror or exc}") from None
        for level, kind, payload in ancdata:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds.extend(_descriptors(payload))
        if flags & _socket.MSG_CTRUNC:
            raise HandshakeError.invalid_data(
                "descriptors truncated (MSG_CTRUNC): more than the receive buffer holds, "
                "or this process is out of file descriptors"
            )
        if not chunk:
            if total is None and not data:
                raise HandshakeError.invalid_data("the server closed the connection without data")
            if total is not None and not data:
                raise HandshakeError.invalid_data(
                    f"connection closed after {held} of {total} announced descriptors"
                )
            raise HandshakeError.invalid_data(f"short header ({len(data)} bytes)")
        data += chunk
    return data


def _check_listening_socket(index: int, fd: int) -> None:
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        raise HandshakeError.invalid_data(f"descriptor {index} is not a socket")
    probe = _socket.socket(fileno=fd)
    try:
        if probe.family not in _ACCEPTED_FAMILIES:
            raise HandshakeError.invalid_data(
                f"descriptor {index} is a socket of unsupported family {_family_repr(probe.family)}"
            )
        if probe.type != _socket.SOCK_STREAM:
            raise HandshakeError.invalid_data(f"descriptor {index} is not a stream socket")
        if not probe.getsockopt(_socket.SOL_SOCKET, _socket.SO_ACCEPTCONN):
            raise HandshakeError.invalid_data(f"descriptor {index} is not a listening socket")
    finally:
        probe.detach()  # ownership stays with the caller's fd list


def _family_repr(family: int) -> str:
    """``repr(socket.socket.family)``: the AddressFamily member, or the number if it has none."""
    import socket  # this error line only

    try:
        return repr(socket.AddressFamily(family))
    except ValueError:
        return repr(family)


def _adopt(fds: list[int]) -> list[_socket.socket]:
    """Wrap the descriptors in socket objects; each leaves ``fds`` once an object owns it."""
    sockets: list[_socket.socket] = []
    try:
        while fds:
            sockets.append(_socket.socket(fileno=fds[0]))
            del fds[0]
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _read_hint(conn: _socket.socket, deadline: float, count: int) -> list[str | None] | None:
    """The optional protocol hint line; anything absent, late or malformed means no hint."""
    data = b""
    while b"\n" not in data and len(data) < HINT_MAX_BYTES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        conn.settimeout(remaining)
        try:
            chunk, ancdata, _flags, _ = conn.recvmsg(
                65536, _socket.CMSG_SPACE(SCM_MAX_FD * 4), _socket.MSG_CMSG_CLOEXEC
            )
        except OSError:
            return None
        for level, kind, payload in ancdata:  # nobody should send more fds here; never keep them
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                for fd in _descriptors(payload):
                    _close_quietly(fd)
        if not chunk:
            break
        data += chunk
    line = data.split(b"\n", 1)[0]
    if not line:  # no hint (a uWSGI server, or a pool)
        return None
    import json

    try:
        document = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or document.get("uzerg") != 1:
        return None
    protocols = document.get("protocols")
    if not isinstance(protocols, list) or len(protocols) != count:
        return None
    if not all(item is None or isinstance(item, str) for item in protocols):
        return None
    return protocols


def _descriptors(payload: bytes) -> list[int]:
    """The descriptors in SCM_RIGHTS data (a partial trailing int ignored)."""
    usable = len(payload) - len(payload) % _FD.size
    return memoryview(payload)[:usable].cast("i").tolist()


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("@ll", whole, max(1, int((seconds - whole) * 1_000_000)))


def _seconds(value: float) -> str:
    return f"{round(value, 2):g}s"
