"""The master's zerg side as one service: the zerg server and the zergpool entries.

``ZergListeners`` owns their listeners and the pool sockets. It binds them, or adopts those
the previous master kept across a re-exec reload (closing, and removing the files of, the ones
the configuration no longer has); it hands the master what to watch, backing a listener off
for a moment when accept() runs out of descriptors; it exports what a re-exec keeps, closes
them in a freshly forked worker, and at shutdown removes the files it created (vacuum).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping

from uzerg.addresses import AddressError, normalise, parse_address
from uzerg.config.model import Config
from uzerg.processes.process import StartupError
from uzerg.processes.reexec import InheritedState, describe_zerg_side
from uzerg.processes.services import Kept, MasterService, OnReadable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from uzerg.processes.services import MasterView
    from uzerg.systemd import ActivatedSockets
    from uzerg.zerg.server import ListenerHandover, ZergServer


class ZergListeners(MasterService):
    label = "zerg server"

    def __init__(self, config: Config, state: InheritedState | None) -> None:
        self.config = config
        self.pools: list[ZergServer] = []
        self.zerg_server: ZergServer | None = None
        self._inherited_pool_sockets = dict(state.pool_sockets) if state else {}
        # inherited listeners not adopted yet (normalised address → it)
        self._unclaimed: dict[tuple[object, ...], ListenerHandover] = (
            dict(state.zerg_listeners) if state else {}
        )

    # -- start-up ------------------------------------------------------------------------------

    def drop_unconfigured(self) -> None:
        """Close the inherited listeners whose address this configuration no longer has,
        their socket files removed if we created them (the address changed across the reload)."""
        if not self._unclaimed:
            return
        config = self.config
        texts = [config.zerg_server] if config.zerg_server else []
        texts += [entry.address for entry in config.zergpool]
        wanted = {key for key in map(_key, texts) if key is not None}
        for key in [key for key in self._unclaimed if key not in wanted]:
            self._unclaimed.pop(key).close(unlink=True)

    def bind_pools(self, activated: ActivatedSockets | None = None) -> None:
        """Bind (or adopt) every zergpool entry's listener and sockets; StartupError if not.
        ``activated``: sockets systemd passed, used for pool sockets of the same address."""
        entries = self.config.zergpool
        if not entries:
            return
        from uzerg.zerg import build_zergpools

        try:
            self.pools = build_zergpools(
                entries,
                backlog=self.config.listen,
                chmod=self.config.chmod_socket,
                allow_uids=self.config.zerg_allow_uid,
                allow_gids=self.config.zerg_allow_gid,
                inherited=self._inherited_pool_sockets,
                inherited_listeners=self._unclaimed,
                activated=activated,
            )
        except (AddressError, ValueError) as exc:
            raise StartupError(str(exc)) from None

    def start(self, master: MasterView) -> None:
        """Bind (or adopt) the zerg server, which hands out the instance's sockets."""
        config = self.config
        if config.zerg_server and master.listeners:
            listeners = master.listeners
            if any(item.tls is not None or item.protocol == "https-redirect" for item in listeners):
                # a zerg gets the descriptor only: it would answer in clear, or run the app
                raise StartupError("zerg-server: cannot hand out https or http-to-https "
                                   "sockets (a zerg has no certificate): serve them here only")
            key = _key(config.zerg_server)
            kept = self._unclaimed.pop(key, None) if key is not None else None
            from uzerg.zerg.server import ZergServer

            try:
                server = ZergServer(
                    config.zerg_server,
                    [item.sock for item in listeners],
                    [_hint(item.protocol) for item in listeners],
                    config.zerg_allow_uid,
                    config.zerg_allow_gid,
                    backlog=config.listen,
                    listener=kept.sock if kept else None,
                    created_inode=kept.created_inode if kept else None,
                )
                server.start()
            except (AddressError, ValueError) as exc:
                if kept is not None:
                    kept.sock.close()
                raise StartupError(f"zerg-server: {exc}") from None
            self.zerg_server = server
        self._close_unclaimed("has no socket to hand out")

    # -- the MasterService interface -----------------------------------------------------------

    def servers(self) -> list[ZergServer]:
        """The zerg server first, then the pools, as the stats document lists them."""
        return ([self.zerg_server] if self.zerg_server else []) + self.pools

    def watches(self) -> Mapping[int, OnReadable]:
        now = time.monotonic()
        return {s.fileno(): s.handle_readable for s in self.servers() if s.resume_at <= now}

    def wake_at(self) -> float | None:
        now = time.monotonic()
        backing_off = [s.resume_at for s in self.servers() if s.resume_at > now]
        return min(backing_off) if backing_off else None

    def handover(self) -> Kept:
        seen: dict[int, socket.socket] = {}
        for pool in self.pools:
            for sock in pool.owned_sockets:
                seen.setdefault(sock.fileno(), sock)
        handovers = [server.handover() for server in self.servers()]
        return describe_zerg_side(list(seen.values()), [h for h in handovers if h is not None])

    def close_in_worker(self) -> None:
        for server in self.servers():
            server.close(vacuum=False)
        for kept in self._unclaimed.values():  # the zerg server's, not adopted yet
            kept.sock.close()

    def shutdown(self, vacuum: bool) -> None:
        for server in self.servers():
            server.close(vacuum=vacuum)

    def abort(self) -> None:
        """Start-up failed: close everything, removing the files this instance created."""
        for pool in self.pools:
            pool.close(vacuum=True)
        self._close_unclaimed("is not served: start-up failed")

    def stats(self) -> list[dict[str, object]]:
        return [server.stats() for server in self.servers()]

    def _close_unclaimed(self, why: str) -> None:
        while self._unclaimed:
            self._unclaimed.popitem()[1].close(unlink=True, why=why)


def _key(text: str) -> tuple[object, ...] | None:
    try:
        return normalise(parse_address(text))
    except AddressError:
        return None  # reported where it is bound


def _hint(protocol: str) -> str:
    return "http" if protocol == "http11" else protocol
