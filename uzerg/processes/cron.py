"""``cron``, ``unique-cron`` and ``cron2`` (uWSGI's core/cron.c), as a master service.

Once a second the master asks every task whether the local time matches its fields (uWSGI's
uwsgi_cron_task_needs_execution: -1 means every, -N every N, weekday 7 is Sunday, and when both
day and weekday are given either may match, as crontab). A matching task runs its command in
``/bin/sh -c`` in a session of its own, at most once every 60 s. A ``unique`` task is not
started again while its last run is alive. ``harakiri`` (cron2's key, else ``cron-harakiri``)
kills a run's process group after that many seconds. A task matches at start-up already when
its fields match the current minute (so ``-1 -1 -1 -1 -1`` runs as soon as the master starts).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from uzerg.config.service_values import CronSpec
from uzerg.logs import get_logger
from uzerg.processes.services import MasterService, OnReadable
from uzerg.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from uzerg.processes.services import MasterView

log = get_logger()

MIN_INTERVAL = 60  # seconds: a task runs at most once a minute


def field_matches(value: int, current: int) -> bool:
    """One field: a fixed value, or -N for "every N" (-1: every)."""
    if value < 0:
        return current % -value == 0
    return value == current


def cron_matches(spec: CronSpec, moment: time.struct_time) -> bool:
    """Whether the task's fields match ``moment`` (local time), as uWSGI decides it."""
    month = moment.tm_mon  # 1-12, as uWSGI's tm_mon + 1
    weekday = (moment.tm_wday + 1) % 7  # struct_time: Monday is 0; cron: Sunday is 0
    week = 0 if spec.week == 7 else spec.week
    if not (field_matches(spec.minute, moment.tm_min) and field_matches(spec.hour, moment.tm_hour)
            and field_matches(spec.month, month)):
        return False
    day_ok = field_matches(spec.day, moment.tm_mday)
    week_ok = field_matches(week, weekday)
    if spec.day >= 0 and spec.week >= 0:
        return day_ok or week_ok  # both given: either one (crontab's rule)
    return day_ok and week_ok


@record
class CronTask:
    spec: CronSpec
    harakiri: int  # seconds, 0: never
    pid: int = -1
    last_job: int = 0
    started_at: int = 0
    killed: bool = False  # harakiri'd already (once per run)

    def due(self, now: int, moment: time.struct_time) -> bool:
        """Whether to start the command now (a unique task whose run is alive never is)."""
        if self.spec.unique and self.pid >= 0:
            return False
        return now - self.last_job >= MIN_INTERVAL and cron_matches(self.spec, moment)

    def overdue(self, now: int) -> bool:
        """A run alive past its harakiri (killed once)."""
        return (self.pid >= 0 and self.harakiri > 0 and not self.killed
                and now > self.started_at + self.harakiri)


class Cron(MasterService):
    """The master service of the configuration's cron tasks."""

    label = "cron"

    def __init__(self, specs: Sequence[CronSpec], cron_harakiri: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.tasks = [CronTask(spec, cron_harakiri if spec.harakiri is None else spec.harakiri)
                      for spec in specs]
        self.clock = clock
        self._last_second = 0

    def start(self, master: MasterView) -> None:
        for task in self.tasks:
            log.info(f'[uwsgi-cron] command "{task.spec.command}" registered as cron task',
                     event_kind="cron_registered")

    def watches(self) -> Mapping[int, OnReadable]:
        return {}

    def close_in_worker(self) -> None:
        pass

    def shutdown(self, vacuum: bool) -> None:
        pass  # a command still running goes on, as in uWSGI

    def tick(self) -> None:
        now = int(self.clock())
        if now == self._last_second:
            return
        self._last_second = now
        moment = time.localtime(now)
        for task in self.tasks:
            if task.due(now, moment):
                self._run(task, now)
            elif task.overdue(now):
                log.error(f'*** HARAKIRI ON CRON "{task.spec.command}" (pid: {task.pid}) ***',
                          event_kind="cron_harakiri", pid=task.pid)
                _kill_group(task.pid)
                task.killed = True

    def child_exited(self, pid: int, _status: int) -> bool:
        task = next((t for t in self.tasks if t.pid == pid), None)
        if task is None:
            return False
        seconds = max(0, int(self.clock()) - task.started_at)
        log.info(f'[uwsgi-cron] command "{task.spec.command}" running with pid {pid} exited '
                 f"after {seconds} second(s)", event_kind="cron_exited", pid=pid)
        task.pid = -1
        task.started_at = 0
        return True

    def _run(self, task: CronTask, now: int) -> None:
        task.last_job = now
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _exec_command(task.spec.command)
        task.pid = pid
        task.started_at = now
        task.killed = False
        log.info(f'[uwsgi-cron] running "{task.spec.command}" (pid {pid})',
                 event_kind="cron_run", pid=pid)


def _exec_command(command: str) -> None:
    """In the forked child: become ``/bin/sh -c command`` in a session of its own."""
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT,
                       signal.SIGCHLD, signal.SIGPIPE, signal.SIGUSR1):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.setsid()
        os.execv("/bin/sh", ["/bin/sh", "-c", command])
    finally:
        os._exit(127)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
