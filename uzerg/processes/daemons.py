"""External processes the master keeps running: ``attach-daemon`` and friends (uWSGI's
core/daemons.c), as a master service.

Two kinds, as in uWSGI:
- a *dumb* daemon (no pidfile) is the master's child, in its own session, killed if the master
  dies (PR_SET_PDEATHSIG); when it exits it is respawned, throttled when it keeps dying (it
  sleeps ``respawns - seconds since the last spawn`` seconds, at most ``max_throttle`` or 300,
  before its command runs); ``attach-control-daemon``/``control``: its death stops the
  instance instead. It is stopped (its process group gets ``stopsignal``, SIGKILL after 3 s)
  when the instance stops or reloads, and the new master starts it again.
- a *smart* daemon (a pidfile) is alive while the pid in its pidfile is. It is started only if
  the pidfile names no living process, checked once a second and started again when that
  process is gone. It survives reloads and stops (the next master adopts it through the
  pidfile); ``notifypid`` sends it the stop (or reload) signal instead.
``touch=FILE;FILE``: a touched file sends the daemon its stop signal (a dumb one respawns).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence

from uzerg.config.service_values import DaemonSpec
from uzerg.logs import get_logger
from uzerg.processes.process import file_mtime
from uzerg.processes.services import Kept, MasterService, OnReadable
from uzerg.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from uzerg.processes.services import MasterView

log = get_logger()

STOP_MERCY = 3.0  # uWSGI's default when reload-mercy is not set
MAX_THROTTLE = 300  # uWSGI: "an arbitrary value (5 minutes) to avoid endless sleeps"
_PR_SET_PDEATHSIG = 1
PID_MAX_LIMIT = 4194304  # Linux's highest possible pid_max


def throttle_seconds(now: int, last_spawn: int, respawns: int, max_throttle: int) -> int:
    """How long a respawned daemon waits before its command runs (uWSGI's rule, whole
    seconds): nothing if the last spawn is more than 3 s old, else ``respawns - elapsed``,
    at least 1, at most ``max_throttle`` (or 300 when that is 0)."""
    elapsed = now - last_spawn
    if elapsed > 3:
        return 0
    throttle = max(1, respawns - elapsed)
    return min(throttle, max_throttle if max_throttle > 0 else MAX_THROTTLE)


def read_pidfile(path: str) -> int:
    """The living pid a pidfile names, or -1 (no file, no number, no such process)."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(64).decode("ascii", "replace")
    except OSError:
        return -1
    digits = text.strip().split()[0] if text.strip() else ""
    pid = int(digits) if digits.isdigit() else 0
    if not 0 < pid <= PID_MAX_LIMIT:
        return -1
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return -1
    except PermissionError:
        pass  # alive, someone else's
    return pid


@record
class Daemon:
    spec: DaemonSpec
    pid: int = -1
    status: int = 0  # uWSGI's: 0 never started, 1 just started, 2 found alive by its pidfile
    respawns: int = 0
    last_spawn: int = 0
    has_daemonized: bool = False  # a smart daemon's first process has exited
    pidfile_checks: int = 0
    touch_mtimes: dict[str, float] | None = None


class Daemons(MasterService):
    """The master service of every ``*attach-daemon*`` of the configuration."""

    label = "attach-daemon"

    def __init__(self, specs: Sequence[DaemonSpec], honour_stdin: bool) -> None:
        self.daemons = [Daemon(spec) for spec in specs]
        self.honour_stdin = honour_stdin
        self.master: MasterView | None = None
        self.stopping = False
        self._last_check = 0

    def start(self, master: MasterView) -> None:
        self.master = master
        for daemon in self.daemons:
            daemon.touch_mtimes = {path: file_mtime(path) for path in daemon.spec.touch}
            if daemon.spec.smart:
                pid = read_pidfile(daemon.spec.pidfile or "")
                if pid > 0:
                    daemon.pid = pid
                    log.info(f'[uwsgi-daemons] found valid/active pidfile for '
                             f'"{daemon.spec.command}" (pid: {pid})', event_kind="daemon_found")
                    continue
            self._spawn(daemon)

    # -- the master's loop ---------------------------------------------------------------------

    def watches(self) -> Mapping[int, OnReadable]:
        return {}

    def tick(self) -> None:
        now = int(time.time())
        if now == self._last_check or self.stopping:
            return
        self._last_check = now
        for daemon in self.daemons:
            if daemon.spec.smart:
                self._check_pidfile(daemon)
            elif daemon.pid < 0:
                self._spawn(daemon)  # stopped for a reload whose exec failed
            self._check_touch(daemon)

    def handover(self) -> Kept:
        """A reload: the dumb daemons are stopped (the next master starts them again), the
        smart ones stay (the next master finds them through their pidfiles)."""
        self.stop(reloading=True)
        self.stopping = False  # if the exec fails, tick() starts them again
        return Kept()

    def close_in_worker(self) -> None:
        pass

    def shutdown(self, vacuum: bool) -> None:
        self.stop(reloading=False)

    def child_exited(self, pid: int, status: int) -> bool:
        """The master reaped ``pid``: True if it was one of ours (a dumb one is respawned)."""
        daemon = next((d for d in self.daemons if d.pid == pid), None)
        if daemon is None:
            return False
        code = os.waitstatus_to_exitcode(status)
        if daemon.spec.smart:
            daemon.has_daemonized = True  # its first process exits once it has daemonized
            return True
        daemon.pid = -1
        how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        log.info(f'[uwsgi-daemons] "{daemon.spec.command}" (pid: {pid}) {how}',
                 event_kind="daemon_exited", pid=pid, exit=code)
        if self.stopping:
            return True
        if daemon.spec.control:
            log.error(f'control daemon "{daemon.spec.command}" died: stopping the instance',
                      event_kind="control_daemon_died")
            self.stopping = True
            if self.master is not None:
                self.master.fifo_command("q")  # a graceful stop
            return True
        self._spawn(daemon)
        return True

    def stop(self, reloading: bool) -> None:
        """Stop the dumb daemons (the instance stops or reloads); smart ones are left running
        unless they asked to be notified."""
        self.stopping = True
        for daemon in self.daemons:
            spec = daemon.spec
            signum = spec.stop_signal
            if reloading and (spec.reload_signal or spec.smart):
                signum = spec.reload_signal or signal.SIGHUP
            if spec.smart:
                if spec.notify_pid and daemon.pid > 0:
                    _signal_group(daemon.pid, signum)
            elif daemon.pid > 0:
                self._stop_child(daemon, signum)

    # -- processes -----------------------------------------------------------------------------

    def _spawn(self, daemon: Daemon) -> None:
        now = int(time.time())
        throttle = throttle_seconds(now, daemon.last_spawn, daemon.respawns,
                                    daemon.spec.max_throttle)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            try:
                self._exec_daemon(daemon, throttle)
            finally:
                os._exit(1)
        daemon.pid = pid
        daemon.status = 1
        daemon.has_daemonized = False
        daemon.pidfile_checks = 0
        daemon.respawns += 1
        daemon.last_spawn = now

    def _exec_daemon(self, daemon: Daemon, throttle: int) -> None:
        """In the forked child: become the daemon (uWSGI's daemon_spawn)."""
        spec = daemon.spec
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT,
                       signal.SIGCHLD, signal.SIGUSR1, signal.SIGTSTP, signal.SIGTTIN,
                       signal.SIGTTOU, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the master's sockets are not its business
        try:
            if spec.chdir:
                os.chdir(spec.chdir)
            if spec.gid:
                os.setgid(spec.gid)
            if spec.uid:
                os.setuid(spec.uid)
            if spec.daemonize:
                if os.fork():
                    os._exit(0)
                with open(spec.pidfile or "", "w") as pidfile:
                    pidfile.write(f"{os.getpid()}\n")
            if not (self.honour_stdin or spec.honour_stdin):
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.close(null)
            os.setsid()
        except OSError as exc:
            log.error(f'[uwsgi-daemons] cannot start "{spec.command}": {exc}',
                      event_kind="daemon_failed")
            return
        if not spec.smart:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if throttle:
            log.info(f'[uwsgi-daemons] throttling "{spec.command}" for {throttle} seconds',
                     event_kind="daemon_throttle")
            time.sleep(throttle)
        again = "re" if daemon.respawns > 0 else ""
        log.info(f'[uwsgi-daemons] {again}spawning "{spec.command}" (uid: {os.getuid()} gid: '
                 f"{os.getgid()})", event_kind="daemon_spawn")
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execv("/bin/sh", ["/bin/sh", "-c", spec.command])
        except OSError as exc:
            log.error(f'[uwsgi-daemons] unable to spawn "{spec.command}": {exc.strerror}',
                      event_kind="daemon_failed")

    def _check_pidfile(self, daemon: Daemon) -> None:
        spec = daemon.spec
        pid = read_pidfile(spec.pidfile or "")
        if pid <= 0:
            if daemon.status == 2:
                log.info(f'[uwsgi-daemons] "{spec.command}" (pid: {daemon.pid}) is gone: '
                         "respawning", event_kind="daemon_gone")
                self._spawn(daemon)
                return
            daemon.pidfile_checks += 1
            if daemon.pidfile_checks >= spec.freq:
                daemon.pidfile_checks = 0
                if not daemon.has_daemonized:
                    log.warning(f'[uwsgi-daemons] "{spec.command}" (pid: {daemon.pid}) did not '
                                "daemonize !!!", event_kind="daemon_not_daemonized")
                else:
                    log.info(f'[uwsgi-daemons] no valid pidfile {spec.pidfile} for '
                             f'"{spec.command}": respawning', event_kind="daemon_gone")
                    self._spawn(daemon)
        elif pid != daemon.pid:
            log.info(f'[uwsgi-daemons] found changed pid for "{spec.command}" (old_pid: '
                     f"{daemon.pid} new_pid: {pid})", event_kind="daemon_pid")
            daemon.pid = pid
        else:
            daemon.status = 2

    def _check_touch(self, daemon: Daemon) -> None:
        if not daemon.touch_mtimes or daemon.pid <= 0:
            return
        for path, before in daemon.touch_mtimes.items():
            now = file_mtime(path)
            if now != before:
                daemon.touch_mtimes[path] = now
                log.info(f'*** {path} has been touched... reloading daemon '
                         f'"{daemon.spec.command}" (pid: {daemon.pid}) !!! ***',
                         event_kind="daemon_touch")
                _signal_group(daemon.pid, daemon.spec.stop_signal)
                return

    def _stop_child(self, daemon: Daemon, signum: int) -> None:
        log.info(f"[uwsgi-daemons] stopping daemon (pid: {daemon.pid}): {daemon.spec.command}",
                 event_kind="daemon_stop", pid=daemon.pid)
        _signal_group(daemon.pid, signum)
        deadline = time.monotonic() + STOP_MERCY
        while time.monotonic() < deadline:
            if _reaped(daemon.pid):
                daemon.pid = -1
                return
            time.sleep(0.02)  # a bounded wait for our own child (the master blocks, as uWSGI)
        log.warning(f"[uwsgi-daemons] daemon did not die in time, killing (pid: {daemon.pid}): "
                    f"{daemon.spec.command}", event_kind="daemon_kill")
        _signal_group(daemon.pid, signal.SIGKILL)
        deadline = time.monotonic() + 1.0
        while not _reaped(daemon.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        daemon.pid = -1


def _reaped(pid: int) -> bool:
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True  # reaped elsewhere already
    return done == pid


def _signal_group(pid: int, signum: int) -> None:
    """The daemon's process group (it is a session leader), else the process alone."""
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

