"""The ``busyness`` cheaper algorithm (uWSGI's cheaper_busyness plugin), as pure code.

Every ``cheaper-overload`` seconds it computes how busy the workers were over that window (the
time they spent in requests, from the scoreboard): above ``cheaper-busyness-max`` percent it
spawns ``cheaper-step`` workers; below ``cheaper-busyness-min`` a worker is cheaped once
``cheaper-overload`` x multiplier seconds have passed without a busier window. A worker
cheaped and spawned back too soon raises the multiplier by ``cheaper-busyness-penalty``.
Between windows, a listen queue above ``cheaper-busyness-backlog-alert`` (or not empty for
``cheaper-busyness-backlog-nonzero`` seconds) spawns emergency workers at once.

The log lines are uWSGI's, "[busyness] ..." (the verbose ones with cheaper-busyness-verbose).
"""

from __future__ import annotations

from uzerg.processes.cheaper import Algorithm, CheaperSettings, Snapshot, Verdict

SPAWN, CHEAP = 1, 2  # the last action


class Busyness(Algorithm):
    def __init__(self, settings: CheaperSettings) -> None:
        self.settings = settings
        self.busy = settings.busyness
        self.multiplier = self.busy.multiplier
        self.last_values: dict[int, int] = {}  # slot → running time at the last window (µs)
        self.was_busy: dict[int, int] = {}  # slot → cycles seen busy in this window
        self.window_start = -1  # µs; -1: not started
        self.next_cheap = 0
        self.last_cheaped: int | None = None
        self.last_action = 0
        self.tolerance = 0  # windows in a row between min and max
        self.emergency = 0  # emergency workers running
        self.backlog_since = -1  # µs since the listen queue is not empty; -1: it is empty
        self.notes: list[str] = []
        self.reason = ""

    def settings_lines(self) -> list[str]:
        busy, overload = self.busy, self.settings.overload
        return [
            f"[busyness] settings: min={busy.minimum}%, max={busy.maximum}%, "
            f"overload={overload}, multiplier={busy.multiplier}, "
            f"respawn penalty={busy.penalty}",
            f"[busyness] backlog alert is set to {busy.backlog_alert} request(s), "
            f"step is {busy.backlog_step}",
            f"[busyness] backlog non-zero alert is set to {busy.backlog_nonzero} second(s)",
        ]

    def _note(self, text: str, verbose: bool = False) -> None:
        if not verbose or self.busy.verbose:
            self.notes.append("[busyness] " + text)

    def decide(self, snapshot: Snapshot, can_spawn: bool) -> Verdict:
        self.notes, self.reason = [], ""
        workers = self._decide(snapshot, can_spawn)
        return Verdict(workers, self.reason if workers else "", tuple(self.notes))

    def _decide(self, snapshot: Snapshot, can_spawn: bool) -> int:
        now = int(snapshot.now * 1_000_000)
        overload = self.settings.overload
        window = overload * 1_000_000
        if self.window_start < 0:  # uWSGI starts its timers when the plugin initialises
            self.window_start = now
            self._set_next_cheap(now)
        active = snapshot.active
        for slot in snapshot.slots:
            if slot.active:
                self.was_busy[slot.worker_id] = self.was_busy.get(slot.worker_id, 0) + slot.busy
            else:
                self.was_busy[slot.worker_id] = 0
        backlog = snapshot.backlog
        if now - self.window_start >= window:
            self.window_start = now
            average = self._average(snapshot, window)
            return self._after_window(snapshot, can_spawn, now, average)
        if can_spawn and backlog > self.busy.backlog_alert and len(active) < len(snapshot.slots):
            return self._emergency(snapshot, now)
        if backlog > 0:
            if self.backlog_since >= 0:
                waited = (now - self.backlog_since) // 1_000_000
                if can_spawn and waited >= self.busy.backlog_nonzero:
                    self._note(f"backlog was non-zero for {waited} second(s), spawning new "
                               "worker(s)")
                    self.backlog_since = now
                    return self._emergency(snapshot, now)
            else:
                self._note(f"backlog is starting to fill ({backlog})", verbose=True)
                self.backlog_since = now
        elif self.backlog_since >= 0:
            self._note("backlog is now empty", verbose=True)
            self.backlog_since = -1
        return 0

    def _average(self, snapshot: Snapshot, window: int) -> int:
        overload = self.settings.overload
        active = snapshot.active
        total = 0
        for slot in snapshot.slots:
            wid = slot.worker_id
            if slot.active:
                spent = slot.running_time - self.last_values.get(wid, 0)
                percent = min(100, spent * 100 // window)
                if spent == 0 and self.was_busy.get(wid, 0) > 0:
                    # busy in this window but no request ended: longer than the window
                    self._note(f"worker {wid} was busy {self.was_busy[wid]} time(s) in last "
                               "cycle but no request was completed during this time, marking "
                               "as 100% busy", verbose=True)
                    percent = 100
                self.was_busy[wid] = 0
                total += percent
                if len(active) > 1:
                    self._note(f"worker nr {wid} {overload}s average busyness is at {percent}%",
                               verbose=True)
            self.last_values[wid] = slot.running_time
        average = total // len(active) if active else 0
        self._note(f"{overload}s average busyness of {len(active)} worker(s) is at {average}%",
                   verbose=True)
        return average

    def _after_window(self, snapshot: Snapshot, can_spawn: bool, now: int, average: int) -> int:
        busy, overload = self.busy, self.settings.overload
        active = len(snapshot.active)
        self.reason = f"{overload}s average busyness is at {average}%"
        if average > busy.maximum:
            self.tolerance = 0
            count = min(snapshot.spawnable, self.settings.step) if can_spawn else 0
            if count == 0:
                self._note(f"{overload}s average busyness is at {average}% but we already "
                           "started maximum number of workers available with current limits "
                           f"({active})")
                return 0
            self.last_action = SPAWN
            if (self.last_cheaped is not None
                    and (now - self.last_cheaped) // overload // 1_000_000 <= self.multiplier):
                self.multiplier += busy.penalty
                self._note(f"worker(s) respawned to fast, increasing cheaper multiplier to "
                           f"{self.multiplier} (+{busy.penalty})")
            else:
                self._decrease_multiplier()
            self._set_next_cheap(now)
            self._note(f"{overload}s average busyness is at {average}%, will spawn {count} new "
                       "worker(s)")
            return count
        if (can_spawn and snapshot.backlog > busy.backlog_alert
                and active < len(snapshot.slots)):
            return self._emergency(snapshot, now)
        if active == 1:
            return 0  # nothing to weigh with a single worker
        if average < busy.minimum:
            self.tolerance = 0
            if active <= self.settings.minimum:
                return 0
            if now < self.next_cheap:
                self._note(f"need to wait {(self.next_cheap - now) // 1_000_000} more "
                           "second(s) to cheap worker", verbose=True)
                return 0
            if self.last_action == CHEAP:
                self._decrease_multiplier()
            self._set_next_cheap(now)
            self._note(f"{overload}s average busyness is at {average}%, cheap one of {active} "
                       "running workers")
            self.last_cheaped = now
            self.last_action = CHEAP
            self.emergency = max(0, self.emergency - 1)
            return -1
        self.emergency = max(0, self.emergency - 1)
        self.tolerance += 1
        if self.tolerance >= 3:
            # busy enough for three windows in a row: the idle time counted so far is void
            self._note(f"{overload}s average busyness is at {average}%, {self.tolerance} "
                       "non-idle cycle(s), resetting cheaper timer", verbose=True)
            self._set_next_cheap(now)
        else:
            self._note(f"{overload}s average busyness is at {average}%, {self.tolerance} "
                       "non-idle cycle(s), adjusting cheaper timer", verbose=True)
            self.next_cheap += overload * 1_000_000
        return 0

    def _emergency(self, snapshot: Snapshot, now: int) -> int:
        self.multiplier = self.busy.multiplier
        self.last_action = SPAWN
        self.reason = f"{snapshot.backlog} requests in listen queue"
        count = min(snapshot.spawnable, self.busy.backlog_step)
        self._set_next_cheap(now)
        if count:
            self.emergency += count
            self._note(f"{snapshot.backlog} requests in listen queue, spawning {count} emergency "
                       f"worker(s) ({self.emergency})!")
        else:
            self._note(f"{snapshot.backlog} requests in listen queue but we are already started "
                       f"maximum number of workers ({len(snapshot.slots)})")
        return count

    def _set_next_cheap(self, now: int) -> None:
        overload = self.settings.overload
        if self.emergency > 0:
            # emergency workers go sooner: a big spike is often short
            self._note(f"{self.emergency} emergency worker(s) running, using "
                       f"{overload * self.busy.backlog_multiplier} seconds cheaper timer",
                       verbose=True)
            self.next_cheap = now + overload * self.busy.backlog_multiplier * 1_000_000
        else:
            self.next_cheap = now + overload * self.multiplier * 1_000_000

    def _decrease_multiplier(self) -> None:
        if self.multiplier > self.busy.multiplier:
            self.multiplier -= 1
            self._note(f"decreasing cheaper multiplier to {self.multiplier}")
