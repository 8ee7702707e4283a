"""Mules (``mule = script.py``, uWSGI's core/mule.c and master.c), as a master service.

Each ``mule`` value is one mule, numbered from 1 in the order given. The master forks them
when its loop starts, after the first workers (with or without lazy-apps: a mule has what
the master loaded, the app too unless lazy-apps), as the same uid/gid and with the same
Python setup (chdir, pythonpath, virtualenv) as workers; the mule runs its script
(uzerg.processes.mule).

- A mule that dies on its own is respawned, as uWSGI, with uWSGI's line ``OOOPS mule N (pid:
  P) crippled...trying respawn...``. uWSGI respawns at once, so a script that fails at once
  spins; here, as workers, a mule is respawned at most once a second, and one that keeps
  dying within QUICK_DEATH seconds of its spawn waits 1, 2, 3... (at most MAX_THROTTLE) more
  seconds each time.
- Stop and reload (uWSGI's curse): graceful stop and reload send SIGHUP, a fast stop SIGINT;
  after ``mule-reload-mercy`` seconds (a fast stop: at most the workers' fast-stop mercy) a
  mule still alive is SIGKILLed (``...NO MERCY !!!``). A reload waits for the mules before
  the master re-executes (the new master starts fresh ones), as uWSGI waits for them.
- ``touch-mules-reload = FILE``: touching it restarts every mule (SIGHUP, then respawn).
- ``stats``: a ``mules`` array (id, pid, script, respawn_count, last_spawn); an addition of
  uzerg's, uWSGI's stats document has none.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping

from uzerg.config.model import Config
from uzerg.logs import get_logger
from uzerg.processes.checks import TouchReload
from uzerg.processes.mule import END_CODE, run_mule
from uzerg.processes.services import Kept, MasterService, OnReadable
from uzerg.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from uzerg.processes.services import MasterView

log = get_logger()

RESPAWN_INTERVAL = 1.0  # seconds: at most one spawn a second per mule (as workers)
QUICK_DEATH = 3.0  # a mule dying this soon after its spawn counts as failing
MAX_THROTTLE = 30  # seconds: the longest wait before respawning a failing mule
FAST_STOP_MERCY = 5.0  # the master's for workers on a fast stop
_FORK_BLOCKED = frozenset({signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT,
                           signal.SIGUSR1, signal.SIGUSR2, signal.SIGTSTP})


@record
class Mule:
    mule_id: int
    target: str
    pid: int = 0
    spawned_at: float = 0.0  # wall clock (stats)
    spawned_mono: float = 0.0
    respawn_count: int = 0
    quick_deaths: int = 0
    due: float = 0.0  # monotonic time of a pending respawn (0: none)
    cursed_at: float = 0.0  # asked to stop (uWSGI's cursed_at), monotonic; 0: not
    kill_at: float = 0.0


class Mules(MasterService):
    label = "mules"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.mules = [Mule(i, target) for i, target in enumerate(config.mule, start=1)]
        self.mercy = float(config.mule_reload_mercy)
        self.master: MasterView | None = None
        self.master_pid = os.getpid()
        self.stopping = False
        self.graceful = True
        self.touch = TouchReload(config.touch_mules_reload)
        self._last_touch_check = 0

    def start(self, master: MasterView) -> None:
        self.master = master
        if master.stopping:
            return
        for mule in self.mules:
            self._spawn(mule)

    # -- the master's loop ---------------------------------------------------------------------

    def watches(self) -> Mapping[int, OnReadable]:
        return {}

    def wake_at(self) -> float | None:
        times = [m.due for m in self.mules if m.due] + [m.kill_at for m in self.mules
                                                        if m.pid and m.kill_at]
        return min(times) if times else None

    def tick(self) -> None:
        master = self.master
        if master is None:
            return
        now = time.monotonic()
        if master.stopping:
            if not self.stopping or (self.graceful and not master.graceful_stop):
                self.stop_all(master.graceful_stop)
        else:
            for mule in self.mules:
                if mule.due and mule.due <= now and not mule.pid:
                    mule.due = 0.0
                    self._spawn(mule)
            self._check_touch()
        self.tick_mercy()

    def handover(self) -> Kept:
        """A reload: stop the mules and wait for them (the new master starts fresh ones)."""
        self.stop_all(graceful=True)
        self._wait_all()
        self.stopping = False  # the exec may fail: then tick() respawns them
        now = time.monotonic()
        for mule in self.mules:
            mule.due = now
        return Kept()

    def close_in_worker(self) -> None:
        pass

    def shutdown(self, vacuum: bool) -> None:
        if any(m.pid for m in self.mules):
            if not self.stopping:
                self.stop_all(graceful=True)
            self._wait_all()

    def child_exited(self, pid: int, status: int) -> bool:
        mule = next((m for m in self.mules if m.pid == pid), None)
        if mule is None:
            return False
        code = os.waitstatus_to_exitcode(status)
        mule.pid = 0
        mule.kill_at = 0.0
        cursed = mule.cursed_at
        mule.cursed_at = 0.0
        if self.stopping:
            log.info(f"mule {mule.mule_id} (pid: {pid}) annihilated", event_kind="mule_stopped",
                     mule=mule.mule_id, pid=pid, exit=code)
            return True
        now = time.monotonic()
        if cursed:  # touch-mules-reload: respawned at once
            mule.quick_deaths = 0
            mule.due = max(now, mule.spawned_mono + RESPAWN_INTERVAL)
            return True
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        log.error(f"OOOPS mule {mule.mule_id} (pid: {pid}) crippled...trying respawn... "
                  f"({how})", event_kind="mule_died", mule=mule.mule_id, pid=pid, exit=code)
        if now - mule.spawned_mono < QUICK_DEATH:
            mule.quick_deaths += 1
        else:
            mule.quick_deaths = 0
        throttle = min(mule.quick_deaths, MAX_THROTTLE) if mule.quick_deaths > 1 else 0
        if throttle:
            log.warning(f"mule {mule.mule_id} died {mule.quick_deaths} times in a row within "
                        f"{QUICK_DEATH:g} seconds of its spawn: throttling its respawn for "
                        f"{throttle} seconds", event_kind="mule_throttle", mule=mule.mule_id,
                        seconds=throttle)
        mule.due = max(now + throttle, mule.spawned_mono + RESPAWN_INTERVAL)
        return True

    # -- stats ---------------------------------------------------------------------------------

    def stats(self) -> list[dict[str, Any]]:
        return [{"id": m.mule_id, "pid": m.pid, "script": m.target,
                 "respawn_count": m.respawn_count, "last_spawn": int(m.spawned_at)}
                for m in self.mules]

    # -- processes -----------------------------------------------------------------------------

    def stop_all(self, graceful: bool) -> None:
        """uWSGI's curse: SIGHUP (graceful stop, reload) or SIGINT (fast stop), SIGKILL after
        the mercy period."""
        self.stopping = True
        self.graceful = graceful
        now = time.monotonic()
        mercy = self.mercy if graceful else min(self.mercy, FAST_STOP_MERCY)
        for mule in self.mules:
            mule.due = 0.0
            if mule.pid:
                mule.cursed_at = mule.cursed_at or now
                mule.kill_at = min(mule.kill_at or now + mercy, now + mercy)
                _kill(mule.pid, signal.SIGHUP if graceful else signal.SIGINT)

    def _wait_all(self) -> None:
        """Block until every stopping mule is reaped (SIGKILL at its mercy deadline): the
        master's loop is over (shutdown) or about to re-execute (reload)."""
        while any(m.pid for m in self.mules):
            for mule in self.mules:
                if not mule.pid:
                    continue
                try:
                    done, status = os.waitpid(mule.pid, os.WNOHANG)
                except ChildProcessError:
                    done, status = mule.pid, 0
                if done == mule.pid:
                    self.child_exited(mule.pid, status)
            self.tick_mercy()
            if any(m.pid for m in self.mules):
                time.sleep(0.02)  # a bounded wait for our own children, as daemons.py

    def tick_mercy(self) -> None:
        now = time.monotonic()
        for mule in self.mules:
            if mule.pid and mule.kill_at and now >= mule.kill_at:
                log.warning(f"mule {mule.mule_id} (pid: {mule.pid}) is taking too much time to "
                            "die...NO MERCY !!!", event_kind="mule_no_mercy", pid=mule.pid)
                mule.kill_at = now + 2.0  # SIGKILL cannot be caught: reaped at once
                _kill(mule.pid, signal.SIGKILL)

    def _check_touch(self) -> None:
        second = int(time.time())
        if not self.touch.mtimes or second == self._last_touch_check:
            return
        self._last_touch_check = second
        changed = self.touch.changed()
        if not changed:
            return
        log.info(f"*** {changed[0]} has been touched... mules reload !!! ***",
                 event_kind="mules_reload", path=changed[0])
        now = time.monotonic()
        for mule in self.mules:
            if mule.pid and not mule.cursed_at:
                mule.cursed_at = now
                mule.kill_at = now + self.mercy
                _kill(mule.pid, signal.SIGHUP)

    def _spawn(self, mule: Mule) -> None:
        master = self.master
        assert master is not None
        respawn = mule.spawned_mono > 0
        sys.stdout.flush()
        sys.stderr.flush()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _FORK_BLOCKED)
        gc.freeze()  # as workers: the collector leaves the shared pages alone
        pid = os.fork()
        if pid == 0:
            _child(mule, self.config, self.master_pid, lambda: _close_in_mule(master))
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        mule.pid = pid
        mule.spawned_at = time.time()
        mule.spawned_mono = time.monotonic()
        mule.cursed_at = mule.kill_at = 0.0
        if respawn:
            mule.respawn_count += 1
        log.info(f"spawned uWSGI mule {mule.mule_id} (pid: {pid})", event_kind="mule_spawned",
                 mule=mule.mule_id, pid=pid, script=mule.target)


def _child(mule: Mule, config: Config, master_pid: int, close: Callable[[], None]) -> None:
    """In the forked mule: never returns into the master's code."""
    status = END_CODE
    try:
        close()
        status = run_mule(mule.mule_id, mule.target, config, master_pid)
    except BaseException:  # noqa: B036 - nothing may unwind into the master's code
        for line in traceback.format_exc().rstrip("\n").split("\n"):
            log.error(line, event_kind="mule_crash", mule=mule.mule_id)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def _close_in_mule(master: MasterView) -> None:
    """What a worker closes, and the listening sockets too (uWSGI's mules hold none)."""
    master.close_in_child()
    for listener in master.listeners:
        listener.sock.close()


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
