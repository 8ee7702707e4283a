"""Socket addresses as operators write them: parse, format, normalise, bind.

Accepted forms (SPEC §1): ``host:port``, ``:port`` (all IPv4 addresses), ``[v6addr]:port``,
a unix path, ``@name`` (Linux abstract namespace). uWSGI binds and connects ``@name`` as
``\\0name\\0`` (a trailing NUL is part of the address); we use the same bytes or we could not
talk to it.
"""

from __future__ import annotations

import _socket  # not socket: ~14M instructions to import (IntEnums of every constant)
import errno
import os
import stat

from uzerg.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: start-up time (issue 13)
    import socket
    from typing import Literal

    Kind = Literal["inet", "inet6", "unix", "abstract"]

# a socket option naming a descriptor passed by systemd: fd://N or fd://NAME (uzerg.systemd)
FD_SCHEME = "fd://"


class AddressError(ValueError):
    """An address that cannot be parsed, resolved or bound; the message names it."""


@record(frozen=True, slots=True)
class Address:
    """A parsed socket address. ``text`` is what the operator wrote."""

    kind: Kind
    host: str = ""  # inet/inet6: the host as written ("" means all addresses)
    port: int = 0
    path: str = ""  # unix: the path; abstract: the name without '@'
    text: str = ""

    @property
    def family(self) -> int:
        """The AF_* number (a plain int: socket.AddressFamily is not imported)."""
        if self.kind == "inet":
            return _socket.AF_INET
        if self.kind == "inet6":
            return _socket.AF_INET6
        return _socket.AF_UNIX

    @property
    def is_unix(self) -> bool:
        return self.kind in ("unix", "abstract")

    def sockaddr(self) -> str | bytes | tuple[str, int] | tuple[str, int, int, int]:
        """The address in the form ``socket.bind``/``connect`` take (resolving host names)."""
        if self.kind == "unix":
            return self.path
        if self.kind == "abstract":
            return b"\0" + self.path.encode() + b"\0"
        return resolve(self)

    def __str__(self) -> str:
        return format_address(self)


def parse_address(text: str) -> Address:
    """Parse an operator-written address; raise AddressError with a clear message."""
    raw = text
    text = text.strip()
    if not text:
        raise AddressError("empty socket address")
    if text.startswith("@"):
        name = text[1:]
        if not name:
            raise AddressError(f"invalid abstract socket name: {raw!r}")
        if len(name.encode()) + 2 > 108:
            raise AddressError(f"abstract socket name too long: {raw!r}")
        return Address("abstract", path=name, text=raw)
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1 :].startswith(":"):
            raise AddressError(f"invalid IPv6 address (expected [addr]:port): {raw!r}")
        host = text[1:end]
        port = _parse_port(text[end + 2 :], raw)
        try:
            _socket.inet_pton(_socket.AF_INET6, host.split("%", 1)[0])
        except OSError:
            raise AddressError(f"invalid IPv6 address: {raw!r}") from None
        return Address("inet6", host=host, port=port, text=raw)
    if text.startswith(("/", ".", "~")) or ":" not in text:
        path = os.path.expanduser(text)
        if len(path.encode()) >= 108:
            raise AddressError(f"unix socket path too long (max 107 bytes): {raw!r}")
        return Address("unix", path=path, text=raw)
    host, _, port_text = text.rpartition(":")
    port = _parse_port(port_text, raw)
    if host in ("*", "0.0.0.0"):
        host = ""
    return Address("inet", host=host, port=port, text=raw)


def _parse_port(port_text: str, raw: str) -> int:
    if not port_text.isdigit():
        raise AddressError(f"invalid port in socket address: {raw!r}")
    port = int(port_text)
    if port > 65535:
        raise AddressError(f"port out of range in socket address: {raw!r}")
    return port


def resolve(address: Address) -> tuple[str, int] | tuple[str, int, int, int]:
    """Resolve an inet/inet6 address to a numeric sockaddr (the first answer)."""
    if address.kind == "inet" and not address.host:
        return ("0.0.0.0", address.port)
    family = _socket.AF_INET6 if address.kind == "inet6" else _socket.AF_INET
    # an ASCII name as bytes: for a str, getaddrinfo loads the idna codec (~2 ms at start-up)
    host: str | bytes = address.host.encode() if address.host.isascii() else address.host
    try:
        infos = _socket.getaddrinfo(
            host, address.port, family, _socket.SOCK_STREAM, 0, _socket.AI_PASSIVE
        )
    except _socket.gaierror as exc:
        raise AddressError(f"cannot resolve {address.text!r}: {exc.strerror}") from None
    return infos[0][4]


def normalise(address: Address) -> tuple[object, ...]:
    """A key equal for two spellings of one address (localhost:3031, 127.0.0.1:3031)."""
    if address.kind == "unix":
        return ("unix", os.path.abspath(address.path))
    if address.kind == "abstract":
        return ("abstract", address.path)
    host, port = resolve(address)[:2]
    return (address.kind, host, port)


def format_address(address: Address) -> str:
    if address.kind == "unix":
        return address.path
    if address.kind == "abstract":
        return "@" + address.path
    if address.kind == "inet6":
        return f"[{address.host}]:{address.port}"
    return f"{address.host}:{address.port}"


def address_of_socket(sock: _socket.socket) -> Address:
    """The Address a bound socket listens on, from getsockname()."""
    name = sock.getsockname()
    if sock.family == _socket.AF_UNIX:
        if isinstance(name, bytes):
            return Address("abstract", path=name.strip(b"\0").decode(errors="replace"))
        return Address("unix", path=name)
    if sock.family == _socket.AF_INET6:
        return Address("inet6", host=name[0], port=name[1])
    return Address("inet", host=name[0], port=name[1])


def describe_socket(sock: _socket.socket) -> tuple[str, str]:
    """uWSGI's words for a socket: ("INET", "127.0.0.1:3031"), ("INET6", ...), ("UNIX", path)."""
    address = address_of_socket(sock)
    if address.kind == "inet":
        return "INET", f"{address.host}:{address.port}"
    if address.kind == "inet6":
        return "INET6", f"[{address.host}]:{address.port}"
    return "UNIX", format_address(address)


def socket_key(sock: _socket.socket) -> tuple[object, ...]:
    """Normalised key of a listening socket, for de-duplication by address."""
    return normalise(address_of_socket(sock))


# accept() failing for want of descriptors or kernel memory: the peer stays queued and the
# listener readable, so a loop must not try again at once: it waits ACCEPT_BACKOFF seconds
# (trio's accept loop does the same)
ACCEPT_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_BACKOFF = 0.1


def bind_listener(
    address: Address,
    backlog: int = 100,
    *,
    reuse_port: bool = False,
    chmod: int | None = None,
    defer_accept: int = 0,
) -> socket.socket:
    """Bind and listen; the socket is non-blocking and close-on-exec. `defer_accept`
    (seconds, TCP only): TCP_DEFER_ACCEPT, as uWSGI sets it to its socket timeout: a
    connection wakes a worker once its first bytes have arrived, not at the handshake.

    A unix socket file left by a dead process is replaced; one that a live process still
    accepts on is never unlinked (uWSGI does: it steals the path).
    """
    # a Python socket (accept(), the context manager): the zerg server, pools and the stats
    # server accept on theirs. A zerg binds nothing: its start does not load socket.
    import socket

    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        if not address.is_unix:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if address.kind == "inet6":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if defer_accept > 0 and hasattr(socket, "TCP_DEFER_ACCEPT"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, defer_accept)
        elif address.kind == "unix":
            _remove_stale_unix_socket(address)
        try:
            sock.bind(address.sockaddr())
        except OSError as exc:
            raise AddressError(f"cannot bind {address.text or address}: {exc.strerror}") from None
        if chmod is not None and address.kind == "unix":
            os.chmod(address.path, chmod)
        sock.listen(backlog)
        sock.setblocking(False)
        return sock
    except BaseException:
        sock.close()
        raise


def _remove_stale_unix_socket(address: Address) -> None:
    try:
        mode = os.lstat(address.path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise AddressError(f"cannot bind {address.path}: a file that is not a socket is in the way")
    probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(address.path)
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            os.unlink(address.path)  # nobody accepts there: a leftover of a dead process
            return
        raise AddressError(f"cannot bind {address.path}: {exc.strerror}") from None
    finally:
        probe.close()
    raise AddressError(
        f"cannot bind {address.path}: another process is listening on it "
        "(stop it, or attach to it with --zerg)"
    )
