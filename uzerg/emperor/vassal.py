"""One vassal: its record (what uWSGI's Emperor stats show) and how it is started: fork and
exec with the channel's end as an inherited fd, as the file's owner under emperor-tyrant, and
killed by the kernel if the Emperor dies (PR_SET_PDEATHSIG)."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import time

from uzerg.emperor import channel
from uzerg.emperor.scan import VassalFile
from uzerg.record import field, record

PR_SET_PDEATHSIG = 1

RUNNING, STOPPING = "running", "stopping"


@record(slots=True)
class Vassal:
    name: str  # "app.ini", or "app.ini:zerg" for a broodlord zerg
    file: VassalFile
    pid: int
    channel: socket.socket
    uid: int
    gid: int
    zerg_of: str | None = None
    broodlord_num: int = 0
    standby: bool = False  # a zerg with its workers paused, waiting for an sos
    status: str = RUNNING
    born: float = field(default_factory=time.time)
    last_mod: float = 0.0
    first_run: float = field(default_factory=time.time)
    last_run: float = field(default_factory=time.time)
    respawns: int = 0
    loyal: bool = False
    last_loyal: float = 0.0
    ready: bool = False
    last_ready: float = 0.0
    accepting: bool = False
    last_accepting: float = 0.0
    last_heartbeat: float = 0.0
    cursed_at: float = 0.0
    resumed_at: float = 0.0

    @property
    def is_zerg(self) -> bool:
        return self.zerg_of is not None

    def send(self, command: int) -> bool:
        try:
            return self.channel.send(bytes((command,))) == 1
        except OSError:
            return False


def start_process(command: list[str], env: dict[str, str], cwd: str,
                  owner: tuple[int, int] | None) -> tuple[int, socket.socket]:
    """Fork and exec the vassal; returns its pid and the Emperor's end of the channel."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setblocking(False)
    env = dict(env)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        theirs.close()
        return pid, ours
    status = 1
    try:
        ours.close()
        _become_vassal(theirs, env, cwd, owner)
        os.execve(command[0], command, env)
    except OSError as exc:
        sys.stderr.write(f"uzerg: [emperor] cannot start vassal {command[0]}: {exc}\n")
        sys.stderr.flush()
    finally:
        os._exit(status)


def _become_vassal(theirs: socket.socket, env: dict[str, str], cwd: str,
                   owner: tuple[int, int] | None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP,
                   signal.SIGUSR1, signal.SIGCHLD, signal.SIGTSTP):
        signal.signal(signum, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    fd = theirs.detach()
    os.set_inheritable(fd, True)
    env[channel.ENV_FD] = str(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.closerange(3, fd)
    os.closerange(fd + 1, _max_fd())
    os.chdir(cwd)
    if owner is not None:
        uid, gid = owner
        os.setgid(gid)
        os.setgroups([])
        os.setuid(uid)


def _max_fd() -> int:
    try:
        return int(os.sysconf("SC_OPEN_MAX"))
    except (ValueError, OSError):
        return 65536
