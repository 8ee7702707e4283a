"""uWSGI's Emperor blacklist: a vassal that dies before it was ever loyal (served a request)
is respawned later and later: ``emperor-throttle`` ms the first time, growing by as much at
each new failure up to ``emperor-max-throttle``, where it is halved. Loyalty clears it."""

from __future__ import annotations

from uzerg.record import field, record


@record(slots=True)
class BlacklistEntry:
    name: str
    throttle_ms: int
    attempts: int = 1
    first_attempt: float = 0.0
    last_attempt: float = 0.0


@record(slots=True)
class Blacklist:
    throttle_ms: int
    max_throttle_ms: int
    entries: dict[str, BlacklistEntry] = field(default_factory=dict)

    def add(self, name: str, now: float) -> tuple[BlacklistEntry, str | None]:
        """Record one more failure; returns the entry and a line worth logging, if any."""
        entry = self.entries.get(name)
        if entry is None:
            entry = BlacklistEntry(name, self.throttle_ms, 1, now, now)
            self.entries[name] = entry
            return entry, None
        entry.last_attempt = now
        entry.attempts += 1
        note = None
        if entry.throttle_ms < self.max_throttle_ms:
            entry.throttle_ms = min(entry.throttle_ms + self.throttle_ms, self.max_throttle_ms)
        else:
            note = f"[emperor] maximum throttle level for vassal {name} reached !!!"
            entry.throttle_ms //= 2
        if entry.attempts == 2 and note is None:
            note = f"[emperor] unloyal bad behaving vassal found: {name} throttling it..."
        return entry, note

    def remove(self, name: str) -> None:
        self.entries.pop(name, None)

    def ready_at(self, name: str) -> float:
        """The earliest time ``name`` may be started again (0: now)."""
        entry = self.entries.get(name)
        if entry is None:
            return 0.0
        return entry.last_attempt + entry.throttle_ms / 1000.0
