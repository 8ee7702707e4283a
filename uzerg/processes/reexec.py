"""Graceful reload (SIGHUP) by re-executing the master, as uWSGI's "binary reload" does, but
keeping what must survive: the listening sockets (bound and zerg-received, SPEC §4.4), the pool
sockets, the unix listeners of the zerg server and of every zergpool entry (a zerg attaching
meanwhile waits in their backlog), and the old workers, which keep serving until the new master
has spawned fresh ones.

The old master passes its state to the new program in one environment variable (a JSON
document naming inherited descriptors); the new master reads and removes it before the app
is loaded. The variable's name is no uWSGI option, so the configuration loader ignores it.
"""

from __future__ import annotations

import _signal  # not signal: its IntEnums cost ~3M instructions to import
import os
import sys
from collections.abc import Mapping, MutableMapping, Sequence

from uzerg.addresses import socket_key
from uzerg.logs import get_logger
from uzerg.processes.services import Kept, MasterService
from uzerg.record import field, record
from uzerg.sockets import Listener

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Any

    from uzerg.zerg.server import ListenerHandover

log = get_logger()

ENV_NAME = "UZERG_REEXEC_STATE"
RELOAD_BLOCKED_SIGNALS = frozenset({
    _signal.SIGHUP, _signal.SIGTERM, _signal.SIGINT, _signal.SIGQUIT, _signal.SIGTSTP,
    _signal.SIGUSR1, _signal.SIGTTIN, _signal.SIGTTOU, _signal.SIGCHLD,
})


@record
class InheritedState:
    listeners: list[Listener] = field(default_factory=list)
    pool_sockets: dict[tuple[object, ...], socket.socket] = field(default_factory=dict)
    # the zerg server's and the zergpool entries' own listeners, by normalised address
    zerg_listeners: dict[tuple[object, ...], ListenerHandover] = field(default_factory=dict)
    # (worker id, pid) of the old generation, still serving
    previous_workers: list[tuple[int, int]] = field(default_factory=list)
    daemonized: bool = False
    origin_cwd: str = ""
    # the log master's pipes (read, write[, request read, request write]), kept open
    log_pipes: list[int] = field(default_factory=list)


@record(frozen=True)
class Context:
    """What the master needs to re-execute itself and to say that it did."""

    origin_cwd: str  # the first master's directory: relative --ini paths are relative to it
    daemonized: bool
    reloaded: bool  # this master is itself the product of a reload


def export_state(
    listeners: Sequence[Listener],
    pool_sockets: Sequence[socket.socket],
    workers: Sequence[tuple[int, int]],
    daemonized: bool,
    origin_cwd: str,
    zerg_listeners: Sequence[ListenerHandover] = (),
    kept: Sequence[Kept] = (),
) -> str:
    """Mark the descriptors inheritable and describe them; the caller then exec()s.
    ``kept``: what the master's services keep (uzerg.processes.services)."""
    described = []
    for item in listeners:
        os.set_inheritable(item.fd, True)
        described.append({
            "fd": item.fd,
            "protocol": item.protocol,
            "origin": item.origin,
            "unix_path": item.unix_path,
            "unix_inode": list(item.unix_inode) if item.unix_inode else None,
        })
    document: dict[str, Any] = {"listeners": described, "pool_sockets": [], "zerg_listeners": []}
    for part in [describe_zerg_side(pool_sockets, zerg_listeners), *kept]:
        for fd in part.fds:
            os.set_inheritable(fd, True)
        for name, value in part.state.items():
            document[name] = document[name] + value if name in document else value
    document.update({
        "workers": [list(item) for item in workers],
        "daemonized": daemonized,
        "cwd": origin_cwd,
    })
    import json  # a re-exec only: not at start-up

    return json.dumps(document)


def describe_zerg_side(
    pool_sockets: Sequence[socket.socket], zerg_listeners: Sequence[ListenerHandover]
) -> Kept:
    """The pool sockets and the zerg server's and pools' own listeners, as a re-exec keeps them
    (``take_state`` adopts them into ``InheritedState.pool_sockets``/``.zerg_listeners``)."""
    zergs = [{
        "fd": handover.sock.fileno(),
        "label": handover.label,
        "address": handover.address,
        "key": list(handover.key),
        "created_inode": list(handover.created_inode) if handover.created_inode else None,
    } for handover in zerg_listeners]
    pools = [sock.fileno() for sock in pool_sockets]
    return Kept(tuple(pools + [item["fd"] for item in zergs]),
                {"pool_sockets": pools, "zerg_listeners": zergs})


def take_state(environ: MutableMapping[str, str]) -> InheritedState | None:
    """The state left by the previous master, or None on a first start (the variable is
    removed: the app must not see it, and a child uzerg must not inherit it)."""
    text = environ.pop(ENV_NAME, None)
    if not text:
        return None
    import json

    data = json.loads(text)
    state = InheritedState(
        previous_workers=[(int(wid), int(pid)) for wid, pid in data.get("workers", ())],
        daemonized=bool(data.get("daemonized")),
        origin_cwd=str(data.get("cwd", "")),
        log_pipes=[int(fd) for fd in data.get("log_pipes", ())],
    )
    for item in data.get("listeners", ()):
        sock = _adopt(int(item["fd"]))
        inode = item.get("unix_inode")
        state.listeners.append(Listener(
            sock,
            str(item["protocol"]),
            str(item["origin"]),
            unix_path=item.get("unix_path"),
            unix_inode=(int(inode[0]), int(inode[1])) if inode else None,
        ))
    for fd in data.get("pool_sockets", ()):
        sock = _adopt(int(fd))
        state.pool_sockets[socket_key(sock)] = sock
    if data.get("zerg_listeners"):
        from uzerg.zerg.server import ListenerHandover
    for item in data.get("zerg_listeners", ()):
        key = tuple(item["key"])
        inode = item.get("created_inode")
        state.zerg_listeners[key] = ListenerHandover(
            _adopt(int(item["fd"])),
            str(item["label"]),
            str(item["address"]),
            key,
            (int(inode[0]), int(inode[1])) if inode else None,
        )
    return state


def _adopt(fd: int) -> socket.socket:
    import socket  # a reload only, not a first start; the zerg server accept()s on its listener

    sock = socket.socket(fileno=fd)  # family and type come from the descriptor
    os.set_inheritable(fd, False)
    return sock


def configuration_error(origin_cwd: str, environ: Mapping[str, str]) -> str | None:
    """Load the configuration the new master would load (same arguments, same directory);
    the error line if it is invalid. A reload must not trade a running instance for one that
    exits on a typo (uWSGI's does)."""
    from uzerg.config.load import ConfigError, load_config

    here = os.getcwd()
    try:
        if origin_cwd:
            os.chdir(origin_cwd)
        environ = {k: v for k, v in environ.items() if k != ENV_NAME}
        load_config(list(sys.argv[1:]), environ, write=lambda _text: None)
    except ConfigError as exc:
        return str(exc)
    except OSError as exc:
        return f"{exc.filename}: {exc.strerror}"
    finally:
        os.chdir(here)
    return None


def reexec(
    state_text: str, origin_cwd: str, environ: Mapping[str, str],
    pending_signals: list[int] | None = None,
) -> None:
    """Replace this process with a fresh uzerg master (same pid, same command line).

    ``pending_signals``: the master's queue of signals caught but not dispatched yet; they are
    raised again while blocked, so that they stay pending across exec() and reach the new
    master (a SIGTERM caught just before the exec was lost). Returns only if exec failed
    (OSError propagates; the signals are then delivered, and queued, again)."""
    env = dict(environ)
    env[ENV_NAME] = state_text
    sys.stdout.flush()
    sys.stderr.flush()
    here = os.getcwd()
    if origin_cwd:
        os.chdir(origin_cwd)  # relative --ini paths of the command line are relative to it
    # The signal mask survives exec(): signals sent while the new program starts wait until
    # uzerg.processes.instance has its handlers (instead of killing it with their default action).
    mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, RELOAD_BLOCKED_SIGNALS)
    # pthread_sigmask() has run the Python handlers of signals caught before the block: the
    # queue is complete now, and nothing can be added to it until the mask is restored
    if pending_signals:
        for signum in dict.fromkeys(pending_signals):
            os.kill(os.getpid(), signum)
        pending_signals.clear()
    try:
        os.execve(sys.executable, list(sys.orig_argv), env)
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
        os.chdir(here)


def restart_master(context: Context, listeners: Sequence[Listener],
                   workers: list[tuple[int, int]], services: Sequence[MasterService],
                   pending_signals: list[int]) -> None:
    """Re-execute the master in place (a reload), handing over the listening sockets, the
    (worker id, pid) of the ``workers`` and what each service keeps. Returns only when that
    did not happen (why is logged); the descriptors are then no longer inheritable."""
    error = configuration_error(context.origin_cwd, os.environ)
    if error is not None:
        log.error(f"reload aborted, the instance keeps running: {error}",
                  event_kind="reload_aborted", error=error)
        return
    log.info("binary reloading uWSGI...", event_kind="reload")
    kept = [service.handover() for service in services]
    state = export_state(listeners, [], workers, context.daemonized, context.origin_cwd,
                         kept=kept)
    try:
        reexec(state, context.origin_cwd, os.environ, pending_signals)
    except OSError as exc:
        log.error(f"cannot re-execute {exc.filename}: {exc.strerror}: reload aborted",
                  event_kind="reload_failed")
        for fd in [item.fd for item in listeners] + [f for k in kept for f in k.fds]:
            os.set_inheritable(fd, False)
