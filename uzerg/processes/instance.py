"""``run(config) -> int``: from a Config to a running instance and its exit status.

Start-up order (uWSGI's): log file / daemonize, chdir and environment, pidfile, zerg attach,
socket binding, zergpools, privilege drop, app loading (unless lazy-apps), then the master
forks the workers and runs its loop. After a reload (uzerg.processes.reexec) the sockets, pools, the
zerg server's and pools' own listeners and the old workers come from the previous master
instead of being bound, attached or spawned again.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog

from uzerg import __version__
from uzerg.addresses import AddressError, normalise, parse_address
from uzerg.config.model import Config
from uzerg.logs import configure_logging
from uzerg.processes import reexec
from uzerg.processes.fifo import MasterFifo
from uzerg.processes.master import SIGNALS, Master
from uzerg.processes.process import (
    StartupError,
    daemonize,
    drop_privileges,
    open_log_file,
    prepare_environment,
    remove_pidfile,
    set_process_title,
    write_pidfile,
)
from uzerg.processes.scoreboard import Scoreboard
from uzerg.processes.stats import StatsServer, stats_document
from uzerg.processes.worker import EXIT_NEED_APP, Worker

# Imported before privileges are dropped: the target uid may not be able to read our own
# installation (a tox or root-owned virtualenv), only the application's files.
from uzerg.serve.apps import AppLoadError, load_application, no_application
from uzerg.sockets import Listener, build_listeners, close_listener

log = structlog.get_logger()

NO_ROUTER = (
    "uzerg has no separate HTTP router process: --http sockets are served directly by the "
    "workers as HTTP"
)


def run(config: Config) -> int:
    """Run the instance until it stops; returns the process exit status."""
    state = reexec.take_state(os.environ)
    instance = Instance(config, state)
    try:
        return instance.run()
    except StartupError as exc:
        log.error(str(exc), event_kind="startup_error")
        instance.abort()
        return exc.status


class Instance:
    def __init__(self, config: Config, state: reexec.InheritedState | None) -> None:
        self.config = config
        self.state = state
        self.origin_cwd = state.origin_cwd if state else os.getcwd()
        self.daemonized = bool(state and state.daemonized)
        self.listeners: list[Listener] = []
        self.pools: list[Any] = []
        # inherited zerg-server/zergpool listeners not adopted yet (normalised address → it)
        self.zerg_listeners: dict[tuple[object, ...], Any] = {}
        self.pidfile_written = False

    def run(self) -> int:
        config = self.config
        self._setup_logging()
        # from now on a signal waits for the master's loop (loading a big app takes seconds;
        # a SIGHUP or SIGTERM meanwhile must not kill the instance half-way)
        early_signals: list[int] = []
        for name in SIGNALS:
            signal.signal(getattr(signal, "SIG" + name),
                          lambda signum, _frame: early_signals.append(signum))
        # after a reload they were blocked across exec() (uzerg.processes.reexec): deliver them now
        signal.pthread_sigmask(signal.SIG_UNBLOCK, reexec.RELOAD_BLOCKED_SIGNALS)
        log.info(f"*** Starting uzerg {__version__} (pid: {os.getpid()}) on "
                 f"[{time.ctime()}] ***", event_kind="starting", pid=os.getpid())
        prepare_environment(config)
        log.info(f"current working directory: {os.getcwd()}", event_kind="cwd")
        if config.pidfile:
            write_pidfile(config.pidfile)
            self.pidfile_written = True
        self.zerg_listeners = self._inherited_zerg_listeners()
        self.listeners = build_listeners(
            config, self._attach(), self.state.listeners if self.state else ()
        )
        self.pools = self._build_pools()
        if not self.listeners and not self.pools:
            raise StartupError(
                "no socket to serve: use --socket, --http-socket, --http, --zerg or zergpool"
            )
        if config.http:
            log.info(NO_ROUTER, event_kind="no_http_router")
        drop_privileges(config.uid, config.gid)
        log.info(f"your server socket listen backlog is limited to {config.listen} connections",
                 event_kind="listen_backlog", backlog=config.listen)
        log.info(f"your mercy for graceful operations on workers is "
                 f"{config.worker_reload_mercy} seconds", event_kind="mercy")
        set_process_title(config, "uzerg master")
        app_factory = self._app_factory() if self.listeners else _no_app_needed
        threads = config.threads
        processes = config.processes
        scoreboard = Scoreboard(max(processes * 4, processes + 16), threads)
        services = Services(self)

        master_pid = os.getpid()  # read before any fork: see Worker's master_pid

        def run_worker(worker_id: int) -> int:
            return Worker(worker_id, self.listeners, config, scoreboard, app_factory,
                          master_pid=master_pid).run()

        master = Master(config, self.listeners, scoreboard, run_worker, services,
                        self.state.previous_workers if self.state else [],
                        reloaded=self.state is not None, pending_signals=early_signals)
        return master.run()

    # -- steps ---------------------------------------------------------------------------------

    def _setup_logging(self) -> None:
        config = self.config
        if self.state is None and config.daemonize:
            log.info("*** daemonizing uWSGI ***", event_kind="daemonize")
            daemonize(config.daemonize)
            self.daemonized = True
        elif self.state is None and config.logto:
            open_log_file(config.logto)
        configure_logging(json=config.log_json, stream=sys.stderr)

    def _attach(self) -> list[Any]:
        zergs = self.config.zerg
        if not zergs or self.state is not None:  # after a reload: the inherited ones are kept
            return []
        from uzerg.zerg import HandshakeError, attach_to_zerg_servers

        try:
            return attach_to_zerg_servers(
                zergs, float(self.config.zerg_timeout), fallback=self.config.zerg_fallback
            )
        except HandshakeError as exc:
            # uWSGI's line, then why (uWSGI says nothing more; an operator needs the reason)
            raise StartupError(f"{exc} ({exc.detail})" if exc.detail else str(exc)) from None

    def _inherited_zerg_listeners(self) -> dict[tuple[object, ...], Any]:
        """The previous master's zerg-server and zergpool listeners that this configuration
        still has (by normalised address); the others are closed now, their socket files
        removed if we created them (the address changed across the reload)."""
        inherited = dict(self.state.zerg_listeners) if self.state else {}
        if not inherited:
            return {}
        wanted = set()
        config = self.config
        texts = [config.zerg_server] if config.zerg_server else []
        texts += [entry.address for entry in config.zergpool]
        for text in texts:
            try:
                wanted.add(normalise(parse_address(text)))
            except AddressError:
                pass  # reported where it is bound
        for key in [key for key in inherited if key not in wanted]:
            inherited.pop(key).close(unlink=True)
        return inherited

    def close_unclaimed_zerg_listeners(self, why: str) -> None:
        """Close the inherited zerg listeners nothing adopted (their files removed if ours)."""
        while self.zerg_listeners:
            self.zerg_listeners.popitem()[1].close(unlink=True, why=why)

    def _build_pools(self) -> list[Any]:
        entries = self.config.zergpool
        if not entries:
            return []
        from uzerg.zerg import build_zergpools

        try:
            return build_zergpools(
                entries,
                backlog=self.config.listen,
                chmod=self.config.chmod_socket,
                allow_uids=self.config.zerg_allow_uid,
                allow_gids=self.config.zerg_allow_gid,
                inherited=self.state.pool_sockets if self.state else None,
                inherited_listeners=self.zerg_listeners,
            )
        except (AddressError, ValueError) as exc:
            raise StartupError(str(exc)) from None

    def _app_factory(self) -> Callable[[], Callable[..., Any]]:
        config = self.config
        need_app = config.need_app

        def load() -> Callable[..., Any]:
            try:
                return load_application(config)
            except AppLoadError as exc:
                log.error(str(exc), event_kind="app_load_error")
                if need_app:
                    raise
                log.error("*** no app loaded. going in full dynamic mode ***",
                          event_kind="no_app")
                return no_application

        if config.lazy_apps:
            def load_in_worker() -> Callable[..., Any]:
                try:
                    return load()
                except AppLoadError:
                    sys.stderr.flush()
                    os._exit(EXIT_NEED_APP)

            return load_in_worker
        try:
            app = load()
        except AppLoadError:
            raise StartupError("*** no app loaded. GAME OVER ***", EXIT_NEED_APP) from None
        log.info("WSGI app 0 (mountpoint='') ready", event_kind="app_ready")
        return lambda: app

    def abort(self) -> None:
        """Start-up failed: undo what this process created."""
        vacuum = self.config.vacuum
        for listener in self.listeners:
            close_listener(listener, vacuum=listener.origin == "bound")
        for pool in self.pools:
            pool.close(vacuum=True)
        self.close_unclaimed_zerg_listeners("is not served: start-up failed")
        if self.pidfile_written and vacuum:
            remove_pidfile(self.config.pidfile)


def _no_app_needed() -> Callable[..., Any]:
    raise RuntimeError("an instance with only zergpools runs no workers")


class Services:
    """What the master's loop serves besides its children: zerg server, pools, stats, fifo."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.config = instance.config
        self.daemonized = instance.daemonized
        self.origin_cwd = instance.origin_cwd
        self.zerg_server: Any = None
        self.stats: StatsServer | None = None
        self.fifo: MasterFifo | None = None

    def start(self, master: Master) -> list[Any]:
        config = self.config
        items: list[Any] = list(self.instance.pools)
        if config.zerg_server and self.instance.listeners:
            from uzerg.zerg import ZergServer

            listeners = self.instance.listeners
            kept = self.instance.zerg_listeners.pop(self._zerg_server_key(), None)
            try:
                self.zerg_server = ZergServer(
                    config.zerg_server,
                    [item.sock for item in listeners],
                    [_hint(item.protocol) for item in listeners],
                    config.zerg_allow_uid,
                    config.zerg_allow_gid,
                    backlog=config.listen,
                    listener=kept.sock if kept else None,
                    created_inode=kept.created_inode if kept else None,
                )
                self.zerg_server.start()
            except (AddressError, ValueError) as exc:
                self.zerg_server = None
                if kept is not None:
                    kept.sock.close()
                raise StartupError(f"zerg-server: {exc}") from None
            items.append(self.zerg_server)
        self.instance.close_unclaimed_zerg_listeners("has no socket to hand out")
        if config.stats:
            self.stats = StatsServer(
                config.stats, bool(config.stats_http), lambda: self._document(master)
            )
            items.append(self.stats)
        if config.master_fifo:
            self.fifo = MasterFifo(config.master_fifo, master.fifo_command)
            items.append(self.fifo)
        return items

    def _zerg_server_key(self) -> tuple[object, ...] | None:
        try:
            return normalise(parse_address(self.config.zerg_server))
        except AddressError:
            return None  # ZergServer.start() says what is wrong with it

    def _document(self, master: Master) -> dict[str, Any]:
        zerg = [server.stats() for server in self._zerg_servers()]
        return stats_document(scoreboard=master.scoreboard, workers=master.worker_records(),
                              listeners=self.instance.listeners, zerg=zerg)

    def _zerg_servers(self) -> list[Any]:
        servers = list(self.instance.pools)
        if self.zerg_server is not None:
            servers.insert(0, self.zerg_server)
        return servers

    def pool_sockets(self) -> list[socket.socket]:
        seen: dict[int, socket.socket] = {}
        for pool in self.instance.pools:
            for sock in pool.owned_sockets:
                seen.setdefault(sock.fileno(), sock)
        return list(seen.values())

    def zerg_listener_handovers(self) -> list[Any]:
        """The zerg server's and pools' own listeners, for the next master (reload)."""
        handovers = [server.handover() for server in self._zerg_servers()]
        return [item for item in handovers if item is not None]

    def reopen_log(self) -> None:
        path = self.config.logto or self.config.daemonize
        if path:
            open_log_file(path)
            log.info(f"log file {path} reopened", event_kind="log_reopen")

    def close_in_child(self) -> None:
        """In a new worker: drop the master's listeners (a worker serves only the sockets)."""
        for server in self._zerg_servers():
            server.close(vacuum=False)
        for kept in self.instance.zerg_listeners.values():  # the zerg server's, not adopted yet
            kept.sock.close()
        if self.stats is not None:
            self.stats.sock.close()
        if self.fifo is not None:
            os.close(self.fifo.fd)

    def before_exec(self) -> None:
        sys.stdout.flush()  # the fifo and stats are re-created by the new master

    def after_failed_exec(self) -> None:
        for sock in self.pool_sockets():
            os.set_inheritable(sock.fileno(), False)
        for handover in self.zerg_listener_handovers():
            os.set_inheritable(handover.sock.fileno(), False)

    def close(self) -> None:
        vacuum = bool(self.config.vacuum)
        for server in self._zerg_servers():
            server.close(vacuum=vacuum)
        if self.stats is not None:
            self.stats.close(vacuum)
        if self.fifo is not None:
            self.fifo.close()
        for listener in self.instance.listeners:
            close_listener(listener, vacuum=vacuum and listener.origin == "bound")
        if vacuum and self.instance.pidfile_written:
            remove_pidfile(self.config.pidfile)


def _hint(protocol: str) -> str:
    return "http" if protocol == "http11" else protocol
