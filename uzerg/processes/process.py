"""OS integration of the instance's processes: pidfile, daemonize, log file, privileges,
process names, the environment of the app (chdir, env, virtualenv).

Every failure that is the operator's to fix raises StartupError with one clear line; the
caller (uzerg.processes.instance) logs it and exits with its status.
"""

from __future__ import annotations

import os
import site
import sys

from uzerg.config.model import Config
from uzerg.logs import get_logger

log = get_logger()


class StartupError(Exception):
    """The instance cannot start; ``str()`` is the line for the operator, ``status`` the exit."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def write_pidfile(path: str) -> None:
    log.info(f"writing pidfile to {path}", event_kind="pidfile", path=path)
    try:
        with open(path, "w", encoding="ascii") as handle:
            handle.write(f"{os.getpid()}\n")
    except OSError as exc:
        raise StartupError(f"could not write pidfile {path}: {exc.strerror}") from None


def remove_pidfile(path: str) -> None:
    """Vacuum: remove the pidfile only while it still names this process."""
    try:
        with open(path, encoding="ascii") as handle:
            if handle.read().strip() != str(os.getpid()):
                return
        os.unlink(path)
        log.info("VACUUM: pidfile removed.", event_kind="vacuum", path=path)
    except OSError:
        pass


def open_log_file(path: str) -> None:
    """Send fds 1 and 2 (logs, app prints, tracebacks) to ``path``, appending (--logto)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    except OSError as exc:
        raise StartupError(f"unable to open log file {path}: {exc.strerror}") from None
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def daemonize(logfile: str) -> None:
    """Detach from the terminal (double fork, setsid) and log to ``logfile`` (--daemonize).

    The calling process exits in the parent branches; only the daemon returns.
    """
    open_log_file(logfile)  # fail in the foreground, where the operator sees it
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def _lookup_uid(value: str) -> int:
    if value.isdigit():
        return int(value)
    import pwd  # a user's name: uid, chown-socket (start-up, before the privilege drop)

    try:
        return pwd.getpwnam(value).pw_uid
    except KeyError:
        raise StartupError(f"uid: unknown user {value!r}") from None


def _lookup_gid(value: str) -> int:
    if value.isdigit():
        return int(value)
    import grp  # a group's name: gid, chown-socket (start-up, before the privilege drop)

    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        raise StartupError(f"gid: unknown group {value!r}") from None


def parse_owner(value: str) -> tuple[int, int]:
    """``user[:group]`` (names or numbers) → (uid, gid); -1 leaves one unchanged (chown)."""
    user, _, group = value.partition(":")
    uid = _lookup_uid(user) if user else -1
    gid = _lookup_gid(group) if group else -1
    return uid, gid


def drop_privileges(uid: str | None, gid: str | None) -> None:
    """--uid/--gid: as uWSGI, only root changes identity; gid first, then uid."""
    if not uid and not gid:
        return
    if os.getuid() != 0:
        if gid:
            log.warning("cannot setgid() as non-root user", event_kind="privileges")
        if uid:
            log.warning("cannot setuid() as non-root user", event_kind="privileges")
        return
    if gid:
        new_gid = _lookup_gid(gid)
        os.setgid(new_gid)
        os.setgroups([new_gid])
        log.info(f"setgid() to {new_gid}", event_kind="privileges", gid=new_gid)
    if uid:
        new_uid = _lookup_uid(uid)
        if not gid:
            # take the user's groups, as uWSGI's initgroups does
            import pwd  # the user's groups (uid without gid: before the drop)

            entry = pwd.getpwuid(new_uid) if _has_user(new_uid) else None
            if entry is not None:
                os.initgroups(entry.pw_name, entry.pw_gid)
                os.setgid(entry.pw_gid)
        os.setuid(new_uid)
        log.info(f"setuid() to {new_uid}", event_kind="privileges", uid=new_uid)


def _has_user(uid: int) -> bool:
    import pwd  # drop_privileges only

    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def process_title(config: Config, name: str) -> str | None:
    """The title for a process ("uzerg master", "uzerg worker 1"), or None to keep argv.

    As uWSGI: --auto-procname names processes; --procname-prefix(-spaced) prefixes the name
    (or, without auto-procname, the original command line).
    """
    prefix = config.procname_prefix or ""
    spaced = config.procname_prefix_spaced
    if spaced:
        prefix = spaced + " "
    auto = config.auto_procname
    if not auto and not prefix:
        return None
    base = name if auto else " ".join(sys.orig_argv)
    return prefix + base


def load_title_support(config: Config) -> None:
    """Import setproctitle now when titles are configured: after --uid the process may no
    longer read site-packages. Not imported otherwise (it pulls in logging: ~3 ms)."""
    if process_title(config, "") is not None:
        import setproctitle  # noqa: F401


def set_process_title(config: Config, name: str) -> None:
    title = process_title(config, name)
    if title is not None:
        import setproctitle  # loaded by load_title_support() before privileges were dropped

        setproctitle.setproctitle(title)


def prepare_environment(config: Config) -> None:
    """--chdir, --env K=V and --home: what the app sees, set up in the master before loading."""
    if config.chdir:
        change_directory(config.chdir)
    for item in config.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise StartupError(f"env: invalid value {item!r} (expected NAME=VALUE)")
        os.environ[name] = value
    home = config.home
    if home:
        add_virtualenv(home)


def set_max_fd(limit: int) -> None:
    """--max-fd: soft and hard RLIMIT_NOFILE to ``limit`` (raising it needs root); as uWSGI,
    a refusal is logged and the instance runs with the limit it has."""
    import resource  # max-fd only (start-up)

    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    except (OSError, ValueError) as exc:
        log.error(f"setrlimit(): {exc}", event_kind="max_fd")
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    log.info(f"detected max file descriptor number: {soft}", event_kind="max_fd", limit=soft)


def change_directory(path: str) -> None:
    """--chdir (before loading the app) and --chdir2 (after)."""
    try:
        os.chdir(path)
    except OSError as exc:
        raise StartupError(f"chdir(): {path}: {exc.strerror}") from None
    log.info(f"chdir() to {path}", event_kind="chdir", path=path)


def add_virtualenv(home: str) -> None:
    """Make the packages of the virtualenv ``home`` importable (--home/--virtualenv)."""
    if not os.path.isdir(home):
        raise StartupError(f"home: virtualenv directory {home} does not exist")
    import glob  # --home only: not at start-up

    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = glob.glob(os.path.join(home, "lib", version, "site-packages"))
    candidates += glob.glob(os.path.join(home, "lib", "python3*", "site-packages"))
    if not candidates:
        log.warning(f"home: no site-packages found in {home}", event_kind="virtualenv")
        return
    os.environ.setdefault("VIRTUAL_ENV", os.path.abspath(home))
    before = list(sys.path)
    site.addsitedir(candidates[0])
    # the virtualenv's packages win over the interpreter's, as with a real `home`
    added = [entry for entry in sys.path if entry not in before]
    sys.path[:] = added + before
    log.info(f"Set PythonHome to {home}", event_kind="virtualenv", path=home)


def file_mtime(path: str) -> float:
    """A file's modification time, 0.0 when it is missing (touch-reload and friends)."""
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
