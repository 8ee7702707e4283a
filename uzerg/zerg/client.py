"""Attach to zerg servers (``--zerg ADDR``, SPEC §4.1, §4.3): gather their listening sockets.

Usage by the master, before it binds anything::

    try:
        received = attach_to_zerg_servers(config.zerg, config.zerg_timeout,
                                          fallback=config.zerg_fallback)
    except HandshakeError as exc:
        log.error(str(exc), detail=exc.detail)   # uWSGI's line; exit status 1
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from uzerg.addresses import describe_socket
from uzerg.logs import get_logger
from uzerg.record import record
from uzerg.zerg.handshake import DEFAULT_TIMEOUT, HandshakeError, Received, fetch_sockets

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket

log = get_logger()

KNOWN_PROTOCOLS = frozenset({"uwsgi", "http"})
WAIT_RETRY = 0.05  # seconds between attach attempts under zerg-wait


@record
class ReceivedSocket:
    """A listening socket handed over by a zerg server (non-blocking, close-on-exec)."""

    sock: _socket.socket  # the C type socket.socket extends (uzerg.zerg.handshake)
    protocol: str | None  # the server's hint; None when it gave none (fall back to --protocol)
    server: str  # the zerg server address it came from


def attach_to_zerg_servers(
    addrs: Sequence[str], timeout: float = DEFAULT_TIMEOUT, *, fallback: bool = False,
    wait: float = 0.0,
) -> list[ReceivedSocket]:
    """Attach to every server in order and return all their sockets, in order.

    Without ``fallback`` the first failure closes what was received so far and raises
    HandshakeError. With it a failing server is logged and skipped. ``wait`` (zerg-wait):
    a server that is not up yet (connection refused, no socket file) is retried until that
    many seconds after the start; without it the first refusal counts, as in uWSGI.
    """
    received: list[ReceivedSocket] = []
    wait_until = time.monotonic() + wait
    try:
        for address in addrs:
            try:
                result = _fetch_waiting(address, timeout, wait_until)
            except HandshakeError as exc:
                if not fallback:
                    raise
                log.warning(
                    f"{exc} ({exc.detail}): zerg-fallback, skipping it",
                    event_kind="zerg_attach_failed",
                    addr=address,
                    detail=exc.detail,
                )
                continue
            protocols = result.protocols or [None] * len(result.sockets)
            for sock, protocol in zip(result.sockets, protocols, strict=True):
                received.append(ReceivedSocket(sock, _known(protocol, address), address))
        for index, item in enumerate(received):
            _ensure_non_blocking(item.sock)
            kind, where = describe_socket(item.sock)
            log.info(
                f"uwsgi zerg socket {index} attached to {kind} address {where} "
                f"fd {item.sock.fileno()}",
                event_kind="zerg_socket_attached",
                index=index,
                family=kind,
                addr=where,
                fd=item.sock.fileno(),
                server=item.server,
                protocol=item.protocol,
            )
    except BaseException:
        for item in received:
            item.sock.close()
        raise
    if received:
        log.info("zerg sockets attached", event_kind="zerg_attached", count=len(received))
    return received


def _fetch_waiting(address: str, timeout: float, wait_until: float) -> Received:
    logged = False
    while True:
        try:
            return fetch_sockets(address, timeout)
        except HandshakeError as exc:
            if not exc.not_up or time.monotonic() >= wait_until:
                raise
            if not logged:
                logged = True
                log.info(f"zerg server {address} is not up yet ({exc.detail}): zerg-wait, "
                         f"retrying for {max(0.0, wait_until - time.monotonic()):.0f} s",
                         event_kind="zerg_wait", addr=address)
            time.sleep(min(WAIT_RETRY, max(0.0, wait_until - time.monotonic())))


def _known(protocol: str | None, server: str) -> str | None:
    if protocol is None or protocol in KNOWN_PROTOCOLS:
        return protocol
    log.warning(
        f"zerg server {server} hinted unknown protocol {protocol!r}: ignoring the hint",
        event_kind="zerg_unknown_protocol",
        server=server,
        protocol=protocol,
    )
    return None


def _ensure_non_blocking(sock: _socket.socket) -> None:
    # O_NONBLOCK lives in the open file description shared with every holder; the binder
    # normally sets it (uWSGI does), we only add it when missing (SPEC §2, last bullet).
    if os.get_blocking(sock.fileno()):
        log.info(
            f"zerg socket fd {sock.fileno()} was blocking: setting O_NONBLOCK",
            event_kind="zerg_socket_nonblocking",
            fd=sock.fileno(),
        )
    sock.setblocking(False)
