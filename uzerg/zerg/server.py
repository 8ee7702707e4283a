"""A zerg server (SPEC §3): a unix listener in the master's event loop that hands its socket
list to every peer it allows.

Integration with an event loop (the master's: uzerg.processes.zerg_listeners)::

    server = ZergServer(config.zerg_server, sockets, protocols, allow_uids=..., allow_gids=...)
    server.start()                                   # binds; raises AddressError
    selector.register(server, selectors.EVENT_READ)  # anything with fileno()
    ...on readable: server.handle_readable()         # never blocks, never raises for a peer
    ...out of descriptors: not watched before server.resume_at (monotonic)
    ...at exit: selector.unregister(server); server.close(vacuum=config.vacuum)

It does not own the sockets it hands out (except a zergpool's, see ``owned_sockets``).

Across a reload (re-exec of the master) the listener itself is handed over (``handover()``,
then ``ZergServer(..., listener=sock, created_inode=...)`` in the new program): it is never
closed, so a zerg that connects meanwhile waits in its backlog instead of being refused.
"""

from __future__ import annotations

import collections
import grp
import os
import pwd
import socket
import struct
import time
from collections.abc import Iterable, Sequence

from uzerg.addresses import (
    ACCEPT_BACKOFF,
    ACCEPT_RESOURCE_ERRNOS,
    Address,
    AddressError,
    bind_listener,
    normalise,
    parse_address,
    socket_key,
)
from uzerg.logs import get_logger
from uzerg.record import record
from uzerg.zerg.handshake import SCM_MAX_FD, send_sockets
from uzerg.zerg.holders import live_zergs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

log = get_logger()

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
RECENT_ATTACHMENTS = 256
MAX_ACCEPTS_PER_CALL = 256


@record(frozen=True, slots=True)
class Attachment:
    """One served (or refused) peer: wall-clock time, and its credentials from SO_PEERCRED."""

    time: float
    pid: int
    uid: int
    gid: int


@record(slots=True)
class ListenerHandover:
    """A zerg server's (or zergpool entry's) listening socket kept open across a re-exec."""

    sock: socket.socket
    label: str  # "zerg server" or "zergpool"
    address: str  # as configured
    key: tuple[object, ...]  # normalised address: what a new configuration is matched by
    created_inode: tuple[int, int] | None  # its socket file, when this instance created it

    def close(self, unlink: bool, why: str = "is no longer configured") -> None:
        """Close it, never adopted; with ``unlink``, remove its socket file if it is still the
        one we created (a listener that the new configuration no longer has)."""
        self.sock.close()
        path = self.key[1] if self.key[0] == "unix" else None
        removed = unlink and isinstance(path, str) and _unlink_if_ours(path, self.created_inode)
        log.info(
            f"{self.label} {self.address} {why}: closed"
            + (", socket file removed" if removed else ""),
            event_kind="zerg_server_dropped",
            addr=self.address,
        )


def dedupe_sockets(
    socks: Iterable[socket.socket], protocols: Sequence[str | None] | None = None
) -> tuple[list[socket.socket], list[str | None]]:
    """Drop sockets whose normalised address was already seen; keep configuration order.

    Returns the sockets and their protocols (None when not given), aligned.
    """
    socks = list(socks)
    protos = list(protocols) if protocols is not None else [None] * len(socks)
    if len(protos) != len(socks):
        raise ValueError(f"{len(socks)} sockets but {len(protos)} protocols")
    seen: set[tuple[object, ...]] = set()
    kept: list[socket.socket] = []
    kept_protocols: list[str | None] = []
    for sock, protocol in zip(socks, protos, strict=True):
        key = socket_key(sock)
        if key in seen:
            continue
        seen.add(key)
        kept.append(sock)
        kept_protocols.append(protocol)
    return kept, kept_protocols


def resolve_ids(values: Iterable[int | str], kind: Literal["user", "group"]) -> frozenset[int]:
    """``--zerg-allow-uid``/``-gid`` values: numbers or names; raise ValueError for an unknown."""
    ids: set[int] = set()
    for value in values:
        text = str(value).strip()
        if text.isdigit():
            ids.add(int(text))
            continue
        try:
            ids.add(pwd.getpwnam(text).pw_uid if kind == "user" else grp.getgrnam(text).gr_gid)
        except KeyError:
            raise ValueError(f"unknown {kind}: {text}") from None
    return frozenset(ids)


class ZergServer:
    """Hands ``sockets`` (deduplicated by address) to each allowed peer connecting to
    ``address_text``. Peers of the same uid, root, or an allowed uid/gid are served."""

    def __init__(
        self,
        address_text: str,
        sockets: Sequence[socket.socket],
        protocols: Sequence[str | None] | None = None,
        allow_uids: Iterable[int | str] = (),
        allow_gids: Iterable[int | str] = (),
        chmod: int | None = None,
        *,
        backlog: int = 100,
        label: str = "zerg server",
        owned_sockets: Sequence[socket.socket] = (),
        listener: socket.socket | None = None,
        created_inode: tuple[int, int] | None = None,
    ) -> None:
        """``listener``: a unix socket already listening on ``address_text`` (inherited from
        the master before a re-exec) that ``start()`` adopts instead of binding;
        ``created_inode``: (st_dev, st_ino) of its socket file when this instance created it
        (before the re-exec too), so that vacuum still removes it, and only it."""
        self.address_text = address_text
        self.sockets, self.protocols = dedupe_sockets(sockets, protocols)
        if not self.sockets:
            raise ValueError(f"{label} {address_text}: no socket to hand out")
        self.send_protocols = protocols is not None
        self.allow_uids = resolve_ids(allow_uids, "user")
        self.allow_gids = resolve_ids(allow_gids, "group")
        self.chmod = chmod
        self.backlog = backlog
        self.label = label
        self.owned_sockets = list(owned_sockets)
        self.attached: collections.deque[Attachment] = collections.deque(maxlen=RECENT_ATTACHMENTS)
        self.refused: collections.deque[Attachment] = collections.deque(maxlen=RECENT_ATTACHMENTS)
        self.attach_count = 0
        self.refuse_count = 0
        self.drop_count = 0
        self._listener: socket.socket | None = listener
        self._adopting = listener is not None
        self._address: Address | None = None
        self._created_inode: tuple[int, int] | None = created_inode
        self.key: tuple[object, ...] | None = None  # normalised address, once started
        self.resume_at = 0.0  # monotonic: not to be watched before (out of resources)
        self._short_of_resources = False  # logged once per episode

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the listener (non-blocking), or adopt the inherited one, and log it.
        Raises AddressError with a clear line."""
        address = parse_address(self.address_text)
        if not address.is_unix:
            raise AddressError(
                f"{self.label} {self.address_text}: the address must be a unix socket path or @name"
            )
        if self._adopting:
            self._adopt(address)
        else:
            # chmod: pools honour --chmod-socket; a zerg server's file keeps the umask (SPEC §3)
            self._listener = bind_listener(address, self.backlog, chmod=self.chmod)
            if address.kind == "unix":
                info = os.stat(address.path)
                self._created_inode = (info.st_dev, info.st_ino)
        self._address = address
        self.key = normalise(address)
        log.info(
            f"*** Zerg server enabled on {self.address_text} ***",
            event_kind="zerg_server_enabled",
            addr=self.address_text,
            sockets=len(self.sockets),
            inherited=self._adopting,
            fd=self.fileno(),
        )
        if address.kind == "abstract":
            log.warning(
                f"{self.label} {self.address_text}: abstract unix sockets have no file "
                "permissions: any local process passing the peer-credential check can attach",
                event_kind="zerg_server_abstract",
                addr=self.address_text,
            )
        if len(self.sockets) > SCM_MAX_FD:
            log.warning(
                f"{self.label} {self.address_text}: {len(self.sockets)} sockets are sent in "
                f"several messages; a uWSGI zerg only gets the first {SCM_MAX_FD}",
                event_kind="zerg_server_many_sockets",
                addr=self.address_text,
                sockets=len(self.sockets),
            )

    def _adopt(self, address: Address) -> None:
        sock = self._listener
        assert sock is not None
        try:
            listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        except OSError:
            listening = 0
        if sock.family != socket.AF_UNIX or not listening:
            raise AddressError(
                f"{self.label} {self.address_text}: the inherited descriptor is not a "
                "listening unix socket"
            )
        # our own socket, held by nobody else: a changed --listen applies to it
        sock.listen(self.backlog)
        sock.setblocking(False)
        if self.chmod is not None and address.kind == "unix" and _is_file(
            address.path, self._created_inode
        ):
            os.chmod(address.path, self.chmod)

    def handover(self) -> ListenerHandover | None:
        """The listener and what the next master needs to adopt it (None if not started)."""
        if self._listener is None or self.key is None:
            return None
        return ListenerHandover(
            self._listener, self.label, self.address_text, self.key, self._created_inode
        )

    def fileno(self) -> int:
        if self._listener is None:
            raise RuntimeError(f"{self.label} {self.address_text} is not started")
        return self._listener.fileno()

    def close(self, vacuum: bool = False) -> None:
        """Close the listener (and owned sockets); with ``vacuum``, remove files we created."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            address = self._address
            if address is None and self._created_inode is not None:  # adopted, never started
                try:
                    address = parse_address(self.address_text)
                except AddressError:
                    address = None
            if vacuum and address is not None and address.kind == "unix":
                _unlink_if_ours(address.path, self._created_inode)
        for sock in self.owned_sockets:
            sock.close()

    # -- event loop ----------------------------------------------------------------------------

    def handle_readable(self) -> int:
        """Accept and serve the pending peers; returns how many were accepted. Never blocks.

        At most ``MAX_ACCEPTS_PER_CALL`` per call, so that a flood of peers cannot starve the
        rest of the master's loop; the listener stays readable and the loop calls again.
        """
        if self._listener is None:
            return 0
        accepted = 0
        while accepted < MAX_ACCEPTS_PER_CALL:
            try:
                conn, _ = self._listener.accept()
            except BlockingIOError:
                self._short_of_resources = False
                return accepted
            except InterruptedError:
                continue
            except ConnectionAbortedError:
                continue  # the peer left before we got to it
            except OSError as exc:
                if exc.errno in ACCEPT_RESOURCE_ERRNOS:
                    self._back_off(exc)
                else:
                    log.error(
                        f"{self.label} {self.address_text}: accept(): {exc.strerror or exc}",
                        event_kind="zerg_accept_error",
                        addr=self.address_text,
                    )
                return accepted
            accepted += 1
            self._short_of_resources = False
            with conn:
                self._serve(conn)
        return accepted

    def _serve(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        try:
            raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        except OSError as exc:
            self._drop(f"cannot read the peer's credentials: {exc.strerror}")
            return
        pid, uid, gid = _UCRED.unpack(raw)
        peer = Attachment(time.time(), pid, uid, gid)
        if not self._allows(uid, gid):
            self.refuse_count += 1
            self.refused.append(peer)
            log.warning(
                f"{self.label} {self.address_text}: refused zerg pid {pid} uid {uid} gid {gid} "
                "(allow it with --zerg-allow-uid/--zerg-allow-gid)",
                event_kind="zerg_refused",
                addr=self.address_text,
                pid=pid,
                uid=uid,
                gid=gid,
            )
            return
        # Descriptor numbers are read now, not at start(): a socket the master closed since
        # must fail loudly, never hand out whatever reused its number.
        fds = [sock.fileno() for sock in self.sockets]
        if -1 in fds:
            self._drop(f"zerg pid {pid}: socket {fds.index(-1)} of the list is closed")
            return
        try:
            send_sockets(conn, fds, self.protocols if self.send_protocols else None)
        except OSError as exc:
            # Would block (a fresh connection's buffer always has room: a peer playing games),
            # or the peer is gone (EPIPE/ECONNRESET): drop it, the master goes on.
            self._drop(f"zerg pid {pid}: {exc.strerror or exc}")
            return
        self.attach_count += 1
        self.attached.append(peer)
        log.info(
            f"{self.label} {self.address_text}: {len(self.sockets)} sockets handed to "
            f"zerg pid {pid} uid {uid}",
            event_kind="zerg_attached",
            addr=self.address_text,
            pid=pid,
            uid=uid,
            gid=gid,
            sockets=len(self.sockets),
        )

    def _allows(self, uid: int, gid: int) -> bool:
        return uid in (0, os.geteuid()) or uid in self.allow_uids or gid in self.allow_gids

    def _drop(self, why: str) -> None:
        self.drop_count += 1
        log.warning(
            f"{self.label} {self.address_text}: dropped a peer: {why}",
            event_kind="zerg_peer_dropped",
            addr=self.address_text,
        )

    def _back_off(self, exc: OSError) -> None:
        # the master does not watch the listener again before (instead of spinning on it)
        self.resume_at = time.monotonic() + ACCEPT_BACKOFF
        if not self._short_of_resources:  # one line per episode, not per attempt
            self._short_of_resources = True
            log.error(
                f"{self.label} {self.address_text}: accept(): {exc.strerror}: retrying later",
                event_kind="zerg_accept_resources",
                addr=self.address_text,
            )

    # -- stats -----------------------------------------------------------------------------------

    def stats(self) -> dict[str, object]:
        """The ``zerg`` part of the stats document (SPEC §12) for this server."""
        return {
            "address": self.address_text,
            "kind": self.label,
            "sockets": len(self.sockets),
            "attached": self.attach_count,
            "refused": self.refuse_count,
            "dropped": self.drop_count,
            "recent": [
                {"time": int(a.time), "pid": a.pid, "uid": a.uid, "gid": a.gid}
                for a in self.attached
            ],
            # the zergs still holding the sockets ("sockets": indexes; null: cannot tell)
            "zergs": live_zergs(self.attached, self.sockets),
        }


def _is_file(path: str, inode: tuple[int, int] | None) -> bool:
    """Whether ``path`` is still the very file ``inode`` names."""
    if inode is None:
        return False
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (info.st_dev, info.st_ino) == inode


def _unlink_if_ours(path: str, created: tuple[int, int] | None) -> bool:
    """Remove ``path`` only if it is still the very socket file this server bound."""
    if not _is_file(path, created):
        return False
    try:
        os.unlink(path)
    except OSError:
        return False
    return True
