"""The actions a hook line names (``hook-pre-app = mkdir:/run/app``), as uWSGI's core/hooks.c
defines them. Each takes the text after the colon and returns None, or raises HookActionError
with the reason in one line (the runner, uzerg.processes.hooks, names the hook and its phase).

``call``/``callret``/``callint``/``callintret`` call a C function of the process (uWSGI's
dlsym); uzerg also accepts a Python callable written ``package.module.function``, the
counterpart of a C symbol in a Python server. ``unix_signal`` accepts the uWSGI master
functions whose behaviour is uzerg's own for that signal already (the common
``unix_signal:15 gracefully_kill_them_all``), and says so otherwise.
"""

from __future__ import annotations

import ctypes
import errno
import grp
import importlib
import os
import pwd
import socket
import stat
import time
from collections.abc import Callable

from uzerg.logs import get_logger
from uzerg.processes.hooks import HookActionError, HookExit

__all__ = ["ACTIONS", "HookActionError", "HookExit", "run_command"]

log = get_logger()

WAIT_TIMEOUT = 60  # seconds: uWSGI's default wait-for-fs-timeout / wait-for-socket-timeout


# unix_signal:N FUNC where uzerg's master already does what FUNC does on signal N
_MASTER_FUNCTIONS = {
    "gracefully_kill_them_all": {15},  # SIGTERM: graceful stop
    "kill_them_all": {2, 3},  # SIGINT/SIGQUIT: immediate stop
    "grace_them_all": {1},  # SIGHUP: graceful reload
}


def run_command(command: str) -> int:
    """``/bin/sh -c command`` as uWSGI's uwsgi_run_command_and_wait; its exit code (a signal
    as 128+N, as a shell reports it)."""
    import subprocess  # hooks only: not loaded before a start-up needs it

    try:
        status = subprocess.run(["/bin/sh", "-c", command], check=False).returncode
    except OSError as exc:
        raise HookActionError(f"cannot run /bin/sh: {exc.strerror}") from None
    return status if status >= 0 else 128 - status


def _exec(arg: str) -> None:
    code = run_command(arg)
    if code != 0:
        raise HookActionError(f'command "{arg}" exited with non-zero code: {code}')


def _safeexec(arg: str) -> None:
    code = run_command(arg)
    if code != 0:
        log.warning(f'command "{arg}" exited with non-zero code: {code}', event_kind="hook")


def _file_and_text(arg: str, action: str) -> tuple[str, str]:
    path, space, text = arg.partition(" ")
    if not space:
        raise HookActionError(f"invalid hook {action} syntax, must be: <file> <string>")
    return path, text


def _os_call(what: str, call: Callable[[], object]) -> None:
    try:
        call()
    except OSError as exc:
        raise HookActionError(f"{what}: {exc.strerror}") from None


def _write_file(path: str, data: str, flags: int) -> None:
    def write() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o666)
        try:
            if os.write(fd, data.encode()) != len(data.encode()):
                raise OSError(errno.EIO, "short write")
        finally:
            os.close(fd)

    _os_call(f"write {path}", write)


def _write(arg: str) -> None:
    _write_file(*_file_and_text(arg, "write"), os.O_TRUNC)


def _writen(arg: str) -> None:
    path, text = _file_and_text(arg, "writen")
    _write_file(path, text + "\n", os.O_TRUNC)


def _append(arg: str) -> None:
    _write_file(*_file_and_text(arg, "append"), os.O_APPEND)


def _appendn(arg: str) -> None:
    path, _space, text = arg.partition(" ")
    _write_file(path, text + "\n", os.O_APPEND)


def _create(arg: str) -> None:
    _write_file(arg, "", os.O_TRUNC)


def _writefifo(arg: str) -> None:
    path, text = _file_and_text(arg, "writefifo")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENODEV):
            return  # nobody reads the fifo: uWSGI lets it go
        raise HookActionError(f"open {path}: {exc.strerror}") from None
    _write_fd(fd, path, text)


def _write_fd(fd: int, path: str, text: str) -> None:
    try:
        _os_call(f"write {path}", lambda: os.write(fd, text.encode()))
    finally:
        os.close(fd)


def _spinningfifo(arg: str) -> None:
    path, text = _file_and_text(arg, "spinningfifo")
    while True:
        log.info(f"waiting for {path} ...", event_kind="hook")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.ENODEV, errno.ENOENT):
                time.sleep(1)  # uWSGI's one-second spin: the reader is not there yet
                continue
            raise HookActionError(f"open {path}: {exc.strerror}") from None
        _write_fd(fd, path, text)
        return


def _chmod(arg: str) -> None:
    path, space, mode = arg.partition(" ")
    if not space:
        raise HookActionError("invalid hook chmod syntax, must be: <file> <mode>")
    try:
        bits = int(mode, 8)
    except ValueError:
        raise HookActionError(f"invalid hook chmod mask: {mode}") from None
    _os_call(f"chmod {path}", lambda: os.chmod(path, bits))


def _sticky(arg: str) -> None:
    _os_call(f"chmod {arg}", lambda: os.chmod(arg, os.stat(arg).st_mode | stat.S_ISVTX))


def _chown_args(arg: str, action: str) -> tuple[str, str, str]:
    parts = arg.split(" ")
    if len(parts) < 3:
        raise HookActionError(f"invalid hook {action} syntax, must be: <file> <uid> <gid>")
    return parts[0], parts[1], " ".join(parts[2:])


def _chown(arg: str) -> None:
    path, user, group = _chown_args(arg, "chown")
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        raise HookActionError(f"unable to find uid {user}") from None
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise HookActionError(f"unable to find gid {group}") from None
    _os_call(f"chown {path}", lambda: os.chown(path, uid, gid))


def _chown2(arg: str) -> None:
    path, user, group = _chown_args(arg, "chown2")
    if not user.isdigit() or not group.isdigit():
        raise HookActionError("invalid hook chown2 syntax, uid and gid must be numbers")
    _os_call(f"chown {path}", lambda: os.chown(path, int(user), int(group)))


def _putenv(arg: str) -> None:
    name, equals, value = arg.partition("=")
    if not equals:
        os.environ.pop(name, None)  # glibc's putenv("NAME") removes it
    else:
        os.environ[name] = value


def _hostname(arg: str) -> None:
    _os_call("sethostname", lambda: socket.sethostname(arg))


def _exit(arg: str) -> None:
    # uWSGI: exit(atoi(arg)) only when the text is longer than one character, else 0
    code = int(arg) if len(arg) > 1 and arg.lstrip("-").isdigit() else 0
    log.info(f"hook exit: {code}", event_kind="hook_exit")
    raise HookExit(code)


def _print(arg: str) -> None:
    log.info(arg, event_kind="hook_print")


def _wait_for_path(arg: str, check: Callable[[os.stat_result], bool]) -> None:
    log.info(f"waiting for {arg} (max {WAIT_TIMEOUT} seconds) ...", event_kind="hook")
    for _second in range(WAIT_TIMEOUT + 1):
        try:
            if check(os.stat(arg)):
                log.info(f"{arg} found", event_kind="hook")
                return
        except OSError:
            pass
        time.sleep(1)
    raise HookActionError(f"{arg} unavailable after {WAIT_TIMEOUT} seconds")


def _wait_for_socket(arg: str) -> None:
    from uzerg.addresses import AddressError, parse_address

    try:
        address = parse_address(arg)
    except AddressError as exc:
        raise HookActionError(str(exc)) from None
    log.info(f"waiting for {arg} (max {WAIT_TIMEOUT} seconds) ...", event_kind="hook")
    for _second in range(WAIT_TIMEOUT + 1):
        try:
            with socket.socket(address.family, socket.SOCK_STREAM) as sock:
                sock.settimeout(1)
                sock.connect(address.sockaddr)
            log.info(f"{arg} ready", event_kind="hook")
            return
        except OSError:
            time.sleep(1)
    raise HookActionError(f"{arg} unavailable after {WAIT_TIMEOUT} seconds")


def _function(name: str) -> Callable[..., object]:
    """A Python callable (``pkg.module.func``) or a C symbol of the process (uWSGI's dlsym)."""
    module_name, dot, attr = name.rpartition(".")
    if dot:
        try:
            return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]
        except (ImportError, AttributeError) as exc:
            raise HookActionError(f'unable to call function "{name}": {exc}') from None
    try:
        return getattr(ctypes.CDLL(None), name)  # type: ignore[no-any-return]
    except AttributeError:
        raise HookActionError(f'unable to call function "{name}"') from None


def _calling(kind: str) -> Callable[[str], None]:
    def call(arg: str) -> None:
        name, space, argument = arg.partition(" ")
        function = _function(name)
        value: object = argument
        if kind.startswith("callint"):
            value = int(argument) if argument.lstrip("-").isdigit() else 0
        elif isinstance(function, ctypes._CFuncPtr):  # type: ignore[attr-defined]
            value = argument.encode()
        try:
            result = function(value) if space else function()
        except Exception as exc:  # an app's function: its failure is the hook's failure
            raise HookActionError(f'function "{name}" raised {type(exc).__name__}: {exc}') from None
        if kind.endswith("ret") and result:
            raise HookActionError(f'function "{name}" returned {result}')

    return call


def _unix_signal(arg: str) -> None:
    number, space, function = arg.partition(" ")
    if not space or not number.isdigit():
        raise HookActionError("invalid unix_signal syntax, must be <signum> <func>")
    if int(number) not in _MASTER_FUNCTIONS.get(function.strip(), set()):
        raise HookActionError(f"uzerg cannot bind signal {number} to {function}: only "
                              "uWSGI's own master functions on their usual signal are known")
    log.info(f"signal {number} already runs {function} in uzerg", event_kind="hook")


ACTIONS: dict[str, Callable[[str], None]] = {
    "cd": lambda arg: _os_call(f"chdir {arg}", lambda: os.chdir(arg)),
    "chdir": lambda arg: _os_call(f"chdir {arg}", lambda: os.chdir(arg)),
    "mkdir": lambda arg: _os_call(f"mkdir {arg}", lambda: os.mkdir(arg, 0o777)),
    "putenv": _putenv,
    "chmod": _chmod,
    "chown": _chown,
    "chown2": _chown2,
    "sticky": _sticky,
    "exec": _exec,
    "safeexec": _safeexec,
    "create": _create,
    "creat": _create,
    "write": _write,
    "writen": _writen,
    "append": _append,
    "appendn": _appendn,
    "writefifo": _writefifo,
    "spinningfifo": _spinningfifo,
    "unlink": lambda arg: _os_call(f"unlink {arg}", lambda: os.unlink(arg)),
    "call": _calling("call"),
    "callret": _calling("callret"),
    "callint": _calling("callint"),
    "callintret": _calling("callintret"),
    "hostname": _hostname,
    "wait_for_fs": lambda arg: _wait_for_path(arg, lambda _st: True),
    "wait_for_file": lambda arg: _wait_for_path(arg, lambda st: stat.S_ISREG(st.st_mode)),
    "wait_for_dir": lambda arg: _wait_for_path(arg, lambda st: stat.S_ISDIR(st.st_mode)),
    "wait_for_socket": _wait_for_socket,
    "unix_signal": _unix_signal,
    "exit": _exit,
    "print": _print,
    "log": _print,
}
