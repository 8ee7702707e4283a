"""Zergpools (``zergpool = ADDR:SOCK[,SOCK...]``, SPEC §5): bind each pool socket once, and give
every entry a ZergServer that hands out exactly its own sockets. The entries come parsed
(``ZergPoolEntry``, by the config layer).

Restarting a pool while zergs still hold its TCP sockets (SPEC §5, last bullet). The zergs keep
the old listening socket open, so a plain ``bind`` of the same port fails with EADDRINUSE
(SO_REUSEADDR does not help against a live listener). Mechanism chosen: every pool TCP socket is
bound with SO_REUSEPORT, so a restarted pool (same user) binds alongside the listener the zergs
still hold. Consequence, logged when it happens: until those zergs are restarted onto the new
pool, the kernel spreads new connections over two listen queues, the old one (served by the old
zergs) and the new one (served by zergs that attach to the restarted pool); connections that land
in the new queue wait there until a zerg attaches. When the port is held by a socket bound
without SO_REUSEPORT (a uWSGI pool, another program) the bind still fails, and the error says who
may hold it. Unix pool sockets cannot be shared that way: ``bind_listener`` refuses to steal a
path another process still accepts on, with a clear error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterable, Mapping, MutableMapping

from uzerg.addresses import Address, AddressError, bind_listener, normalise, parse_address
from uzerg.config.values import ZergPoolEntry
from uzerg.logs import get_logger
from uzerg.zerg.server import ListenerHandover, ZergServer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = get_logger()


def build_zergpools(
    entries: Iterable[ZergPoolEntry],
    backlog: int = 100,
    chmod: int | None = None,
    allow_uids: Iterable[int | str] = (),
    allow_gids: Iterable[int | str] = (),
    *,
    reuse_port: bool = True,
    start: bool = True,
    inherited: Mapping[tuple[object, ...], socket.socket] | None = None,
    inherited_listeners: MutableMapping[tuple[object, ...], ListenerHandover] | None = None,
    activated: Any = None,
) -> list[ZergServer]:
    """Bind every pool socket once and return one (started) ZergServer per entry.

    ``inherited`` (normalised address → socket) are pool sockets kept across a re-exec of the
    master (SIGHUP): they are used instead of binding again, so zergs keep one queue.
    ``inherited_listeners`` (normalised pool address → listener) are the entries' own unix
    listeners kept across the re-exec: an entry of the same address adopts its listener (and
    takes it out of the mapping), so a zerg attaching during the reload is never refused.
    ``activated`` (uzerg.systemd.ActivatedSockets): sockets systemd passed; a pool socket of
    the same address uses it instead of binding.

    On any failure everything bound so far is closed and AddressError is raised, naming the
    entry and the address (the caller logs it and exits 1).
    """
    allow_uids, allow_gids = tuple(allow_uids), tuple(allow_gids)
    bound: dict[tuple[object, ...], socket.socket] = {}
    created_files: list[str] = []  # unix pool sockets we bound: removed again if we fail
    servers: list[ZergServer] = []
    pool_addresses: set[tuple[object, ...]] = set()
    spare = dict(inherited or {})  # inherited sockets not claimed yet
    try:
        for entry in entries:
            pool_key = normalise(parse_address(entry.address))
            if pool_key in pool_addresses:
                raise AddressError(f"zergpool {entry}: pool address {entry.address} is used twice")
            pool_addresses.add(pool_key)
            own: list[socket.socket] = []
            for item in entry.sockets:
                address = parse_address(item)
                try:
                    key = normalise(address)
                except AddressError as exc:
                    raise AddressError(f"zergpool {entry}: {exc}") from None
                if address.kind in ("inet", "inet6") and address.port == 0:
                    # any free port: every listing is a socket of its own, never shared; after
                    # a reload it takes the next inherited socket of the same host
                    old = _take_port_zero(spare, key)
                    key = (*key, "port 0", len(bound))
                    if old is not None:
                        bound[key] = old
                elif key not in bound and key in spare:
                    bound[key] = spare.pop(key)
                elif key not in bound and activated:
                    passed = activated.claim_address(key)
                    if passed is not None:
                        bound[key] = passed
                        log.info(f"zergpool {entry.address} inherited socket {item} "
                                 f"(fd: {passed.fileno()})", event_kind="zergpool_activated",
                                 pool=entry.address, addr=item, fd=passed.fileno())
                if key not in bound:
                    bound[key] = _bind_pool_socket(entry, address, backlog, chmod, reuse_port)
                    if address.kind == "unix":
                        created_files.append(address.path)
                own.append(bound[key])
            kept = inherited_listeners.pop(pool_key, None) if inherited_listeners else None
            server = ZergServer(
                entry.address,
                own,
                None,
                allow_uids,
                allow_gids,
                chmod,
                backlog=backlog,
                label="zergpool",
                owned_sockets=own,
                listener=kept.sock if kept else None,
                created_inode=kept.created_inode if kept else None,
            )
            servers.append(server)
            if start:
                try:
                    server.start()
                except AddressError as exc:
                    raise AddressError(f"zergpool {entry}: {exc}") from None
    except BaseException:
        for server in servers:
            server.close(vacuum=True)  # only removes a file that is still the one it bound
        for sock in bound.values():
            sock.close()
        for path in created_files:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
    return servers


def _bind_pool_socket(
    entry: ZergPoolEntry, address: Address, backlog: int, chmod: int | None, reuse_port: bool
) -> socket.socket:
    tcp = not address.is_unix
    joining = tcp and reuse_port and _port_is_held(address)
    try:
        sock = bind_listener(
            address, backlog, reuse_port=tcp and reuse_port, chmod=chmod if not tcp else None
        )
    except AddressError as exc:
        hint = ""
        if tcp and _port_is_held(address):
            hint = (
                " (a live listener holds it without SO_REUSEPORT: zergs of a previous pool "
                "or another program; stop them first)"
            )
        raise AddressError(f"zergpool {entry}: {exc}{hint}") from None
    kind = "UNIX" if address.is_unix else "TCP"
    where = str(address) if address.is_unix else _tcp_name(sock)
    log.info(
        f"zergpool {entry.address} bound to {kind} socket {where} (fd: {sock.fileno()})",
        event_kind="zergpool_bound",
        pool=entry.address,
        kind=kind,
        addr=where,
        fd=sock.fileno(),
    )
    if joining:
        log.warning(
            f"zergpool {entry.address}: {where} is still listening in another process (zergs of "
            "a previous pool?): bound alongside it with SO_REUSEPORT; new connections are "
            "spread over both until those zergs attach to this pool",
            event_kind="zergpool_reuseport_join",
            pool=entry.address,
            addr=where,
        )
    return sock


def _take_port_zero(
    spare: dict[tuple[object, ...], socket.socket], key: tuple[object, ...]
) -> socket.socket | None:
    for old_key in spare:
        if old_key[:2] == key[:2]:  # same family and host, whatever port it got
            return spare.pop(old_key)
    return None


def _port_is_held(address: Address) -> bool:
    """Whether a live listener already holds a TCP address (probe bind, no SO_REUSEPORT)."""
    probe = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if address.kind == "inet6":
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        probe.bind(address.sockaddr())
    except OSError as exc:
        return exc.errno == errno.EADDRINUSE
    finally:
        probe.close()
    return False


def _tcp_name(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"
