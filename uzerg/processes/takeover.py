"""Zero-downtime deploys: ``takeover = PIDFILE`` and ``uzerg --rollback PIDFILE``.

The new version runs as a zerg of the same pool as the old one. Once every one of its workers
is ready to accept, it pauses the instance named in PIDFILE (SIGTSTP: its workers stop
accepting; connections already queued stay in the shared listen queue, served by the new
zerg) or, with ``takeover-stop``, stops it gracefully (SIGTERM: requests in hand finish).
Then it records the old pid in ``PIDFILE.previous`` and its own in PIDFILE (each written to a
temporary file and renamed: a reader never sees half a pid). Only one paused generation is
kept: the one paused by the deploy before is stopped.

Rollback resumes the paused previous instance, makes it the one in PIDFILE again and stops
the current one gracefully. SIGTSTP toggles pause, as in uWSGI, so a takeover never pauses
the pid it has just resumed, nor one it recorded as paused already.
"""

from __future__ import annotations

import os
import signal

from uzerg.logs import get_logger

log = get_logger()

PREVIOUS_SUFFIX = ".previous"


class TakeoverError(Exception):
    """One line for the operator (``uzerg --rollback``)."""


def previous_path(pidfile: str) -> str:
    return pidfile + PREVIOUS_SUFFIX


def read_pid(path: str) -> int | None:
    """The pid in ``path``; None when the file is missing, empty or not a pid."""
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            text = handle.read().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TakeoverError(f"cannot read {path}: {exc.strerror}") from None
    return int(text) if text.isdigit() and int(text) > 0 else None


def alive(pid: int) -> bool:
    """Whether ``pid`` runs and is a uzerg or uWSGI instance. A pidfile left by a crash may
    name a pid the system has since given to another program: SIGTSTP would freeze it."""
    import psutil  # only for a takeover: ~10 ms that a plain start-up does not pay

    try:
        process = psutil.Process(pid)
        command = " ".join(process.cmdline()).lower()
        program = os.path.basename(process.exe()).lower()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # someone else's process; signalling it will say so
    except (psutil.Error, OSError):
        return False  # a zombie, or gone meanwhile
    if "uzerg" in command or "uwsgi" in command or program.startswith(("python", "uwsgi")):
        return True
    log.warning(f"pid {pid} is neither uzerg nor uWSGI ({program}): treated as gone",
                event_kind="takeover_foreign_pid", pid=pid)
    return False


def write_pid_atomically(path: str, pid: int) -> None:
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="ascii") as handle:
        handle.write(f"{pid}\n")
    os.replace(temporary, path)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def take_over(pidfile: str, stop: bool) -> None:
    """Retire the instance in ``pidfile`` and write our pid there (called once all our
    workers are ready). Raises OSError when the files cannot be written."""
    own = os.getpid()
    old = read_pid(pidfile)
    earlier = read_pid(previous_path(pidfile))
    if old == own:
        return  # we took over already (this master was re-executed by a reload)
    if earlier is not None and earlier not in (old, own) and alive(earlier):
        log.info(f"takeover: stopping pid {earlier}, paused by the deploy before "
                 f"({previous_path(pidfile)})", event_kind="takeover_retire", pid=earlier)
        _signal(earlier, signal.SIGTERM)
    paused: int | None = None
    if old is None or not alive(old):
        log.info(f"takeover: no running instance in {pidfile}: nothing to retire",
                 event_kind="takeover_none", pidfile=pidfile)
    elif stop:
        log.info(f"takeover: gracefully stopping the previous instance (pid {old})",
                 event_kind="takeover_stop", pid=old)
        _signal(old, signal.SIGTERM)
    else:
        log.info(f"takeover: pausing the previous instance (pid {old}); "
                 f"roll back with: uzerg --rollback {pidfile}",
                 event_kind="takeover_pause", pid=old)
        _signal(old, signal.SIGTSTP)
        paused = old
    if paused is not None:
        write_pid_atomically(previous_path(pidfile), paused)
    else:
        _remove(previous_path(pidfile))
    write_pid_atomically(pidfile, own)
    log.info(f"takeover: pid {own} written to {pidfile}", event_kind="takeover_done",
             pid=own, pidfile=pidfile)


def rollback(pidfile: str) -> tuple[int, int]:
    """Resume the previous instance and stop the current one; returns (resumed, stopped)."""
    current = read_pid(pidfile)
    previous = read_pid(previous_path(pidfile))
    if previous is None:
        raise TakeoverError(f"no previous instance recorded in {previous_path(pidfile)} "
                            "(a takeover-stop deploy, or rolled back already)")
    if not alive(previous):
        raise TakeoverError(f"the previous instance (pid {previous}) is not running")
    if current is None or not alive(current):
        raise TakeoverError(f"no running instance in {pidfile}")
    # resume first: the shared queue gains the old workers before the new ones leave it
    _signal(previous, signal.SIGTSTP)
    write_pid_atomically(pidfile, previous)
    _remove(previous_path(pidfile))
    _signal(current, signal.SIGTERM)
    return previous, current


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise TakeoverError(f"cannot signal pid {pid}: {exc.strerror}") from None
