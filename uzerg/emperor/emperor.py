"""The Emperor's loop: scan the vassal files every ``emperor-freq`` seconds, start, reload and
stop vassals to match, talk to each over its channel, respawn the ones that die (throttled
when they were never loyal), answer broodlord sos and serve the stats.

Signals (uWSGI's): INT/TERM/QUIT stop every vassal (RAGNAROK; SIGKILL after the mercy), HUP
reloads them all, USR1 logs their state. Every decision is logged with its reason.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping

from uzerg.config.model import Config
from uzerg.emperor import broodlord, channel
from uzerg.emperor.command import (
    ZERG_SECTION,
    check_vassal,
    vassal_arguments,
    vassal_command,
    vassal_environment,
)
from uzerg.emperor.scan import VassalFile, compare, scan
from uzerg.emperor.stats import emperor_stats_document
from uzerg.emperor.throttle import Blacklist
from uzerg.emperor.vassal import RUNNING, STOPPING, Vassal, start_process
from uzerg.logs import get_logger
from uzerg.processes.guard import GUARD
from uzerg.processes.services import MasterService, Watches
from uzerg.processes.stats import StatsServer
from uzerg.processes.wakeup import install_signal_wakeup, reap_children

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = get_logger()

SIGNALS = ("INT", "TERM", "QUIT", "HUP", "USR1", "CHLD")
CURSE_TOLERANCE = 30.0  # seconds a stopping vassal gets before SIGKILL (uWSGI's default)
RAGNAROK_MERCY = 30.0
EXILE_CODE = 26  # a vassal exiting with this status is not respawned (uWSGI's)


class Emperor:
    def __init__(self, config: Config, environ: Mapping[str, str], cwd: str) -> None:
        self.config = config
        self.environ = dict(environ)
        self.cwd = cwd
        self.monitors: tuple[str, ...] = tuple(config.emperor)
        self.vassals: dict[str, Vassal] = {}  # by pid, as text: zergs share a name
        self.files: dict[str, VassalFile] = {}
        self.refused: dict[str, float] = {}  # name → mtime of a file that failed its check
        self.pending: dict[str, float] = {}  # name → when to start it (respawn, throttle)
        self.unreadable: set[str] = set()
        self.warned_unreadable: set[str] = set()
        self.blacklist = Blacklist(config.emperor_throttle, config.emperor_max_throttle)
        self.signals: list[int] = []
        self.next_scan = 0.0
        self.ragnarok_at = 0.0
        self.broodlord_num = 0
        self.stats_server: StatsServer | None = None
        self.watches = Watches("Emperor")  # the loop's epoll
        self.services: list[MasterService] = []  # what the Watches keep registered
        self.touch = {path: _mtime(path) for path in config.touch_reload}

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        self._wakeup = install_signal_wakeup(self.watches, SIGNALS, self._enqueue)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        if self.config.emperor_stats:
            self.stats_server = StatsServer(self.config.emperor_stats,
                                            bool(self.config.stats_http), self.stats)
            self.services.append(self.stats_server)  # it and its clients: watches
        log.info(f"*** starting uWSGI Emperor (uzerg) on {', '.join(self.monitors)} ***",
                 event_kind="emperor_start", monitors=list(self.monitors))
        while True:
            now = time.monotonic()
            if not self.ragnarok_at and now >= self.next_scan:
                self.rescan()
                self.next_scan = now + self.config.emperor_freq
            self.watches.sync(self.services)
            self.watches.dispatch(self._timeout())  # a failure costs that vassal's message
            for service in self.services:
                GUARD.call(service.label, service.tick)
            self._dispatch_signals()
            self._reap()
            self._check_deadlines()
            if self.ragnarok_at and not self.vassals:
                break
        self.close()
        log.info("The Emperor is buried.", event_kind="emperor_buried")
        return 0

    def _timeout(self) -> float:
        now = time.monotonic()
        deadlines = [self.next_scan, now + 1.0, *self.pending.values()]
        return self.watches.timeout(self.services, max(0.0, min(deadlines) - now))

    def _enqueue(self, signum: int, _frame: Any) -> None:
        self.signals.append(signum)

    def _dispatch_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            if signum in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
                self.ragnarok()
            elif signum == signal.SIGHUP:
                for vassal in list(self.vassals.values()):
                    self.reload_vassal(vassal, "SIGHUP: reloading every vassal")
            elif signum == signal.SIGUSR1:
                for v in self.vassals.values():
                    log.info(f"vassal instance {v.name} (last modified {int(v.last_mod)}) "
                             f"status {v.status} loyal {int(v.loyal)} zerg {int(v.is_zerg)}",
                             event_kind="vassal_state", vassal=v.name, pid=v.pid)

    # -- files ---------------------------------------------------------------------------------

    def rescan(self) -> None:
        for path, mtime in self.touch.items():
            if _mtime(path) != mtime:
                self.touch[path] = _mtime(path)
                for vassal in list(self.vassals.values()):
                    self.reload_vassal(vassal, f"{path} (touch-reload) was touched")
        seen = scan(self.monitors, self.cwd, self.unreadable)
        for name in self.unreadable - self.warned_unreadable:
            log.warning(f"[emperor] ignoring {name}: uzerg vassals are .ini files",
                        event_kind="vassal_ignored", vassal=name)
        self.warned_unreadable |= self.unreadable
        changes = compare(self.files, seen)
        self.files = seen
        for name in changes.removed:
            self.refused.pop(name, None)
            self.pending.pop(name, None)
            for vassal in self._named(name):
                self.stop_vassal(vassal, f"its file {name} was removed")
        for file in changes.added:
            self.start_vassal(file, "new vassal file")
        for file in changes.modified:
            running = self._named(file.name)
            if not running:
                if file.name in self.refused or file.name not in self.pending:
                    self.start_vassal(file, "its file changed")
                continue
            if self.config.emperor_tyrant and (file.uid, file.gid) != (running[0].uid,
                                                                       running[0].gid):
                log.warning(f"!!! permissions of file {file.name} changed. stopping the "
                            "instance... !!!", event_kind="vassal_owner_changed",
                            vassal=file.name)
                for vassal in running:
                    self.stop_vassal(vassal, "the owner of its file changed")
                continue
            for vassal in running:
                vassal.file = file
                self.reload_vassal(vassal, f"{file.name} was touched")

    def _named(self, name: str) -> list[Vassal]:
        return [v for v in self.vassals.values() if v.name == name and v.status == RUNNING]

    # -- vassals -------------------------------------------------------------------------------

    def start_vassal(self, file: VassalFile, why: str, *, respawn: int = 0) -> Vassal | None:
        self.pending.pop(file.name, None)
        if self.ragnarok_at:
            return None
        wait = self.blacklist.ready_at(file.name) - time.time()
        if wait > 0:
            self.pending[file.name] = time.monotonic() + wait
            log.info(f"[emperor] vassal {file.name} is throttled: starting it in {wait:.1f} s",
                     event_kind="vassal_throttled", vassal=file.name, seconds=round(wait, 3))
            return None
        error = check_vassal(self.config, file.name, None, file.cwd, self.environ)
        if error is not None:
            self.refused[file.name] = file.mtime
            log.error(f"[emperor] vassal {file.name} not started: {error}",
                      event_kind="vassal_refused", vassal=file.name, error=error)
            return None
        self.refused.pop(file.name, None)
        vassal = self._spawn(file, file.name, None)
        if vassal is not None:
            vassal.respawns = respawn
            log.info(f"[emperor] started vassal {file.name} (pid: {vassal.pid}): {why}",
                     event_kind="vassal_started", vassal=file.name, pid=vassal.pid, why=why)
        return vassal

    def _spawn(self, file: VassalFile, name: str, zerg_of: str | None, *,
               standby: bool = False) -> Vassal | None:
        owner = None
        if self.config.emperor_tyrant:
            if file.uid == 0 or file.gid == 0:
                log.error(f"[emperor-tyrant] invalid permissions for vassal {name}: its file "
                          "is owned by root", event_kind="vassal_refused", vassal=name)
                return None
            owner = (file.uid, file.gid)
            log.info(f"[emperor-tyrant] dropping privileges to {file.uid} {file.gid} for "
                     f"instance {name}", event_kind="tyrant", vassal=name)
        number = 0
        if zerg_of is not None:
            self.broodlord_num += 1
            number = self.broodlord_num
        env = vassal_environment(self.environ, broodlord_num=number, standby=standby)
        section = ZERG_SECTION if zerg_of is not None else None
        command = vassal_command(self.config, vassal_arguments(self.config, file.name, section))
        try:
            pid, sock = start_process(command, env, file.cwd, owner)
        except OSError as exc:
            log.error(f"[emperor] cannot start vassal {name}: {exc.strerror}",
                      event_kind="vassal_spawn_failed", vassal=name)
            return None
        vassal = Vassal(name, file, pid, sock, file.uid, file.gid, zerg_of=zerg_of,
                        broodlord_num=number, standby=standby, last_mod=file.mtime)
        self.vassals[str(pid)] = vassal
        self.watches.watch(sock.fileno(), lambda: self._message(vassal))
        return vassal

    def reload_vassal(self, vassal: Vassal, why: str) -> None:
        if vassal.status != RUNNING:
            return
        if not vassal.send(channel.RELOAD):
            log.error(f"[emperor] cannot reach vassal {vassal.name} to reload it: killing it",
                      event_kind="vassal_unreachable", vassal=vassal.name, pid=vassal.pid)
            self._kill(vassal)
            return
        vassal.respawns += 1
        vassal.last_mod = vassal.file.mtime
        vassal.last_run = time.time()
        vassal.ready = vassal.accepting = False
        log.info(f"[emperor] reload the uwsgi instance {vassal.name} (pid: {vassal.pid}): "
                 f"{why}", event_kind="vassal_reload", vassal=vassal.name, pid=vassal.pid,
                 why=why)

    def stop_vassal(self, vassal: Vassal, why: str) -> None:
        if vassal.status == STOPPING:
            return
        vassal.status = STOPPING
        vassal.cursed_at = time.monotonic()
        graceful = self.config.emperor_graceful_shutdown
        if not vassal.send(channel.GRACEFUL_STOP if graceful else channel.STOP):
            self._kill(vassal)
        log.info(f"[emperor] stop the uwsgi instance {vassal.name} (pid: {vassal.pid}): {why}",
                 event_kind="vassal_stop", vassal=vassal.name, pid=vassal.pid, why=why)
        if not vassal.is_zerg:
            for zerg in broodlord.zergs_of(self.vassals.values(), vassal.name):
                self.stop_vassal(zerg, f"its vassal {vassal.name} is stopping")

    def ragnarok(self) -> None:
        if self.ragnarok_at:
            left = RAGNAROK_MERCY - (time.monotonic() - self.ragnarok_at)
            log.info(f"[emperor] *** RAGNAROK ALREADY EVOKED (mercyless in {int(left)} "
                     "seconds)***", event_kind="ragnarok_again")
            return
        log.info("[emperor] *** RAGNAROK EVOKED ***", event_kind="ragnarok")
        self.ragnarok_at = time.monotonic()
        self.pending.clear()
        for vassal in list(self.vassals.values()):
            self.stop_vassal(vassal, "the Emperor is stopping")

    @staticmethod
    def _kill(vassal: Vassal) -> None:
        try:
            os.kill(vassal.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # -- the channel ---------------------------------------------------------------------------

    def _message(self, vassal: Vassal) -> None:
        data = channel.receive(vassal.channel)
        if data is None:
            return
        if not data:  # the vassal is gone (or going): its death is handled when reaped
            self.watches.unwatch(vassal.channel.fileno())
            return
        for byte in data:
            self._command(vassal, byte)

    def _command(self, vassal: Vassal, byte: int) -> None:
        now = time.time()
        if byte == channel.LOYAL:
            vassal.loyal, vassal.last_loyal = True, now
            self.blacklist.remove(vassal.name)
            log.info(f"[emperor] vassal {vassal.name} is now loyal", event_kind="vassal_loyal",
                     vassal=vassal.name, pid=vassal.pid)
        elif byte == channel.HEARTBEAT:
            vassal.last_heartbeat = time.monotonic()
        elif byte == channel.STOP_ME:
            self.stop_vassal(vassal, "it asked to be stopped (idle)")
        elif byte == channel.SOS:
            self.sos(vassal)
        elif byte == channel.ACCEPTING:
            vassal.accepting, vassal.last_accepting = True, now
            log.info(f"[emperor] vassal {vassal.name} is ready to accept requests",
                     event_kind="vassal_accepting", vassal=vassal.name, pid=vassal.pid)
        elif byte == channel.SPAWNED:
            vassal.ready, vassal.last_ready = True, now
            log.info(f"[emperor] vassal {vassal.name} has been spawned"
                     + (" (warm standby, workers paused)" if vassal.standby else ""),
                     event_kind="vassal_ready", vassal=vassal.name, pid=vassal.pid,
                     standby=vassal.standby)
            self._fill_standbys(vassal)
        elif byte == channel.CONFIG_REQUEST:
            pass  # config pipes (emperor://) are not used: the vassal reads its file
        else:
            log.warning(f"[emperor] unrecognized vassal event {byte} from {vassal.name}",
                        event_kind="vassal_unknown_message", vassal=vassal.name, byte=byte)

    # -- broodlord -----------------------------------------------------------------------------

    def sos(self, vassal: Vassal) -> None:
        limit = self.config.emperor_broodlord
        decision = broodlord.decide_sos(self.vassals.values(), vassal, limit)
        log.info(f"[emperor] sos from {vassal.name} (pid: {vassal.pid}): {decision.action} "
                 f"({decision.why})", event_kind="sos", vassal=vassal.name, pid=vassal.pid,
                 action=decision.action, why=decision.why)
        if decision.action == "resume" and decision.standby is not None:
            zerg = decision.standby
            zerg.standby = False
            zerg.resumed_at = time.time()
            try:
                os.kill(zerg.pid, signal.SIGTSTP)  # the zerg's master resumes its workers
            except ProcessLookupError:
                return
            log.info(f"[emperor] going in broodlord mode: resumed warm zerg {zerg.name} "
                     f"(pid: {zerg.pid}) for {vassal.name}", event_kind="zerg_resumed",
                     vassal=vassal.name, pid=zerg.pid)
            self._fill_standbys(vassal)
        elif decision.action == "spawn":
            self._spawn_zerg(vassal, standby=False)

    def _spawn_zerg(self, parent: Vassal, *, standby: bool) -> None:
        name = f"{parent.name}:{ZERG_SECTION}"
        error = check_vassal(self.config, parent.file.name, ZERG_SECTION, parent.file.cwd,
                             self.environ)
        if error is not None:
            log.error(f"[emperor] no zerg for {parent.name}: {error}",
                      event_kind="zerg_refused", vassal=parent.name, error=error)
            return
        zerg = self._spawn(parent.file, name, parent.name, standby=standby)
        if zerg is not None:
            kind = "warm standby zerg" if standby else "zerg"
            log.info(f"[emperor] going in broodlord mode: launching {kind} {name} "
                     f"(pid: {zerg.pid}) for {parent.name}", event_kind="zerg_started",
                     vassal=parent.name, pid=zerg.pid, standby=standby)

    def _fill_standbys(self, vassal: Vassal) -> None:
        if vassal.is_zerg:
            return
        missing = broodlord.standbys_missing(self.vassals.values(), vassal,
                                             self.config.emperor_broodlord_standby,
                                             self.config.emperor_broodlord)
        for _ in range(missing):
            self._spawn_zerg(vassal, standby=True)

    # -- children ------------------------------------------------------------------------------

    def _reap(self) -> None:
        for pid, status in reap_children():
            vassal = self.vassals.pop(str(pid), None)
            if vassal is not None:
                self._vassal_died(vassal, os.waitstatus_to_exitcode(status))

    def _vassal_died(self, vassal: Vassal, code: int) -> None:
        try:
            self.watches.unwatch(vassal.channel.fileno())
        except KeyError:
            pass
        vassal.channel.close()
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        if vassal.status == STOPPING or self.ragnarok_at:
            log.info(f"[emperor] removed uwsgi instance {vassal.name} (pid: {vassal.pid}, "
                     f"{how})", event_kind="vassal_removed", vassal=vassal.name,
                     pid=vassal.pid, exit=code)
            return
        if vassal.is_zerg:
            log.warning(f"[emperor] zerg {vassal.name} (pid: {vassal.pid}) died ({how}): not "
                        "respawned, the next sos starts another", event_kind="zerg_died",
                        vassal=vassal.name, pid=vassal.pid, exit=code)
            return
        if code == EXILE_CODE:
            log.info(f"[emperor] vassal {vassal.name} exiled itself ({how}): not respawned",
                     event_kind="vassal_exiled", vassal=vassal.name, pid=vassal.pid)
            return
        file = self.files.get(vassal.name)
        if file is None:
            return
        if not vassal.loyal:
            entry, note = self.blacklist.add(vassal.name, time.time())
            if note:
                log.warning(note, event_kind="vassal_blacklisted", vassal=vassal.name)
            why = f"it died before serving a request: throttled {entry.throttle_ms} ms"
        else:
            why = "it was loyal: respawned at once"
        log.error(f"[emperor] vassal {vassal.name} (pid: {vassal.pid}) died ({how}): {why}",
                  event_kind="vassal_died", vassal=vassal.name, pid=vassal.pid, exit=code)
        self.start_vassal(file, "respawn after its death", respawn=vassal.respawns + 1)

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for name, due in list(self.pending.items()):
            if due <= now and name in self.files and not self.ragnarok_at:
                self.start_vassal(self.files[name], "its throttle delay is over")
        required = self.config.emperor_required_heartbeat
        for vassal in list(self.vassals.values()):
            if vassal.last_heartbeat and now - vassal.last_heartbeat > required:
                log.error(f"[emperor] vassal {vassal.name} sent no heartbeat in last "
                          f"{required} seconds, brutally respawning it...",
                          event_kind="vassal_no_heartbeat", vassal=vassal.name, pid=vassal.pid)
                vassal.last_heartbeat = 0.0
                self._kill(vassal)
            if vassal.status == STOPPING and now - vassal.cursed_at >= CURSE_TOLERANCE:
                log.error(f"[emperor] vassal {vassal.name} (pid: {vassal.pid}) did not stop "
                          f"in {int(CURSE_TOLERANCE)} seconds: SIGKILL",
                          event_kind="vassal_kill", vassal=vassal.name, pid=vassal.pid)
                vassal.cursed_at = now
                self._kill(vassal)
        if self.ragnarok_at and now - self.ragnarok_at >= RAGNAROK_MERCY:
            for vassal in self.vassals.values():
                log.error(f"[emperor] NO MERCY for vassal {vassal.name} !!!",
                          event_kind="no_mercy", vassal=vassal.name, pid=vassal.pid)
                self._kill(vassal)

    # -- stats and shutdown --------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return emperor_stats_document(
            monitors=self.monitors, tyrant=self.config.emperor_tyrant,
            throttle_ms=self.config.emperor_throttle, vassals=list(self.vassals.values()),
            blacklist=self.blacklist, cwd=self.cwd,
        )

    def close(self) -> None:
        if self.stats_server is not None:
            self.stats_server.close(bool(self.config.vacuum))
        signal.set_wakeup_fd(-1)
        self.watches.close()
        for fd in self._wakeup:
            os.close(fd)


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
