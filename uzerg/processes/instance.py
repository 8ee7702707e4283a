"""``run(config) -> int``: from a Config to a running instance and its exit status.

Start-up order (uWSGI's): log file / daemonize, chdir and environment, pidfile, zerg attach,
socket binding, zergpools, privilege drop, app loading (unless lazy-apps), then the master
forks the workers and runs its loop. After a reload (uzerg.processes.reexec) the sockets, pools, the
zerg server's and pools' own listeners and the old workers come from the previous master
instead of being bound, attached or spawned again.
"""

from __future__ import annotations

import _signal  # not signal: its IntEnums cost ~3M instructions to import
import gc
import os
import sys
import time
from collections.abc import Callable

from uzerg import __version__
from uzerg.addresses import describe_socket
from uzerg.config.model import Config
from uzerg.logs import configure_logging, get_logger, logs_requests
from uzerg.processes import reexec
from uzerg.processes.hook_phases import HookExit, HookFailed, hooks_configured, run_phase
from uzerg.processes.master import SIGNALS, Master
from uzerg.processes.process import (
    StartupError,
    change_directory,
    daemonize,
    drop_privileges,
    load_title_support,
    open_log_file,
    prepare_environment,
    remove_pidfile,
    set_max_fd,
    set_process_title,
    write_pidfile,
)
from uzerg.processes.scoreboard import Scoreboard
from uzerg.processes.services import MasterService
from uzerg.processes.worker import EXIT_NEED_APP, Worker, load_thread_support

# Imported before privileges are dropped: the target uid may not be able to read our own
# installation (a tox or root-owned virtualenv), only the application's files.
from uzerg.serve.apps import AppLoadError, load_application, no_application
from uzerg.serve.preload import load_http_support, serves_files
from uzerg.serve.pyoptions import PythonOptionError, prepare_interpreter
from uzerg.sockets import (
    Listener,
    build_listeners,
    check_http_to,
    close_listener,
    passed_listeners,
    unreferenced_shared_sockets,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from uzerg.config.service_values import CronSpec, DaemonSpec
    from uzerg.processes.cheaper_tick import CheaperTick
    from uzerg.processes.lifecycle import LifecycleService
    from uzerg.processes.zerg_listeners import ZergListeners
    from uzerg.systemd import ActivatedSockets

log = get_logger()

# uzerg.emperor.channel's ENV_FD and ENV_STANDBY (tests/test_emperor.py checks they match),
# spelt here: the channel loads with uzerg.emperor.link, for a vassal only
ENV_FD = "UWSGI_EMPEROR_FD"
ENV_STANDBY = "UZERG_BROODLORD_STANDBY"
# socket activation's (uzerg.systemd.take_activated_sockets): without them it is not loaded
LISTEN_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")

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
    except HookExit as exc:  # an exit: hook asked for it
        instance.abort()
        return exc.code


# What uzerg loads when first needed (start-up time) and may need after the privilege drop.
# The new uid may not be able to read the Python installation or the virtualenv (a pyenv
# under /root, tox's 0700 .tox): an import there fails, and in the master it would be fatal.
# tests/test_lazy_imports.py checks that every function-level import is here or start-up only.
LOADED_WHEN_NEEDED = (
    "json", "subprocess", "traceback", "psutil", "threading",
    "uzerg.processes.stats", "uzerg.processes.prometheus", "uzerg.processes.fifo",
    "uzerg.processes.chain", "uzerg.processes.mules", "uzerg.processes.hook_actions",
    "uzerg.processes.logmaster", "uzerg.processes.daemons", "uzerg.processes.cron",
    "uzerg.processes.cheaper", "uzerg.processes.cheaper_busyness",
    "uzerg.processes.cheaper_tick", "uzerg.zerg.server", "uzerg.emperor.link",
    "uzerg.processes.takeover", "uzerg.processes.idle", "uzerg.processes.hooks",
)


def import_before_privilege_drop() -> None:
    """Import LOADED_WHEN_NEEDED while the process can still read every file."""
    import importlib

    for name in LOADED_WHEN_NEEDED:
        importlib.import_module(name)


def configured_crons(config: Config) -> list[CronSpec]:
    return [*config.cron, *config.unique_cron, *config.cron2]


def configured_daemons(config: Config) -> list[DaemonSpec]:
    return [*config.attach_daemon, *config.attach_control_daemon, *config.attach_daemon2,
            *config.smart_attach_daemon, *config.smart_attach_daemon2]


def wants_log_master(config: Config) -> bool:
    return bool(config.log_master or config.logger or config.req_logger or config.log_route
                or config.log_encoder or config.log_maxsize)


def run_startup_phase(config: Config, name: str) -> None:
    """Run a hook phase in the master's start-up; a failure fails the start-up."""
    try:
        run_phase(config, name)
    except HookFailed as exc:
        raise StartupError(str(exc), exc.status) from None


class Instance:
    def __init__(self, config: Config, state: reexec.InheritedState | None) -> None:
        self.config = config
        self.state = state
        self.origin_cwd = state.origin_cwd if state else os.getcwd()
        self.daemonized = bool(state and state.daemonized)
        self.listeners: list[Listener] = []
        # the zerg server and zergpools (and what a reload left of them) only
        self.zerg: ZergListeners | None = None
        if config.zerg_server or config.zergpool or (
                state and (state.pool_sockets or state.zerg_listeners)):
            from uzerg.processes.zerg_listeners import ZergListeners

            self.zerg = ZergListeners(config, state)
        # readiness: what a takeover and systemd's Type=notify wait for, for them only
        self.lifecycle: LifecycleService | None = None
        if config.takeover or os.environ.get("NOTIFY_SOCKET"):
            from uzerg.processes.lifecycle import LifecycleService

            self.lifecycle = LifecycleService(config)
        self.pidfile_written = False
        self.pidfile2_written = False

    def run(self) -> int:
        config = self.config
        self._setup_logging()
        run_startup_phase(config, "asap")
        # from now on a signal waits for the master's loop (loading a big app takes seconds;
        # a SIGHUP or SIGTERM meanwhile must not kill the instance half-way)
        early_signals: list[int] = []
        for name in SIGNALS:
            _signal.signal(getattr(_signal, "SIG" + name),
                          lambda signum, _frame: early_signals.append(signum))
        # after a reload they were blocked across exec() (uzerg.processes.reexec): deliver them now
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, reexec.RELOAD_BLOCKED_SIGNALS)
        log.info(f"*** Starting uzerg {__version__} (pid: {os.getpid()}) on "
                 f"[{time.ctime()}] ***", event_kind="starting", pid=os.getpid())
        cheaper = self._cheaper()
        prepare_environment(config)
        if config.max_fd:
            set_max_fd(config.max_fd)
        log.info(f"current working directory: {os.getcwd()}", event_kind="cwd")
        if config.pidfile and not _same_file(config.pidfile, config.takeover):
            write_pidfile(config.pidfile)  # takeover writes its pidfile once it took over
            self.pidfile_written = True
        if self.zerg is not None:
            self.zerg.drop_unconfigured()
        activated = self._activated_sockets()
        self.listeners = build_listeners(
            config, self._attach(), self.state.listeners if self.state else (), activated
        )
        if self.zerg is not None:
            self.zerg.bind_pools(activated)
        self.listeners += passed_listeners(config, activated, len(self.listeners))
        self._warn_unshared_takeover()
        check_http_to(config, self.listeners)
        for text in unreferenced_shared_sockets(config):
            log.warning(f"shared-socket {text}: no socket option uses it (=N): not bound",
                        event_kind="shared_socket_unused", addr=text)
        if not self.listeners and not (self.zerg and self.zerg.pools):
            raise StartupError(
                "no socket to serve: use --socket, --http-socket, --http, --zerg or zergpool"
            )
        if config.http:
            log.info(NO_ROUTER, event_kind="no_http_router")
        load_title_support(config)
        load_thread_support(config)
        load_http_support(self.listeners)  # the HTTP side if a socket speaks it (received too)
        if logs_requests(config):  # the workers' request lines: loaded once, before the fork
            import uzerg.serve.requestlog  # noqa: F401
        if config.add_header or config.del_header:  # the workers' header rules: the same
            import uzerg.serve.headers  # noqa: F401
        if serves_files(config):  # the workers' module, loaded once before the fork
            from uzerg.serve.static import load_file_support

            load_file_support()
        run_startup_phase(config, "as-root")
        if (config.uid or config.gid) and os.getuid() == 0:
            import_before_privilege_drop()
        drop_privileges(config.uid, config.gid)
        if config.pidfile2:  # uWSGI's pidfile2: written as the dropped user
            write_pidfile(config.pidfile2)
            self.pidfile2_written = True
        run_startup_phase(config, "as-user")
        if config.logto2 and (self.state is None or config.log_reopen):
            open_log_file(config.logto2)  # uWSGI's logto2: opened as the dropped user
        services: list[MasterService] = []
        if wants_log_master(config):
            from uzerg.processes.logmaster import LogMaster

            services.append(LogMaster(config, config.logto2 or config.logto or config.daemonize,
                                      self.state.log_pipes if self.state else None))
        log.info(f"your server socket listen backlog is limited to {config.listen} connections",
                 event_kind="listen_backlog", backlog=config.listen)
        log.info(f"your mercy for graceful operations on workers is "
                 f"{config.worker_reload_mercy} seconds", event_kind="mercy")
        set_process_title(config, "uzerg master")
        # uzerg's own start-up is done: the app (and everything after, the master's loop, the
        # workers it forks) runs with the cyclic collector on (uzerg.cli.main turned it off).
        # What is loaded so far lives as long as the process: frozen first, as before every
        # fork, or the collector's first pass would walk all of it (~12k objects, ~1 ms) on
        # the way to the first answer (issue 13)
        gc.freeze()
        gc.enable()
        try:
            prepare_interpreter(config)  # pyargv, pymodule-alias, shared-import
        except PythonOptionError as exc:
            raise StartupError(str(exc)) from None
        app_factory = self._app_factory() if self.listeners else _no_app_needed
        threads = config.threads
        processes = config.processes
        scoreboard = Scoreboard(max(processes * 4, processes + 16), threads)
        broodlord_standby = os.environ.pop(ENV_STANDBY, None) == "1"
        if (broodlord_standby or config.start_paused) and self.state is None:
            # a warm standby (start-paused, or a Broodlord's): app loaded, workers forked,
            # paused until resumed (SIGTSTP, as --pause/--resume, or the master fifo's p)
            scoreboard.header.paused = 1
            log.info("warm standby: workers start paused until the Emperor resumes them"
                     if broodlord_standby else "warm standby: workers start paused until "
                     "resumed (SIGTSTP, --resume PIDFILE or the master fifo's p)",
                     event_kind="standby")
        if self.zerg is not None:
            services.append(self.zerg)
        if self.lifecycle is not None:
            services.append(self.lifecycle)
        zerg_stats = self.zerg.stats if self.zerg is not None else _no_zerg_servers
        mules = None
        if config.mule:  # loaded when configured (start-up time)
            from uzerg.processes.mules import Mules

            mules = Mules(config)
        if config.stats or config.stats_prometheus:  # the services load when configured
            from uzerg.processes.stats import StatsService
        if config.stats:
            services.append(StatsService(config.stats, bool(config.stats_http), zerg_stats,
                                         mules=mules.stats if mules else None))
        if config.stats_prometheus:
            services.append(StatsService(config.stats_prometheus, True, zerg_stats,
                                         prometheus=True))
        if config.master_fifo:
            from uzerg.processes.fifo import FifoService

            services.append(FifoService(config.master_fifo))
        if hooks_configured(config):  # loaded when configured, before the fork
            from uzerg.processes.hooks import HooksService

            services.append(HooksService(config))
        if configured_daemons(config):
            from uzerg.processes.daemons import Daemons

            services.append(Daemons(configured_daemons(config), config.daemons_honour_stdin))
        if mules is not None:
            services.append(mules)
        if config.touch_chain_reload:
            from uzerg.processes.chain import ChainReload

            services.append(ChainReload(config.touch_chain_reload))
        if configured_crons(config):
            from uzerg.processes.cron import Cron

            services.append(Cron(configured_crons(config), config.cron_harakiri))
        link = None
        if ENV_FD in os.environ:  # a vassal: its link to the Emperor (not loaded otherwise)
            from uzerg.emperor.link import EmperorLink

            link = EmperorLink.from_environ(os.environ, config)
        if link is not None:
            services.append(link)
        if config.idle or config.cheap:  # loaded when configured: it only watches for them
            from uzerg.processes.idle import IdleService

            services.append(IdleService(config, link))
        context = reexec.Context(self.origin_cwd, self.daemonized, self.state is not None)

        master_pid = os.getpid()  # read before any fork: see Worker's master_pid

        def run_worker(worker_id: int, first_spawn: bool) -> int:
            return Worker(worker_id, self.listeners, config, scoreboard, app_factory,
                          master_pid=master_pid, first_spawn=first_spawn).run()

        master = Master(config, self.listeners, scoreboard, run_worker, services,
                        self.state.previous_workers if self.state else [], context,
                        pending_signals=early_signals,
                        cheaper=cheaper if self.listeners else None)
        status = master.run()
        self._close(vacuum=bool(config.vacuum))
        log.info("goodbye to uWSGI.", event_kind="goodbye")
        return status

    # -- steps ---------------------------------------------------------------------------------

    def _cheaper(self) -> CheaperTick | None:
        """Cheaper mode's settings, checked before anything is bound (uWSGI's errors)."""
        if not self.config.cheaper:  # off (settings_from_config's None): not loaded
            return None
        from uzerg.processes.cheaper import CheaperConfigError, settings_from_config
        from uzerg.processes.cheaper_tick import CheaperTick

        try:
            settings, warnings = settings_from_config(self.config)
        except CheaperConfigError as exc:
            raise StartupError(str(exc)) from None
        for warning in warnings:
            log.warning(warning, event_kind="cheaper_config")
        if settings is None:
            return None
        tick = CheaperTick(settings)
        tick.announce(list_algorithms=self.config.cheaper_algo_list)
        return tick

    def _setup_logging(self) -> None:
        config = self.config
        if self.state is None and config.daemonize:
            log.info("*** daemonizing uWSGI ***", event_kind="daemonize")
            daemonize(config.daemonize)
            self.daemonized = True
        elif config.logto and (self.state is None or config.log_reopen):
            open_log_file(config.logto)  # log-reopen: a reload reopens it by name
        elif config.daemonize and config.log_reopen:
            open_log_file(config.daemonize)
        configure_logging(json=config.log_json, stream=sys.stderr, date_format=config.log_date)

    def _attach(self) -> list[Any]:
        zergs = self.config.zerg
        if not zergs or self.state is not None:  # after a reload: the inherited ones are kept
            return []
        from uzerg.zerg import HandshakeError, attach_to_zerg_servers

        try:
            return attach_to_zerg_servers(
                zergs, self.config.zerg_timeout, fallback=self.config.zerg_fallback,
                wait=self.config.zerg_wait,
            )
        except HandshakeError as exc:
            # uWSGI's line, then why (uWSGI says nothing more; an operator needs the reason)
            raise StartupError(f"{exc} ({exc.detail})" if exc.detail else str(exc)) from None

    def _activated_sockets(self) -> ActivatedSockets | None:
        """Sockets passed by systemd (LISTEN_FDS); after a reload they are inherited like
        the others (the variables were removed at the first start). None without the
        variables: uzerg.systemd is not loaded then."""
        if not any(name in os.environ for name in LISTEN_VARIABLES):
            return None
        if self.state is not None:
            for name in LISTEN_VARIABLES:
                os.environ.pop(name, None)
            return None
        from uzerg.systemd import ActivationError, take_activated_sockets

        try:
            return take_activated_sockets(os.environ)
        except ActivationError as exc:
            raise StartupError(f"socket activation: {exc}") from None

    def _warn_unshared_takeover(self) -> None:
        """A takeover pauses the old instance; connections in a queue only it serves would
        wait for a resume. Say so when this instance binds its own sockets."""
        if not self.config.takeover:
            return
        for listener in self.listeners:
            if listener.origin == "bound":
                log.warning(
                    f"takeover: {describe_socket(listener.sock)[1]} is bound by this instance, "
                    "not shared with the one it takes over (with reuse-port each has its own "
                    "queue, and the paused one's would wait): run the versions as zergs of a "
                    "zergpool", event_kind="takeover_unshared")

    def _app_factory(self) -> Callable[[], Callable[..., Any]]:
        config = self.config
        need_app = config.need_app

        def load() -> Callable[..., Any]:
            run_phase(config, "pre-app")  # HookFailed: the caller stops the instance
            try:
                app = load_application(config)
                if config.chdir2:
                    change_directory(config.chdir2)
            except AppLoadError as exc:
                log.error(str(exc), event_kind="app_load_error")
                if need_app:
                    raise
                log.error("*** no app loaded. going in full dynamic mode ***",
                          event_kind="no_app")
                app = no_application
            run_phase(config, "post-app")
            return app

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
        except HookFailed as exc:
            raise StartupError(str(exc), exc.status) from None
        if app is not no_application:  # uWSGI: only the "full dynamic mode" line then
            log.info("WSGI app 0 (mountpoint='') ready", event_kind="app_ready")
        return lambda: app

    def abort(self) -> None:
        """Start-up failed: undo what this process created."""
        for listener in self.listeners:
            close_listener(listener, vacuum=listener.origin == "bound")
        if self.zerg is not None:
            self.zerg.abort()
        if self.pidfile_written and self.config.vacuum:
            remove_pidfile(self.config.pidfile)
        if self.pidfile2_written and self.config.vacuum:
            remove_pidfile(self.config.pidfile2 or "")

    def _close(self, vacuum: bool) -> None:
        """At exit, after the master's services: the sockets and the pidfile."""
        for listener in self.listeners:
            close_listener(listener, vacuum=vacuum and listener.origin == "bound")
        took_over = bool(self.lifecycle and self.lifecycle.took_over) and _same_file(
            self.config.pidfile or "", self.config.takeover)
        if vacuum and (self.pidfile_written or took_over):
            remove_pidfile(self.config.pidfile or "")  # only while it still names us
        if vacuum and self.pidfile2_written:
            remove_pidfile(self.config.pidfile2 or "")


def _same_file(path: str, other: str | None) -> bool:
    return bool(path) and other is not None and os.path.abspath(path) == os.path.abspath(other)


def _no_zerg_servers() -> list[dict[str, object]]:
    return []  # the stats of an instance without zerg-server and zergpool


def _no_app_needed() -> Callable[..., Any]:
    raise RuntimeError("an instance with only zergpools runs no workers")
