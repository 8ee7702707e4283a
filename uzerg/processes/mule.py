"""Inside a mule (uWSGI's core/mule.c and its python plugin's mule hook): the process the
master forked runs its script, then exits.

As uWSGI: ``mule = script.py`` runs the file as ``__main__`` (``if __name__ == "__main__":``
blocks run), ``mule = package.module:callable`` imports the module and calls the callable
with no argument. SIGHUP, SIGINT and SIGTERM end the mule (uWSGI's ``end_me``: exit status 30;
here a SystemExit, so ``finally`` blocks and context managers of the script run); SIGUSR1,
SIGUSR2, SIGTSTP, SIGPIPE and SIGALRM are ignored. The mule dies with its master
(PR_SET_PDEATHSIG). Whatever way the script ends (it returns, raises, cannot be read), the
mule exits and the master respawns it (uzerg.processes.mules); uWSGI does the same, as the
message loop a script mule would fall into needs the uwsgi module.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import signal
import sys
import traceback
import types
from types import FrameType

from uzerg.config.model import Config
from uzerg.logs import get_logger
from uzerg.processes.hook_phases import HookExit, HookFailed, run_phase
from uzerg.processes.process import set_process_title

log = get_logger()

END_CODE = 30  # uWSGI's UWSGI_END_CODE: what a mule's end_me() exits with
_PR_SET_PDEATHSIG = 1
_ENDING = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)
_IGNORED = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTSTP, signal.SIGPIPE, signal.SIGALRM)
_DEFAULT = (signal.SIGQUIT, signal.SIGCHLD, signal.SIGTTIN, signal.SIGTTOU)


class MuleEnd(SystemExit):
    """Raised by the ending signals' handler: the mule exits with END_CODE."""


def _end_me(signum: int, _frame: FrameType | None) -> None:
    raise MuleEnd(END_CODE)


def _install_signals() -> None:
    for signum in _ENDING:
        signal.signal(signum, _end_me)
    for signum in _IGNORED:
        signal.signal(signum, signal.SIG_IGN)
    for signum in _DEFAULT:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())  # the master blocked some around fork


def run_mule(mule_id: int, target: str, config: Config, master_pid: int) -> int:
    """Run the mule's script; returns the exit status for os._exit()."""
    _install_signals()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != master_pid:
        return END_CODE  # the master died before PR_SET_PDEATHSIG
    set_process_title(config, f"uzerg mule {mule_id}")
    try:
        run_phase(config, "as-mule")
    except HookFailed as exc:
        log.error(str(exc), event_kind="hook_failed", mule=mule_id)
        return 1
    except HookExit as exc:
        return exc.code
    try:
        _run_target(target)
    except MuleEnd:
        return END_CODE
    except SystemExit as exc:  # the script's own sys.exit(): its status, as uWSGI
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            log.error(str(exc.code), event_kind="mule_exit", mule=mule_id)
        log.info(f"mule {mule_id}: {target} called sys.exit({code}): the mule exits",
                 event_kind="mule_script_end", mule=mule_id, exit=code)
        return code
    except _Unreadable as exc:
        log.error(f"mule {mule_id}: {exc}: the mule exits",
                  event_kind="mule_script_error", mule=mule_id)
        return END_CODE
    except BaseException as exc:  # noqa: BLE001 - the operator's code: any error is logged
        _log_failure(mule_id, target, exc)
        return END_CODE
    log.info(f"mule {mule_id}: {target} returned: the mule exits", event_kind="mule_script_end",
             mule=mule_id, exit=END_CODE)
    return END_CODE


class _Unreadable(Exception):
    pass


def _run_target(target: str) -> None:
    if target.endswith(".py"):
        try:
            with open(target, "rb") as handle:
                source = handle.read()
        except OSError as exc:
            raise _Unreadable(f"failed to open python file {target}: "
                              f"{exc.strerror or exc}") from None
        # uWSGI's uwsgi_pyimport_by_filename("__main__", file): compiled and run as the
        # module __main__ (not runpy: it imports more of the stdlib, maybe out of reach of
        # the uid the master dropped to)
        code = compile(source, target, "exec")
        module = types.ModuleType("__main__")
        module.__file__ = target
        sys.modules["__main__"] = module
        exec(code, module.__dict__)  # noqa: S102 - the operator's script
        return
    module_name, _, name = target.partition(":")
    module = importlib.import_module(module_name)
    function = getattr(module, name, None)
    if not callable(function):
        raise _Unreadable(f"{target}: module {module_name} has no callable {name!r}")
    function()


_UZERG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _internal(filename: str) -> bool:
    """A frame of uzerg's or of the import machinery: not the operator's code."""
    return (filename.startswith("<frozen importlib")
            or os.path.abspath(filename).startswith(_UZERG_DIR + os.sep))


def _log_failure(mule_id: int, target: str, exc: BaseException) -> None:
    """The traceback (uWSGI's PyErr_Print), then one line saying what it means."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if not _internal(frame.filename)]
    head = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    text = "".join([*(head if frames else []), *traceback.format_exception_only(exc)])
    for line in text.rstrip("\n").split("\n"):
        log.error(line, event_kind="mule_traceback", mule=mule_id)
    summary = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ModuleNotFoundError) and exc.name == "uwsgi":
        summary += (" (the uwsgi module: mule_msg, signals, ... is not provided by uzerg "
                    "yet)")
    log.error(f"mule {mule_id}: {target} raised {summary}: the mule exits",
              event_kind="mule_script_error", mule=mule_id)
