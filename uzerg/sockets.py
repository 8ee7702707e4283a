"""The instance's listening sockets: attach (--zerg), bind (--socket, --http-socket,
--http11-socket, --http), or take over from the previous master after a reload.

Order (SPEC §4.1): configured sockets first, then the received ones. A configured socket whose
normalised address equals a received one is not bound again (SPEC §4.3). Nobody here ever calls
listen() or setsockopt() on a socket that it did not bind itself.
"""

from __future__ import annotations

import _socket  # not socket: ~14M instructions to import (IntEnums of every constant)
import os
from collections.abc import Sequence

from uzerg.addresses import (
    FD_SCHEME,
    AddressError,
    bind_listener,
    describe_socket,
    normalise,
    parse_address,
    socket_key,
)
from uzerg.config.model import Config
from uzerg.logs import get_logger
from uzerg.processes.process import StartupError, parse_owner
from uzerg.record import record, replace

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl  # ~10 ms: an HTTPS socket's context loads it (uzerg.serve.tls)
    from typing import Any

    from uzerg.config.service_values import TlsSocketSpec
    from uzerg.systemd import ActivatedSockets

log = get_logger()

SOMAXCONN_PATH = "/proc/sys/net/core/somaxconn"


@record
class Listener:
    """One listening socket served by the workers."""

    # the C type socket.socket extends: one received from a zerg server is a plain one (a
    # zerg does not load socket), a bound or inherited one a socket.socket
    sock: _socket.socket
    protocol: str  # "uwsgi", "http" or "http11" (keep-alive), what RequestHandler takes
    # "bound" (by this instance), "received" (from a zerg server), "activated" (passed by
    # systemd or named fd://N: never unlinked by us)
    origin: str
    unix_path: str | None = None  # a socket file this instance created (vacuum removes it)
    unix_inode: tuple[int, int] | None = None
    server_port: str = ""  # the port as text, given to the request handler
    tls: ssl.SSLContext | None = None  # an HTTPS socket's context (uzerg.serve.tls)
    redirect_port: str = ""  # http-to-https: the port of the https URLs ("" none)

    def __post_init__(self) -> None:
        name = self.sock.getsockname()
        if not self.server_port and isinstance(name, tuple):
            self.server_port = str(name[1])

    @property
    def fd(self) -> int:
        return self.sock.fileno()


@record(frozen=True)
class SocketEntry:
    """One configured socket: its address as written (``=N``: shared socket N resolved),
    the protocol its connections speak, and what an HTTPS or redirecting one needs."""

    text: str
    protocol: str
    tls: TlsSocketSpec | None = None
    defer_accept: bool = True  # TCP_DEFER_ACCEPT (undeferred-shared-socket: no)
    redirect_port: str = ""


def configured_sockets(config: Config) -> list[SocketEntry]:
    """Every configured socket, in option order; raises StartupError for a bad ``=N``."""
    default = config.protocol or "uwsgi"
    entries = [SocketEntry(text, default) for text in config.socket]
    entries += [SocketEntry(text, "http") for text in config.http_socket]
    entries += [SocketEntry(text, "http11") for text in config.http11_socket]
    entries += [SocketEntry(text, "http") for text in config.http]
    entries += [SocketEntry(spec.address, "http", spec)
                for spec in (*config.https_socket, *config.https, *config.https2)]
    for value in config.http_to_https:
        text, _comma, port = value.partition(",")
        entries += [SocketEntry(text.strip(), "https-redirect", redirect_port=port.strip())]
    return [_resolve_shared(entry, config) for entry in entries]


def _resolve_shared(entry: SocketEntry, config: Config) -> SocketEntry:
    if not entry.text.startswith("="):
        return entry
    shared = [(text, True) for text in config.shared_socket]
    shared += [(text, False) for text in config.undeferred_shared_socket]
    number = entry.text[1:]
    if not number.isdigit() or int(number) >= len(shared):
        raise StartupError(f"{entry.text}: no such shared socket (there are {len(shared)}: "
                           "shared-socket, then undeferred-shared-socket, from =0)")
    text, defer = shared[int(number)]
    return replace(entry, text=text, defer_accept=defer)


def unreferenced_shared_sockets(config: Config) -> list[str]:
    """Shared sockets no socket option refers to (=N): uzerg does not bind those."""
    used = {entry.text for entry in configured_sockets(config)}
    return [text for text in (*config.shared_socket, *config.undeferred_shared_socket)
            if text not in used]


def check_listen_backlog(backlog: int, path: str = SOMAXCONN_PATH) -> str | None:
    """A --listen above net.core.somaxconn: the warning to log (uWSGI 2.0.31 exits there; the
    kernel caps the queue, so uzerg runs with the cap and says so, as issue 10 asks), or None."""
    try:
        with open(path, "rb") as handle:  # (bytes: no text codec to load at start-up)
            limit = int(handle.read())
    except (OSError, ValueError):
        return None
    if backlog > limit:
        return (f"Listen queue size is greater than the system max net.core.somaxconn "
                f"({limit}): uzerg runs with the kernel's cap of {limit} (raise "
                f"net.core.somaxconn for a longer queue)")
    return None


def build_listeners(
    config: Config,
    received: Sequence[Any] = (),
    inherited: Sequence[Listener] = (),
    activated: ActivatedSockets | None = None,
) -> list[Listener]:
    """Bind the configured sockets (reusing ``inherited`` ones of the same address, or the
    ``activated`` ones systemd passed) and append the ``received`` zerg sockets (objects with
    ``.sock`` and ``.protocol``)."""
    capped = check_listen_backlog(config.listen)
    if capped:
        log.warning(capped, event_kind="listen_capped", backlog=config.listen)
    default_protocol = config.protocol or "uwsgi"
    explicit_protocol = config.protocol is not None

    taken: set[tuple[object, ...]] = set()
    received_listeners: list[Listener] = []
    for item in received:
        protocol = default_protocol if explicit_protocol else (item.protocol or "uwsgi")
        taken.add(socket_key(item.sock))
        received_listeners.append(Listener(item.sock, protocol, "received"))
    for item in inherited:
        if item.origin == "received":
            taken.add(socket_key(item.sock))
            kind, where = describe_socket(item.sock)
            log.info(f"uwsgi zerg socket {len(received_listeners)} inherited {kind} address "
                     f"{where} fd {item.fd}", event_kind="zerg_socket_inherited", family=kind,
                     addr=where, fd=item.fd)
            received_listeners.append(item)
    reusable = {socket_key(item.sock): item for item in inherited
                if item.origin in ("bound", "activated")}

    listeners: list[Listener] = []
    configured: set[tuple[object, ...]] = set()
    try:
        for entry in configured_sockets(config):
            text, protocol = entry.text, entry.protocol
            if text.strip().startswith(FD_SCHEME):
                listeners.append(_by_reference(len(listeners), text.strip(), protocol,
                                               reusable, activated))
                listeners[-1].tls = _tls_context(entry, config)
                listeners[-1].redirect_port = entry.redirect_port
                continue
            try:
                address = parse_address(text)
                key = normalise(address)
            except AddressError as exc:
                raise StartupError(str(exc)) from None
            if key in taken:
                log.info(f"{text} is already served by a zerg socket: not binding it again",
                         event_kind="socket_skipped", addr=text)
                continue
            if key in configured and not (address.kind in ("inet", "inet6") and address.port == 0):
                continue  # configured twice: uWSGI binds it once, silently
            configured.add(key)
            old = _take_inherited(reusable, key, address, protocol)
            if old is not None:
                old.protocol = protocol
                listeners.append(old)
                _log_socket(len(listeners) - 1, old.sock, "inherited")
            else:
                passed = activated.claim_address(key) if activated else None
                if passed is not None:
                    listeners.append(Listener(passed, protocol, "activated"))
                    _log_socket(len(listeners) - 1, passed, "inherited")
                else:
                    listeners.append(_bind(len(listeners), entry, address, config))
            listeners[-1].tls = _tls_context(entry, config)
            listeners[-1].redirect_port = entry.redirect_port
    except BaseException:
        for listener in listeners:
            if listener.origin == "bound" and listener not in inherited:
                close_listener(listener, vacuum=True)
        raise
    for leftover in reusable.values():  # no longer configured after a reload
        close_listener(leftover, vacuum=True)
    return listeners + received_listeners


def _by_reference(
    index: int, text: str, protocol: str, reusable: dict[tuple[object, ...], Listener],
    activated: ActivatedSockets | None,
) -> Listener:
    """``fd://N`` / ``fd://NAME``: the passed descriptor; after a reload, the same socket
    handed over by the previous master (same descriptor number, or the next passed one)."""
    reference = text[len(FD_SCHEME):].strip()
    for key, item in reusable.items():
        if item.origin == "activated" and (not reference.isdigit()
                                           or item.fd == int(reference)):
            del reusable[key]
            item.protocol = protocol
            _log_socket(index, item.sock, "inherited")
            return item
    from uzerg.systemd import ActivatedSockets, ActivationError  # fd:// only (start-up)

    try:
        sock = (activated or ActivatedSockets([])).claim_reference(text)
    except ActivationError as exc:
        raise StartupError(str(exc)) from None
    _log_socket(index, sock, "inherited")
    return Listener(sock, protocol, "activated")


def passed_listeners(config: Config, activated: ActivatedSockets | None, first_index: int
                     ) -> list[Listener]:
    """The passed sockets nothing configured claimed: served with the default protocol, as
    uWSGI serves every socket systemd passes."""
    if activated is None:
        return []
    protocol = config.protocol or "uwsgi"
    rest = [Listener(sock, protocol, "activated") for sock in activated.take_rest()]
    for offset, item in enumerate(rest):
        kind, where = describe_socket(item.sock)
        log.info(f"uwsgi socket {first_index + offset} attached to {kind} address {where} "
                 f"fd {item.fd}", event_kind="socket_activated", family=kind, addr=where,
                 fd=item.fd)
    return rest


def _take_inherited(
    reusable: dict[tuple[object, ...], Listener], key: tuple[object, ...], address: Any,
    protocol: str,
) -> Listener | None:
    """The inherited socket for a configured address: same normalised address, or for a
    port-0 address (any free port) the first one of the same host and protocol."""
    if not (address.kind in ("inet", "inet6") and address.port == 0):
        return reusable.pop(key, None)
    for old_key, item in reusable.items():
        if old_key[:2] == key[:2] and item.protocol == protocol:
            return reusable.pop(old_key)
    return None


def _tls_context(entry: SocketEntry, config: Config) -> ssl.SSLContext | None:
    if entry.tls is None:
        return None
    from uzerg.serve.tls import TlsError, server_context

    try:
        return server_context(entry.tls, config.ssl_option)
    except TlsError as exc:
        raise StartupError(str(exc)) from None


def _bind(index: int, entry: SocketEntry, address: Any, config: Config) -> Listener:
    owner = config.chown_socket
    text = entry.text
    try:
        # uWSGI's TCP_DEFER_ACCEPT on its TCP sockets: the socket timeout
        sock = bind_listener(
            address, config.listen, reuse_port=config.reuse_port,
            chmod=config.chmod_socket,
            defer_accept=max(1, config.socket_timeout) if entry.defer_accept else 0,
        )
    except AddressError as exc:
        raise StartupError(str(exc)) from None
    listener = Listener(sock, entry.protocol, "bound")
    if address.kind == "unix":
        info = os.stat(address.path)
        listener.unix_path = address.path
        listener.unix_inode = (info.st_dev, info.st_ino)
        if owner:
            uid, gid = parse_owner(owner)
            try:
                os.chown(address.path, uid, gid)
            except OSError as exc:
                close_listener(listener, vacuum=True)
                raise StartupError(f"chown-socket: {address.path}: {exc.strerror}") from None
    _log_socket(index, sock, "bound", port_zero=address.kind in ("inet", "inet6")
                and address.port == 0, written=text)
    if entry.protocol == "uwsgi" and not _is_loopback(sock):
        _, where = describe_socket(sock)
        log.warning(
            f"*** WARNING: uwsgi socket {index} ({where}) speaks the uwsgi protocol on a "
            "non-loopback address: the protocol trusts its peer (any client that reaches it "
            "sets REMOTE_ADDR, HTTPS, SCRIPT_NAME...); bind it to 127.0.0.1 or a unix socket, "
            "or firewall it ***", event_kind="uwsgi_socket_exposed", index=index, addr=where)
    return listener


def _is_loopback(sock: _socket.socket) -> bool:
    """A unix socket, or a TCP one bound to a loopback address (not 0.0.0.0 / ::)."""
    if sock.family not in (_socket.AF_INET, _socket.AF_INET6):
        return True
    return is_loopback_address(sock.family, sock.getsockname()[0])


_V4_MAPPED = bytes(10) + b"\xff\xff"  # ::ffff:a.b.c.d
_V6_LOOPBACK = bytes(15) + b"\x01"  # ::1


def is_loopback_address(family: int, host: str) -> bool:
    """127.0.0.0/8, ::1 or ::ffff:127.x.y.z, as ipaddress's ``is_loopback`` (of the IPv4
    address an IPv4-mapped one holds), without importing ipaddress (start-up time, issue 13)."""
    packed = _socket.inet_pton(family, host.partition("%")[0])
    if family == _socket.AF_INET6:
        if packed[:12] != _V4_MAPPED:
            return packed == _V6_LOOPBACK
        packed = packed[12:]
    return packed[0] == 127


def _log_socket(
    index: int, sock: _socket.socket, how: str, *, port_zero: bool = False, written: str = ""
) -> None:
    kind, where = describe_socket(sock)
    if how == "bound":
        # uWSGI's words: "bound to TCP address" / "TCP6 address" / "UNIX address"
        family = {"UNIX": "UNIX", "INET6": "TCP6"}.get(kind, "TCP")
        shown = where if port_zero or not written else written
        auto = " (port auto-assigned)" if port_zero else ""
        text = f"uwsgi socket {index} bound to {family} address {shown}{auto} fd {sock.fileno()}"
    else:
        text = f"uwsgi socket {index} inherited {kind} address {where} fd {sock.fileno()}"
    log.info(text, event_kind="socket_" + how, index=index, family=kind, addr=where,
             fd=sock.fileno())


def close_listener(listener: Listener, vacuum: bool) -> None:
    """Close; with ``vacuum`` remove its socket file if this instance created it and it is
    still the same file (uWSGI's VACUUM lines)."""
    listener.sock.close()
    path = listener.unix_path
    if not vacuum or path is None:
        return
    try:
        info = os.lstat(path)
    except OSError:
        return
    if (info.st_dev, info.st_ino) != listener.unix_inode:
        log.warning(f"VACUUM WARNING: unix socket {path} changed inode. Skip removal",
                    event_kind="vacuum", path=path)
        return
    try:
        os.unlink(path)
    except OSError:
        return
    log.info(f"VACUUM: unix socket {path} removed.", event_kind="vacuum", path=path)


def check_http_to(config: Config, listeners: Sequence[Listener]) -> None:
    """``http-to``: uWSGI's router forwards --http requests to that address. uzerg's workers
    serve --http themselves, which is the same service when the address is one of this
    instance's own sockets; any other address would need a proxy: refused."""
    own = {socket_key(item.sock) for item in listeners}
    for text in config.http_to:
        try:
            kind, host, *rest = normalise(parse_address(text))
        except AddressError as exc:
            raise StartupError(f"http-to: {exc}") from None
        wildcard = {(kind, any_host, *rest) for any_host in ("0.0.0.0", "::")}
        if (kind, host, *rest) not in own and not own & wildcard:
            raise StartupError(
                f"http-to {text}: not one of this instance's sockets; uzerg's workers serve "
                "--http themselves and do not forward to other servers (point a proxy at it)"
            )
        log.info(f"http-to {text}: this instance's own socket; its workers serve --http "
                 "directly", event_kind="http_to", addr=text)
