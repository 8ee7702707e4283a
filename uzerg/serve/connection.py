"""One accepted connection's I/O with kernel-enforced timeouts and the fewest system calls.

Python's `settimeout()` makes every recv/send a poll() plus the call; instead the socket stays
blocking, the first attempt uses MSG_DONTWAIT (a small request is usually already there, a
small response always fits the send buffer), and only when it would block is
SO_RCVTIMEO/SO_SNDTIMEO set, so a slow client is still bounded by the timeout.

Cheaper still: Linux copies a TCP listener's SO_RCVTIMEO/SO_SNDTIMEO to every socket accept()
returns (not a unix one's), so the worker sets both once on the TCP listeners this instance
owns (preset_timeouts()) and, when it accepts from no other kind, its connections start
armed: no setsockopt() per request
(CPython's setsockopt() with a timeval costs ~8k instructions: it formats two TypeErrors
trying other argument forms first).
"""

from __future__ import annotations

import _socket  # not socket: ~14M instructions to import (IntEnums of every constant)
import os
import select
import struct
import sys
import time

from uzerg.serve.wsgi_io import ClientDisconnected

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_DONTWAIT = _socket.MSG_DONTWAIT
# never die of SIGPIPE on a vanished client, even if someone reset SIGPIPE to SIG_DFL
_NOSIGNAL = _socket.MSG_NOSIGNAL
_SEND_NOW = _DONTWAIT | _NOSIGNAL
# a head that a sendfile() follows at once: held back to leave with the file's first bytes
# (the sendfile's last page pushes both), not as a packet of its own that wakes the client
# for nothing; on loopback that packet cost ~20 us of kernel time per static file
_SEND_MORE = _SEND_NOW | _socket.MSG_MORE
_SENDFILE_MAX = 1 << 30  # bytes per sendfile() call
DONTWAIT = _DONTWAIT  # (for the request handler's inlined first recv())
SEND_NOW = _SEND_NOW  # (for the response's inlined first send())
# a fresh connection with no bytes yet is waited on this long before it is parked: enough
# for a client on a loaded machine, too little for silent ones to pin a worker (worker.py)
FIRST_BYTES_WAIT_MS = 200


class ReadTimeout(ClientDisconnected):
    """The client sent nothing for the whole socket timeout."""


def timeval(seconds: float) -> bytes:
    """A struct timeval for SO_RCVTIMEO/SO_SNDTIMEO."""
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


def preset_timeouts(listeners: Any, packed: bytes) -> bool:
    """Set SO_RCVTIMEO and SO_SNDTIMEO to `packed` (timeval(socket-timeout)) on the TCP
    listeners of `listeners` (sockets.Listener); True when every plain connection accepted
    from them comes with both set (then Connection need not set them): False with a unix
    listener (its connections inherit nothing; one test per connection would cost every
    request) or one received from a zerg server (other processes accept from it and may set
    their own values: left alone). TLS listeners do not count: their connections have Python
    timeouts. Linux only."""
    if not sys.platform.startswith("linux"):
        return False
    preset = True
    for item in listeners:
        if item.tls is not None:
            continue
        sock = item.sock
        if sock.family not in (_socket.AF_INET, _socket.AF_INET6) or item.origin == "received":
            preset = False
            continue
        try:
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVTIMEO, packed)
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, packed)
        except OSError:
            preset = False
    return preset


def peer_text(peer: Any) -> str:
    """A client's address for a log line."""
    if type(peer) is tuple:
        return str(peer[0])
    return str(peer) if peer else "unix socket"


def server_port_of(sock: _socket.socket) -> str:
    """The local port of a TCP connection as text ("" for a unix socket)."""
    try:
        name = sock.getsockname()
    except OSError:
        return ""
    return str(name[1]) if type(name) is tuple else ""


class Connection:
    # tls: TlsConnection's environ HTTPS variables, None for a plain connection. A slot, not a
    # class default: CPython 3.11 cannot specialise reading a class attribute through an
    # instance (a generic lookup of ~200 instructions, several per request), a slot it can
    __slots__ = ("sock", "fd", "timeout", "_rcv_tv", "_rcv_armed", "_snd_armed", "tx", "tls")

    def __init__(self, sock: _socket.socket, timeout: float, packed: bytes | None = None) -> None:
        """`packed`: timeval(timeout), precomputed by the caller to save work per connection."""
        if sock.gettimeout() is not None:
            sock.setblocking(True)
        self.sock = sock
        self.fd = sock.fileno()
        self.timeout = timeout
        self._rcv_tv = packed or timeval(timeout)
        self._rcv_armed = b""
        self._snd_armed = False
        self.tx = 0
        self.tls: dict[str, str] | None = None

    def recv(self, size: int) -> bytes:
        """Up to `size` bytes; b"" when the peer closed. Raises ClientDisconnected/ReadTimeout."""
        try:
            return self.sock.recv(size, _DONTWAIT)
        except BlockingIOError:
            pass
        except OSError as exc:
            raise ClientDisconnected(exc.errno, f"recv(): {exc.strerror}") from None
        try:
            if self._rcv_armed != self._rcv_tv:
                self.sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVTIMEO, self._rcv_tv)
                self._rcv_armed = self._rcv_tv
            return self.sock.recv(size)
        except BlockingIOError:
            message = f"timeout after {self.timeout:g} s waiting for the client"
            raise ReadTimeout(0, message) from None
        except OSError as exc:
            raise ClientDisconnected(exc.errno, f"recv(): {exc.strerror}") from None

    def recv_into(self, view: memoryview) -> int:
        """recv() into `view` (a large request body read straight into its buffer): the
        bytes received, 0 when the peer closed. Raises ClientDisconnected/ReadTimeout."""
        try:
            return self.sock.recv_into(view, 0, _DONTWAIT)
        except BlockingIOError:
            pass
        except OSError as exc:
            raise ClientDisconnected(exc.errno, f"recv(): {exc.strerror}") from None
        try:
            if self._rcv_armed != self._rcv_tv:
                self.sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVTIMEO, self._rcv_tv)
                self._rcv_armed = self._rcv_tv
            return self.sock.recv_into(view)
        except BlockingIOError:
            message = f"timeout after {self.timeout:g} s waiting for the client"
            raise ReadTimeout(0, message) from None
        except OSError as exc:
            raise ClientDisconnected(exc.errno, f"recv(): {exc.strerror}") from None

    def recv_nowait(self, size: int) -> bytes | None:
        """Up to `size` bytes if some are there now, b"" when the peer closed, None when it
        would block (the caller parks the connection instead of waiting on it)."""
        try:
            return self.sock.recv(size, _DONTWAIT)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise ClientDisconnected(exc.errno, f"recv(): {exc.strerror}") from None

    def recv_soon(self, size: int, wait_ms: int) -> bytes | None:
        """The first bytes of a fresh connection: recv_nowait(), but when nothing is there yet
        wait up to `wait_ms` for them. A client that just connected is about to send, and
        a connection parked meanwhile could wait behind its worker's next request."""
        try:  # recv_nowait() inlined: this read is on every connection's path
            return self.sock.recv(size, _DONTWAIT)
        except BlockingIOError:
            pass
        except OSError as exc:
            raise ClientDisconnected(exc.errno, f"recv(): {exc.strerror}") from None
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        if not poller.poll(wait_ms):
            return None
        return self.recv_nowait(size)

    def buffered(self) -> bool:
        """Whether bytes were read from the socket that recv_nowait() has not returned yet
        (TLS: decrypted ones; never for a plain socket), so waiting for readable would hang."""
        return False

    def send_nowait(self, data: bytes) -> None:
        """Best effort, never blocks: for a last word (408) to a client we are dropping."""
        try:
            self.tx += self.sock.send(data, _SEND_NOW)
        except OSError:
            pass

    def set_read_timeout(self, seconds: float) -> None:
        """Change the read timeout (keep-alive idle wait vs. reads within a request)."""
        self.timeout = seconds
        self._rcv_tv = timeval(seconds)

    def _arm_send(self) -> None:
        if not self._snd_armed:
            self.sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, self._rcv_tv)
            self._snd_armed = True

    def sendall(self, data: bytes, more: bool = False) -> None:
        """Send all of `data`; `more`: only when a sendfile() follows at once (see _SEND_MORE:
        anything else would hold the bytes back until the next send)."""
        try:
            try:
                sent = self.sock.send(data, _SEND_MORE if more else _SEND_NOW)
            except BlockingIOError:
                sent = 0
            if sent < len(data):
                self._arm_send()  # from here on a blocking send, bounded by SO_SNDTIMEO
                with memoryview(data) as view:
                    self.sock.sendall(view[sent:], _NOSIGNAL)
        except BlockingIOError:
            raise ClientDisconnected(0, "timeout writing the response") from None
        except OSError as exc:
            raise ClientDisconnected(exc.errno, f"write: {exc.strerror}") from None
        self.tx += len(data)

    def sendall_pair(self, head: bytes, body: bytes) -> None:
        """Send head then body in one sendmsg() without joining them (for large bodies)."""
        try:
            sent = self.sock.sendmsg([head, body], [], _SEND_NOW)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise ClientDisconnected(exc.errno, f"write: {exc.strerror}") from None
        total = len(head) + len(body)
        if sent < len(head):
            self.sendall(head[sent:])
            self.sendall(body)
        elif sent < total:
            with memoryview(body) as view:
                self.sendall(view[sent - len(head) :])  # type: ignore[arg-type]
        self.tx += sent

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        """os.sendfile `count` bytes of `fd` from `offset`; returns the bytes sent."""
        if not self._snd_armed:
            try:
                self._arm_send()
            except OSError as exc:
                raise ClientDisconnected(exc.errno, f"write: {exc.strerror}") from None
        total = 0
        while total < count:
            left = count - total
            try:
                sent = os.sendfile(self.fd, fd, offset + total,
                                   left if left < _SENDFILE_MAX else _SENDFILE_MAX)
            except BlockingIOError:
                raise ClientDisconnected(0, "timeout writing the response") from None
            except OSError as exc:
                raise ClientDisconnected(exc.errno, f"sendfile(): {exc.strerror}") from None
            if sent == 0:
                break  # the file shrank under us
            total += sent
        self.tx += total
        return total

    def discard_input(self, limit: int = 1 << 20, seconds: float = 1.0) -> None:
        """After an error response: stop writing, then read and drop what the client is still
        sending (briefly), so that closing does not reset the connection under the response."""
        deadline = time.monotonic() + seconds
        try:
            self.sock.shutdown(_socket.SHUT_WR)
            self.set_read_timeout(min(seconds, self.timeout))
            while limit > 0 and time.monotonic() < deadline:
                data = self.recv(min(limit, 65536))
                if not data:
                    return
                limit -= len(data)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
