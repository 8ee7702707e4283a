"""The master (gunicorn's arbiter, small): one event loop over signals, children and the
services (zerg server and pools, stats server, master fifo: uzerg.processes.services).

Signal handlers only enqueue; the loop dispatches ``handle_<signal>`` by name. Reload (SIGHUP)
re-executes the master with the same pid, handing over the listening sockets and the old
workers (processes/reexec.py): the new master loads fresh code, spawns new workers, then asks
the old ones to finish their request and exit (no connection waits on a closed queue)."""

from __future__ import annotations

import _signal  # not signal: its IntEnums cost ~3M instructions to import
import contextlib
import gc
import os
import sys
import time
from collections.abc import Callable, Sequence

from uzerg.config.model import Config
from uzerg.logs import get_logger
from uzerg.processes import reexec
from uzerg.processes.checks import TouchReload, harakiri_victims, lifetime_reached, out_of_mercy
from uzerg.processes.guard import GUARD
from uzerg.processes.process import StartupError, open_log_file
from uzerg.processes.scoreboard import Scoreboard
from uzerg.processes.services import MasterService, Watches
from uzerg.processes.wakeup import install_signal_wakeup, reap_children, signal_name
from uzerg.processes.worker import (
    EXIT_HOOK_FAILED,
    EXIT_NEED_APP,
    EXIT_RECYCLE,
    FORK_BLOCKED_SIGNALS,
)
from uzerg.record import record as _record
from uzerg.sockets import Listener

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from uzerg.processes.cheaper_tick import CheaperTick

log = get_logger()

SIGNALS = ("HUP", "TERM", "INT", "QUIT", "TSTP", "USR1", "TTIN", "TTOU", "CHLD")
TICK = 1.0  # harakiri, mercy, touch-reload and respawn checks
FAST_STOP_MERCY = 5.0
RESPAWN_INTERVAL = 1.0  # a worker that dies at start-up is respawned at most once a second


@_record
class WorkerRecord:
    worker_id: int
    pid: int
    spawned_at: float  # wall clock (stats)
    spawned_mono: float
    respawn_count: int = 0
    harakiri_count: int = 0
    kill_at: float = 0.0  # monotonic deadline once asked to stop (0: not stopping)
    stop_started: float = 0.0
    cheaped: bool = False  # stopped by the cheaper subsystem
    lifetime_reached: bool = False  # max-worker-lifetime: asked to finish and exit


class Master:
    def __init__(
        self,
        config: Config,
        listeners: list[Listener],
        scoreboard: Scoreboard,
        run_worker: Callable[[int, bool], int],
        services: Sequence[MasterService],
        previous_workers: list[tuple[int, int]],
        reexec_context: reexec.Context,
        pending_signals: list[int] | None = None,
        cheaper: CheaperTick | None = None,
    ) -> None:
        """``run_worker(worker_id, first_spawn) -> exit status`` runs in each forked worker;
        ``services``: the zerg server and pools, stats, fifo (the loop drives them through their
        interface); ``cheaper``: adaptive workers between cheaper and processes, a service too."""
        self.config = config
        self.listeners = listeners
        self.scoreboard = scoreboard
        self.run_worker = run_worker
        self.services = list(services) + ([cheaper] if cheaper is not None else [])
        self.cheaper = cheaper
        self.cheaped: set[int] = set()  # worker ids the cheaper subsystem stopped
        self.context = reexec_context
        self.mercy = float(config.worker_reload_mercy)
        self.harakiri = float(config.harakiri)
        self.desired = config.processes if listeners else 0
        self.workers: dict[int, WorkerRecord] = {}
        self.retiring: dict[int, WorkerRecord] = {}  # pid → a process asked to stop
        self.history: dict[int, WorkerRecord] = {}  # worker id → last record (counters)
        self.respawn_due: dict[int, float] = {}
        self.previous_workers = previous_workers
        self.signals: list[int] = pending_signals if pending_signals is not None else []
        self.stopping = False
        self.graceful_stop = True
        self.exit_status = 0
        self.watches = Watches()  # the loop's epoll
        self.touch = TouchReload(config.touch_reload)
        self.reload_requested = False
        self.cheap = False  # idle/cheap: no workers until a connection arrives

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        self._wakeup = install_signal_wakeup(self.watches, SIGNALS, self._enqueue)
        log.info(f"spawned uWSGI master process (pid: {os.getpid()})"
                 if not self.context.reloaded else
                 f"gracefully (RE)spawned uWSGI master process (pid: {os.getpid()})",
                 event_kind="master_spawned", pid=os.getpid())
        self._dispatch_signals()  # those that arrived while the app was loading
        first = self.cheaper.settings.initial if self.cheaper else self.desired
        self.cheaped.update(range(first + 1, self.desired + 1))  # cheaper mode starts small
        if self.config.cheap and not self.context.reloaded and not self.stopping:
            self.enter_cheap()
        for wid in range(1, first + 1 if not (self.stopping or self.cheap) else 1):
            self.spawn(wid)
        self._retire_previous_generation()
        self._start_services()
        while True:
            self.watches.sync(self.services)
            self.watches.dispatch(self._timeout())  # each handler through the guard
            self._dispatch_signals()
            self._reap()
            self._tick()
            if self.reload_requested:
                self._reexec()
            if self.stopping and not self.workers and not self.retiring:
                break
        for service in self.services:
            GUARD.call(service.label, service.shutdown, bool(self.config.vacuum))
        return self.exit_status

    def _start_services(self) -> None:
        try:
            for service in self.services:
                service.start(self)
        except StartupError as exc:
            log.error(str(exc), event_kind="startup_error")
            self.exit_status = exc.status
            self.shutdown(graceful=False)

    def _enqueue(self, signum: int, _frame: Any) -> None:
        self.signals.append(signum)

    def _dispatch_signals(self) -> None:
        while self.signals:
            name = signal_name(self.signals.pop(0))[3:].lower()
            GUARD.call(f"SIG{name.upper()}", getattr(self, "handle_" + name))

    def _timeout(self) -> float:
        longest = TICK
        if self.respawn_due:
            longest = max(0.0, min(TICK, min(self.respawn_due.values()) - time.monotonic()))
        return self.watches.timeout(self.services, longest)

    # -- signals -------------------------------------------------------------------------------

    def handle_hup(self) -> None:
        self.reload()

    def handle_term(self) -> None:
        self.shutdown(graceful=True)

    def handle_int(self) -> None:
        self.shutdown(graceful=False)

    handle_quit = handle_int

    def handle_tstp(self) -> None:
        self.toggle_pause()

    def handle_usr1(self) -> None:
        self.log_stats()

    def handle_ttin(self) -> None:
        self.add_worker()

    def handle_ttou(self) -> None:
        self.remove_worker()

    def handle_chld(self) -> None:
        pass  # the loop reaps after every wake-up

    def fifo_command(self, char: str) -> None:
        actions: dict[str, Callable[[], None]] = {
            "r": self.reload, "R": self.reload,
            "w": self.reload_workers, "W": self.reload_workers, "c": self.reload_workers,
            "q": lambda: self.shutdown(graceful=True), "Q": lambda: self.shutdown(graceful=False),
            "p": self.toggle_pause, "s": self.log_stats,
            "+": self.add_worker, "-": self.remove_worker, "l": self.reopen_log,
        }
        action = actions.get(char)
        if action is None:
            log.warning(f"[uwsgi-fifo] unknown command: {char!r}", event_kind="fifo_unknown")
        else:
            action()

    # -- actions -------------------------------------------------------------------------------

    def reload(self) -> None:
        if not self.stopping:
            self.reload_requested = True

    def _reexec(self) -> None:
        self.reload_requested = False
        pids = [(r.worker_id, r.pid) for r in [*self.workers.values(), *self.retiring.values()]]
        reexec.restart_master(self.context, self.listeners, pids, self.services, self.signals)

    def reload_workers(self) -> None:
        """Fresh workers for the old ones (fresh code with lazy-apps), without re-exec."""
        if self.stopping:
            return
        log.info("...gracefully killing workers...", event_kind="reload_workers")
        for wid in list(self.workers):
            self._retire(self.workers.pop(wid))
            self.spawn(wid)

    def shutdown(self, graceful: bool) -> None:
        if self.stopping and graceful:
            return
        self.stopping, self.graceful_stop = True, graceful
        self.reload_requested = False  # a stop wins over a reload asked for before it
        self.respawn_due.clear()
        log.info("...gracefully killing workers..." if graceful else
                 "SIGINT/SIGTERM received...killing workers...", event_kind="shutdown",
                 graceful=graceful)
        for record in list(self.workers.values()):
            self._retire(self.workers.pop(record.worker_id), graceful)
        if not graceful:
            for record in self.retiring.values():
                self._signal(record.pid, _signal.SIGINT)
                record.kill_at = min(record.kill_at, time.monotonic() + FAST_STOP_MERCY)

    def toggle_pause(self) -> None:
        header = self.scoreboard.header
        header.paused = 0 if header.paused else 1
        if header.paused:
            log.info("*** PAUSE (press start to resume, if you do not have a joypad send "
                     "SIGTSTP) ***", event_kind="pause")
        else:
            log.info("*** (SIGTSTP received) resuming workers ***", event_kind="resume")
        for record in self.workers.values():
            self._signal(record.pid, _signal.SIGUSR2)

    def add_worker(self) -> None:
        if self.stopping or self.cheap or not self.listeners:
            return
        if self.cheaper is not None:  # within cheaper..processes, at the next cheaper cycle
            self.cheaper.request(+1)
            return
        if self.desired >= self.scoreboard.capacity:
            log.warning(f"cannot add a worker: the limit is {self.scoreboard.capacity}",
                        event_kind="worker_limit")
            return
        self.desired += 1
        log.info(f"*** one worker more: {self.desired} in all ***", event_kind="ttin",
                 workers=self.desired)
        self.spawn(self.desired)

    def remove_worker(self) -> None:
        if self.cheaper is not None:
            self.cheaper.request(-1)
            return
        if self.stopping or self.desired <= 1:
            return
        wid = self.desired
        self.desired -= 1
        log.info(f"*** one worker fewer: {self.desired} in all ***", event_kind="ttou",
                 workers=self.desired)
        self.respawn_due.pop(wid, None)
        record = self.workers.pop(wid, None)
        if record is not None:
            self._retire(record)

    @property
    def wanted(self) -> int:
        """Workers wanted now: ``desired`` less the slots cheaper mode keeps empty."""
        return self.desired - len(self.cheaped)

    def cheap_worker(self, wid: int) -> None:
        """The cheaper subsystem stops a worker: it finishes its request, the slot stays empty."""
        record = self.workers.pop(wid)
        record.cheaped = True
        self.cheaped.add(wid)
        self._retire(record)

    def decheap_worker(self, wid: int) -> None:
        self.cheaped.discard(wid)
        self.spawn(wid, respawn=wid in self.history)

    def cheap_records(self) -> list[WorkerRecord]:
        """The cheaped slots' last records (stats: ``"status": "cheap"``, ``pid`` 0)."""
        return [self.history.get(wid) or WorkerRecord(wid, 0, 0.0, 0.0)
                for wid in sorted(self.cheaped)]

    def reopen_log(self) -> None:
        path = self.config.logto2 or self.config.logto or self.config.daemonize
        try:
            if path:
                open_log_file(path)
        except StartupError as exc:  # moved away with its directory: keep writing the old one
            log.error(f"{exc}: still logging to the file opened before", event_kind="log_reopen")
            path = ""
        for service in self.services:
            service.reopen_logs()
        if path:
            log.info(f"log file {path} reopened", event_kind="log_reopen")

    def enter_cheap(self) -> None:
        """Stop the workers; the next connection on a socket brings them back (idle, cheap:
        the idle service watches the sockets meanwhile)."""
        if self.cheap or self.stopping or not self.listeners:
            return
        self.cheap = True
        self.cheaped.update(range(1, self.desired + 1))  # as uWSGI: every slot shows "cheap"
        for record in list(self.workers.values()):
            self._retire(self.workers.pop(record.worker_id), graceful=False)
        self.respawn_due.clear()
        log.info("cheap mode enabled: waiting for socket connection...", event_kind="cheap")

    def leave_cheap(self) -> None:
        if not self.cheap:
            return
        self.cheap = False
        log.info("a connection arrived: leaving cheap mode", event_kind="cheap_end")
        # uWSGI (master_events.c) respawns slots 1..N: N = cheaper (the minimum, not
        # cheaper-initial) in cheaper mode, else all; the cheaper tick adds more when busy.
        needed = self.cheaper.settings.minimum if self.cheaper is not None else self.desired
        if not self.stopping:
            for wid in range(1, needed + 1):
                self.cheaped.discard(wid)
                self.spawn(wid)

    def log_stats(self) -> None:
        from uzerg.processes.stats import stats_log_text  # SIGUSR1, the fifo: loaded then

        text = stats_log_text(self.scoreboard, [r.worker_id for r in self.worker_records()])
        log.info(text, event_kind="stats_log", requests=self.scoreboard.total_requests())

    # -- children ------------------------------------------------------------------------------

    def worker_records(self) -> list[WorkerRecord]:
        return [self.workers[wid] for wid in sorted(self.workers)]

    def spawn(self, wid: int, *, respawn: bool = False) -> None:
        previous = self.history.get(wid)
        pid = self._fork(wid, first_spawn=previous is None)
        record = WorkerRecord(wid, pid, time.time(), time.monotonic())
        if previous is not None:
            record.respawn_count = previous.respawn_count + 1
            record.harakiri_count = previous.harakiri_count
        self.workers[wid] = self.history[wid] = record
        if respawn:
            log.info(f"Respawned uWSGI worker {wid} (new pid: {pid})", event_kind="respawned",
                     worker=wid, pid=pid)
        else:
            cores = self.config.threads
            log.info(f"spawned uWSGI worker {wid} (pid: {pid}, cores: {cores})",
                     event_kind="spawned", worker=wid, pid=pid)

    def _fork(self, wid: int, first_spawn: bool) -> int:
        self.scoreboard.reset_for_spawn(wid, 0)
        sys.stdout.flush()
        sys.stderr.flush()
        mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, FORK_BLOCKED_SIGNALS)
        # the app and uzerg loaded so far move to the collector's permanent generation: a
        # worker's collections then never write to (and copy on write) the pages they share
        gc.freeze()
        pid = os.fork()
        if pid:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
            self.scoreboard.worker(wid).pid = pid
            return pid
        status = 1
        try:
            self.close_in_child()
            status = self.run_worker(wid, first_spawn)
        except BaseException:  # noqa: B036 - nothing may unwind into the master's code
            import traceback  # a crashed worker only: not at start-up

            for line in traceback.format_exc().rstrip("\n").split("\n"):
                log.error(line, event_kind="worker_crash", worker=wid)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)

    def close_in_child(self) -> None:
        _signal.set_wakeup_fd(-1)
        self.watches.close()
        for fd in self._wakeup:
            os.close(fd)
        for service in self.services:
            service.close_in_worker()

    def _retire(self, record: WorkerRecord, graceful: bool = True) -> None:
        """Ask a worker to finish its request and exit; SIGKILL after the mercy period."""
        now = time.monotonic()
        record.stop_started = now
        record.kill_at = now + (self.mercy if graceful else FAST_STOP_MERCY)
        self.retiring[record.pid] = record
        if graceful and not record.cheaped:  # the cheaper tick said why already
            log.info(f"Gracefully killing worker {record.worker_id} (pid: {record.pid})...",
                     event_kind="worker_stop", worker=record.worker_id, pid=record.pid)
        self._signal(record.pid, _signal.SIGTERM if graceful else _signal.SIGINT)

    def _retire_previous_generation(self) -> None:
        now = time.monotonic()
        for wid, pid in self.previous_workers:
            record = WorkerRecord(wid, pid, time.time(), now)
            self._retire(record)
        self.previous_workers = []

    def _reap(self) -> None:
        for pid, status in reap_children():
            self._child_exited(pid, status)

    def _child_exited(self, pid: int, status: int) -> None:
        record = self.retiring.pop(pid, None)
        if record is not None and record.cheaped:
            log.info(f"worker {record.worker_id} killed successfully (pid: {pid})",
                     event_kind="worker_stopped", worker=record.worker_id, pid=pid)
            log.info(f"uWSGI worker {record.worker_id} cheaped.", event_kind="cheaped",
                     worker=record.worker_id, pid=pid)
            return
        if record is not None:
            seconds = int(time.monotonic() - record.stop_started)
            log.info(f"worker {record.worker_id} buried after {seconds} seconds",
                     event_kind="worker_buried", worker=record.worker_id, pid=pid)
            return
        record = next((r for r in self.workers.values() if r.pid == pid), None)
        if record is None:
            # a service's child (a daemon, a cron command), else not ours (a grandchild
            # adopted by us, a process the app forked)
            any(GUARD.call(s.label, s.child_exited, pid, status) for s in self.services)
            return
        wid = record.worker_id
        del self.workers[wid]
        code = os.waitstatus_to_exitcode(status)
        if code == EXIT_HOOK_FAILED:
            self.exit_status = 1
            log.error("a worker's fatal hook failed, destroying the instance...",
                      event_kind="hook_failed")
            self.shutdown(graceful=False)
            return
        if code == EXIT_NEED_APP:
            self.exit_status = EXIT_NEED_APP
            log.error("need-app requested, destroying the instance...", event_kind="need_app")
            self.shutdown(graceful=False)
            return
        if code == EXIT_RECYCLE:
            log.info(f"worker {wid} killed successfully (pid: {pid})", event_kind="recycled",
                     worker=wid, pid=pid)
            due = time.monotonic()
        else:
            if code < 0:
                text = f"DAMN ! worker {wid} (pid: {pid}) died, killed by signal {-code} :( "
            else:
                text = f"DAMN ! worker {wid} (pid: {pid}) died :( "
            log.error(text + "trying respawn ...", event_kind="worker_died", worker=wid,
                      pid=pid, exit=code)
            due = record.spawned_mono + RESPAWN_INTERVAL
        if wid <= self.desired and wid not in self.cheaped and not self.stopping:
            self.respawn_due[wid] = due

    def _tick(self) -> None:
        now = time.monotonic()
        for wid, due in list(self.respawn_due.items()):
            if due <= now:
                del self.respawn_due[wid]
                if (wid <= self.desired and wid not in self.workers and wid not in self.cheaped
                        and not self.stopping):
                    self.spawn(wid, respawn=True)
        for record in out_of_mercy(self.retiring.values(), now):
            self._signal(record.pid, _signal.SIGKILL)
        if self.harakiri:
            for record in harakiri_victims(self.scoreboard, self.workers.values(), self.harakiri,
                                           time.time()):
                self._signal(record.pid, _signal.SIGKILL)
        if not self.stopping and self.touch.touched():
            self.reload()
        if not self.stopping and self.config.max_worker_lifetime:
            config = self.config
            for record in lifetime_reached(self.workers.values(), config.max_worker_lifetime,
                                           config.max_worker_lifetime_delta, now):
                self._signal(record.pid, _signal.SIGHUP)  # finish the request, exit, respawn
        for service in self.services:
            GUARD.call(service.label, service.tick)

    @staticmethod
    def _signal(pid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

