"""The stats server (--stats ADDR, --stats-http): on connect, the master writes one JSON
document in uWSGI's shape (SPEC §12, what uwsgitop reads) and closes the connection.

Over HTTP (``stats-http``), ``?format=prometheus`` gets the same figures as Prometheus text
(uzerg.processes.prometheus); a ``stats-prometheus`` server always answers that."""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence

from uzerg import __version__
from uzerg.addresses import (
    ACCEPT_BACKOFF,
    ACCEPT_RESOURCE_ERRNOS,
    AddressError,
    bind_listener,
    describe_socket,
    parse_address,
)
from uzerg.logs import get_logger
from uzerg.processes.process import StartupError
from uzerg.processes.scoreboard import Scoreboard
from uzerg.processes.services import MasterService, OnReadable
from uzerg.processes.sockdiag import unix_listen_queue
from uzerg.processes.stats_clients import StatsClient
from uzerg.sockets import Listener

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from uzerg.processes.services import MasterView

log = get_logger()

# struct tcp_info: 8 one-byte fields, then u32 rto, ato, snd_mss, rcv_mss, unacked, sacked.
# For a listening socket the kernel reports the accept queue in unacked and its limit in sacked.
_TCP_INFO_QUEUE = struct.Struct("8x4x4x4x4xII")
MAX_CLIENTS = 64  # stats clients served at once; beyond, the newest is closed unanswered


def listen_queue(sock: socket.socket) -> tuple[int, int]:
    """(connections waiting in the accept queue, queue limit); (0, 0) when unknown. Unix
    sockets are read through sock_diag netlink (uWSGI reports 0 for them)."""
    if sock.family == socket.AF_UNIX:
        return unix_listen_queue(sock) or (0, 0)
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return 0, 0
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_QUEUE.size)
        return _TCP_INFO_QUEUE.unpack(raw[: _TCP_INFO_QUEUE.size])
    except (OSError, struct.error):
        return 0, 0


def process_memory(pid: int) -> tuple[int, int]:
    import psutil  # ~10 ms to import: only when stats are asked for, never at start-up

    try:
        info = psutil.Process(pid).memory_info()
    except (psutil.Error, OSError):
        return 0, 0
    return info.rss, info.vms


def stats_document(
    *,
    scoreboard: Scoreboard,
    workers: Sequence[Any],
    listeners: Sequence[Listener],
    zerg: Sequence[dict[str, object]] = (),
    cheap: Sequence[Any] = (),
    mules: Sequence[dict[str, Any]] | None = None,
    cwd: str = "",
) -> dict[str, Any]:
    """The document. ``workers`` are the master's records (worker_id, pid, spawned_at,
    respawn_count, harakiri_count); ``cheap`` the last records of the slots the cheaper
    subsystem stopped, shown as uWSGI does: ``"status": "cheap"``, ``pid`` 0; ``cwd`` the
    working directory to show if the current one has been removed."""
    sockets = []
    total_queue = 0
    for item in listeners:
        queue, max_queue = listen_queue(item.sock)
        total_queue += queue
        _kind, where = describe_socket(item.sock)
        sockets.append({
            "name": where,
            "proto": item.protocol,
            "queue": queue,
            "max_queue": max_queue,
            "shared": 0,
            "can_offload": 0,
        })
    now = time.time()
    worker_docs = []
    busy_total = 0
    slots = [(r, False) for r in workers] + [(r, True) for r in cheap]
    for record, cheaped in sorted(slots, key=lambda item: item[0].worker_id):
        wid = record.worker_id
        slot = scoreboard.worker(wid)
        totals = scoreboard.worker_totals(wid)
        cores = []
        busy = False
        for core_id, core in enumerate(scoreboard.cores_of(wid)):
            in_request = 1 if core.request_start and not cheaped else 0
            busy = busy or bool(in_request)
            cores.append({
                "id": core_id,
                "requests": core.requests,
                "static_requests": core.static_requests,
                "routed_requests": 0,
                "offloaded_requests": 0,
                "write_errors": 0,
                "read_errors": core.read_errors,
                "in_request": in_request,
                "vars": [],
                "req_info": {},
            })
        busy_total += busy
        if cheaped:
            status = "cheap"
        elif scoreboard.header.paused:
            status = "pause"
        else:
            status = "busy" if busy else "idle"
        rss, vsz = process_memory(record.pid) if not cheaped else (0, 0)
        worker_docs.append({
            "id": wid,
            "pid": 0 if cheaped else record.pid,
            "accepting": 0 if cheaped else int(slot.accepting),
            "requests": totals["requests"],
            "delta_requests": int(slot.delta_requests),
            "exceptions": totals["exceptions"],
            "harakiri_count": record.harakiri_count,
            "signals": 0,
            "signal_queue": 0,
            "status": status,
            "rss": rss,
            "vsz": vsz,
            "running_time": totals["running_time"],
            "last_spawn": int(record.spawned_at),
            "respawn_count": record.respawn_count,
            "tx": totals["tx"],
            "avg_rt": totals["avg_rt"],
            "apps": [],
            "cores": cores,
        })
    document: dict[str, Any] = {
        "version": f"uzerg {__version__}",
        "listen_queue": total_queue,
        "listen_queue_errors": 0,
        "signal_queue": 0,
        "load": busy_total,
        "pid": os.getpid(),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "cwd": current_directory(cwd),
        "locks": [],
        "sockets": sockets,
        "workers": worker_docs,
        "time": int(now),
    }
    if zerg:
        document["zerg"] = list(zerg)
    if mules is not None:  # uzerg's addition (uWSGI's document lists no mules)
        mule_docs = []
        for mule in mules:
            rss, vsz = process_memory(mule["pid"]) if mule["pid"] else (0, 0)
            mule_docs.append({**mule, "rss": rss, "vsz": vsz})
        document["mules"] = mule_docs
    return document


def stats_log_text(scoreboard: Scoreboard, worker_ids: Sequence[int]) -> str:
    """What SIGUSR1 writes to the log, in uWSGI's layout."""
    lines = [f"\tworkers total requests: {scoreboard.total_requests()}", "-----------------"]
    for wid in worker_ids:
        totals = scoreboard.worker_totals(wid)
        lines.append(f"\tworker {wid} app 0 [] requests: {totals['requests']} "
                     f"exceptions: {totals['exceptions']}")
        lines.append("-----------------")
    return "\n" + "\n".join(lines) + "\n"


def current_directory(fallback: str) -> str:
    """The working directory; ``fallback`` (the one at start-up, as uWSGI reports) when it
    has been removed since."""
    try:
        return os.getcwd()
    except OSError:
        return fallback


class StatsServer(MasterService):
    """A listener in the master's loop (or the Emperor's), and its clients, each its own
    watch (uzerg.processes.stats_clients); ``build`` returns the current document."""

    def __init__(self, address_text: str, http: bool, build: Callable[[], dict[str, Any]],
                 *, prometheus: bool = False) -> None:
        """``http``: answer HTTP requests; ``prometheus`` (implies http): always as
        Prometheus text (stats-prometheus)."""
        self.address_text = address_text
        self.http = http or prometheus
        self.prometheus = prometheus
        self.build = build
        try:
            address = parse_address(address_text)
            self.sock = bind_listener(address, 100)
        except AddressError as exc:
            raise StartupError(f"{self.option}: {exc}") from None
        self.unix_path = address.path if address.kind == "unix" else None
        shown = address_text
        if address.kind in ("inet", "inet6") and address.port == 0:
            shown = describe_socket(self.sock)[1]  # the port the kernel chose
        what = "Prometheus metrics" if prometheus else "Stats server"
        log.info(f"*** {what} enabled on {shown} fd: {self.sock.fileno()} ***",
                 event_kind="stats_enabled", addr=shown, fd=self.sock.fileno())
        self.resume_at = 0.0  # out of descriptors: not watched before (monotonic)
        self._short_of_resources = False  # logged once per episode
        self.clients: dict[int, StatsClient] = {}  # fd → a client being served
        self._full = False  # MAX_CLIENTS in hand: logged once per episode
        self.label = f"{self.option} server {address_text}"

    @property
    def option(self) -> str:
        return "stats-prometheus" if self.prometheus else "stats"

    def fileno(self) -> int:
        return self.sock.fileno()

    def handle_readable(self) -> None:
        for _ in range(64):  # bounded: the master has other work
            try:
                conn, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                self._short_of_resources = False
                return
            except OSError as exc:
                resources = exc.errno in ACCEPT_RESOURCE_ERRNOS
                if resources:
                    self.resume_at = time.monotonic() + ACCEPT_BACKOFF
                if not (resources and self._short_of_resources):
                    log.error(f"stats server accept(): {exc.strerror}", event_kind="stats_error")
                self._short_of_resources = resources
                return
            self._short_of_resources = False
            if len(self.clients) >= MAX_CLIENTS:
                conn.close()  # the newest goes without an answer
                if not self._full:
                    log.warning(f"{self.option} server {self.address_text}: {MAX_CLIENTS} "
                                "clients in hand, closing new ones until one is done",
                                event_kind="stats_error")
                self._full = True
                continue
            self._full = False
            client = StatsClient(conn, peer, http=self.http, prometheus=self.prometheus,
                                 build=self.build, done=self._forget,
                                 where=f"{self.option} server {self.address_text}")
            if not client.closed:
                self.clients[client.fd] = client

    def _forget(self, client: StatsClient) -> None:
        if self.clients.get(client.fd) is client:
            del self.clients[client.fd]

    # -- as a service of the master's (or the Emperor's) loop -----------------------------------

    def watches(self) -> Mapping[int, OnReadable]:
        found: dict[int, OnReadable] = {
            fd: client.on_readable for fd, client in self.clients.items()
            if client.answer is None}
        if self.resume_at <= time.monotonic():
            found[self.fileno()] = self.handle_readable
        return found

    def write_watches(self) -> Mapping[int, OnReadable]:
        return {fd: client.on_writable for fd, client in self.clients.items()
                if client.answer is not None}

    def wake_at(self) -> float | None:
        times = [client.deadline for client in self.clients.values()]
        if self.resume_at > time.monotonic():
            times.append(self.resume_at)
        return min(times) if times else None

    def tick(self) -> None:
        if self.clients:
            now = time.monotonic()
            for client in list(self.clients.values()):
                client.expire(now)

    def close_in_worker(self) -> None:
        self.sock.close()
        for client in self.clients.values():
            client.conn.close()
        self.clients.clear()

    def shutdown(self, vacuum: bool) -> None:
        self.close(vacuum)

    def close(self, vacuum: bool) -> None:
        for client in list(self.clients.values()):
            client.close()
        self.sock.close()
        if vacuum and self.unix_path:
            try:
                os.unlink(self.unix_path)
                log.info(f"VACUUM: unix socket {self.unix_path} (stats) removed.",
                         event_kind="vacuum", path=self.unix_path)
            except OSError:
                pass


class StatsService(MasterService):
    """The stats server as a master service: bound when the master's loop starts."""

    def __init__(self, address_text: str, http: bool,
                 zerg: Callable[[], list[dict[str, object]]], *,
                 prometheus: bool = False,
                 mules: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        """``prometheus``: the stats-prometheus server (HTTP, Prometheus text only)."""
        self.address_text = address_text
        self.http = http
        self.prometheus = prometheus
        self.zerg = zerg
        self.mules = mules
        self.server: StatsServer | None = None
        self.label = f"{'stats-prometheus' if prometheus else 'stats'} server {address_text}"
        self.cwd = current_directory("")

    def start(self, master: MasterView) -> None:
        def build() -> dict[str, Any]:
            return stats_document(scoreboard=master.scoreboard, workers=master.worker_records(),
                                  listeners=master.listeners, zerg=self.zerg(),
                                  cheap=master.cheap_records(),
                                  mules=self.mules() if self.mules else None, cwd=self.cwd)

        self.server = StatsServer(self.address_text, self.http, build,
                                  prometheus=self.prometheus)

    def watches(self) -> Mapping[int, OnReadable]:
        return self.server.watches() if self.server is not None else {}

    def write_watches(self) -> Mapping[int, OnReadable]:
        return self.server.write_watches() if self.server is not None else {}

    def wake_at(self) -> float | None:
        return self.server.wake_at() if self.server is not None else None

    def tick(self) -> None:
        if self.server is not None:
            self.server.tick()

    def close_in_worker(self) -> None:
        if self.server is not None:
            self.server.close_in_worker()

    def shutdown(self, vacuum: bool) -> None:
        if self.server is not None:
            self.server.close(vacuum)
