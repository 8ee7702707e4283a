"""The cheaper subsystem's decisions (uWSGI's adaptive process spawning), as pure code.

``cheaper = N`` keeps between N and ``processes`` workers running. Once a cycle (a second) the
master describes its worker slots in a ``Snapshot``; ``CheaperPolicy.cycle()`` answers with a
``Decision``: which slots to spawn, which workers to cheap, and why. No clock, process or
socket is touched here: the master's side is uzerg.processes.cheaper_tick.

The algorithms follow uWSGI 2.0.31 (core/master_utils.c; ``spare2`` and ``cheaper-idle`` come
from uWSGI's master branch; ``busyness`` is uzerg.processes.cheaper_busyness):
- ``spare`` (the default): every cycle where all workers are busy counts as an overload; after
  more than ``cheaper-overload`` of them in a row, spawn ``cheaper-step`` workers. Once calm,
  every ``cheaper-overload`` cycles cheap one worker, unless exactly one worker is idle.
- ``spare2``: keep ``cheaper`` workers idle: spawn (at most ``cheaper-step``) when fewer are;
  cheap one after ``cheaper-idle`` cycles in a row with more.
- ``backlog``: spawn while a listen queue holds more than ``cheaper-overload`` connections,
  cheap one per cycle while it holds fewer.
- ``manual``: only the operator decides (fifo ``+``/``-``, SIGTTIN/SIGTTOU).
"""

from __future__ import annotations

from collections.abc import Callable

from uzerg.config.model import Config
from uzerg.record import field, record

ALGORITHMS = ("spare", "spare2", "backlog", "busyness", "manual")
UNKNOWN_ALGO = "unable to find requested cheaper algorithm, falling back to spare"


class CheaperConfigError(ValueError):
    """A cheaper setting uWSGI refuses to start with; ``str()`` is the operator's line."""


@record(frozen=True)
class BusynessSettings:
    maximum: int = 50
    minimum: int = 25
    multiplier: int = 10
    penalty: int = 2
    verbose: bool = False
    backlog_alert: int = 33
    backlog_multiplier: int = 3
    backlog_step: int = 1
    backlog_nonzero: int = 60


@record(frozen=True)
class CheaperSettings:
    minimum: int  # cheaper
    maximum: int  # processes
    initial: int = 0  # 0: minimum
    step: int = 1
    overload: int = 3
    idle: int = 10
    algo: str = "spare"
    rss_soft: int = 0
    rss_hard: int = 0
    busyness: BusynessSettings = field(default_factory=BusynessSettings)


def settings_from_config(config: Config) -> tuple[CheaperSettings | None, list[str]]:
    """The cheaper settings (None: cheaper mode is off) and the warnings to log.

    Raises CheaperConfigError with uWSGI's line for what uWSGI refuses to start with.
    """
    minimum = config.cheaper
    if minimum == 0:
        return None, []
    maximum = config.processes
    if minimum >= maximum:
        raise CheaperConfigError("invalid cheaper value: must be lower than processes")
    warnings = []
    initial = config.cheaper_initial or minimum
    if initial < minimum:
        warnings.append(f"warning: invalid cheaper-initial value ({initial}), must be equal or "
                        f"higher than cheaper ({minimum}), using {minimum} as initial number of "
                        "workers")
        initial = minimum
    elif initial > maximum:
        warnings.append(f"warning: invalid cheaper-initial value ({initial}), must be lower or "
                        f"equal than worker count ({maximum}), using {maximum} as initial number "
                        "of workers")
        initial = maximum
    algo = config.cheaper_algo or "spare"
    if algo not in ALGORITHMS:
        warnings.append(UNKNOWN_ALGO)
        algo = "spare"
    soft, hard = config.cheaper_rss_limit_soft, config.cheaper_rss_limit_hard
    if soft and not config.memory_report:
        raise CheaperConfigError("enabling cheaper-rss-limit-soft requires enabling also "
                                 "memory-report")
    if hard and not soft:
        raise CheaperConfigError("enabling cheaper-rss-limit-hard requires setting also "
                                 "cheaper-rss-limit-soft")
    if hard and hard <= soft:
        raise CheaperConfigError("cheaper-rss-limit-hard value must be higher than "
                                 "cheaper-rss-limit-soft value")
    overload = config.cheaper_overload
    if overload == 0 and algo in ("spare", "busyness"):
        # uWSGI divides by it (spare's idle count, busyness's window) and dies of SIGFPE
        raise CheaperConfigError(f"cheaper-overload must be at least 1 with cheaper-algo {algo}")
    busyness = _busyness_settings(config)
    if algo == "busyness" and busyness.minimum >= busyness.maximum:
        raise CheaperConfigError("cheaper-busyness-min must be lower than cheaper-busyness-max")
    settings = CheaperSettings(
        minimum=minimum, maximum=maximum, initial=initial,
        step=max(1, config.cheaper_step),  # uWSGI's documented default; 0 behaves as 1
        overload=overload, idle=config.cheaper_idle, algo=algo,
        rss_soft=soft, rss_hard=hard, busyness=busyness,
    )
    return settings, warnings


def _busyness_settings(config: Config) -> BusynessSettings:
    default = BusynessSettings()
    # as uWSGI's plugin: 0 means "the default"
    return BusynessSettings(
        maximum=config.cheaper_busyness_max or default.maximum,
        minimum=config.cheaper_busyness_min or default.minimum,
        multiplier=config.cheaper_busyness_multiplier or default.multiplier,
        penalty=config.cheaper_busyness_penalty or default.penalty,
        verbose=config.cheaper_busyness_verbose,
        backlog_alert=config.cheaper_busyness_backlog_alert or default.backlog_alert,
        backlog_multiplier=(config.cheaper_busyness_backlog_multiplier
                            or default.backlog_multiplier),
        backlog_step=config.cheaper_busyness_backlog_step or default.backlog_step,
        backlog_nonzero=config.cheaper_busyness_backlog_nonzero or default.backlog_nonzero,
    )


# -- what the master sees, what it is told -------------------------------------------------------


@record(frozen=True)
class Slot:
    """One worker id. ``running``: a process holds it (possibly finishing after a cheap);
    ``cheaped``: the cheaper subsystem stopped it."""

    worker_id: int
    running: bool
    cheaped: bool = False
    busy: bool = False
    running_time: int = 0  # µs in requests, all processes of this slot so far
    spawned_at: float = 0.0  # monotonic; the oldest idle worker is cheaped first
    rss: int = 0

    @property
    def active(self) -> bool:
        return self.running and not self.cheaped

    @property
    def spawnable(self) -> bool:
        return self.cheaped and not self.running


@record(frozen=True)
class Snapshot:
    now: float  # monotonic seconds
    slots: tuple[Slot, ...]  # ids 1..processes
    backlog: int = 0  # the longest listen queue

    @property
    def active(self) -> list[Slot]:
        return [s for s in self.slots if s.active]

    @property
    def spawnable(self) -> int:
        return sum(1 for s in self.slots if s.spawnable)


@record(frozen=True)
class Verdict:
    """An algorithm's answer: > 0 spawn that many, < 0 cheap that many, 0 nothing."""

    workers: int = 0
    reason: str = ""
    notes: tuple[str, ...] = ()  # lines the algorithm logs as it decides (busyness)


@record(frozen=True)
class Decision:
    spawn: tuple[int, ...] = ()  # slot ids, lowest first
    cheap: tuple[int, ...] = ()  # worker ids, oldest idle first
    reason: str = ""
    notes: tuple[str, ...] = ()


class Algorithm:
    def decide(self, snapshot: Snapshot, can_spawn: bool) -> Verdict:
        """This cycle's answer; ``can_spawn`` is False while an RSS limit forbids spawning."""
        return Verdict()  # manual: only the operator's requests change the workers

    def settings_lines(self) -> list[str]:
        """What to log at start-up about its settings."""
        return []


def _workers(count: int) -> str:
    return f"{count} worker" + ("" if count == 1 else "s")


class Spare(Algorithm):
    def __init__(self, settings: CheaperSettings) -> None:
        self.settings = settings
        self.overload_count = 0
        self.idle_count = 0

    def decide(self, snapshot: Snapshot, can_spawn: bool) -> Verdict:
        settings = self.settings
        active = snapshot.active
        if any(not s.busy for s in active):
            self.overload_count = max(0, self.overload_count - 1)
        else:
            self.overload_count += 1
            self.idle_count = 0
        if can_spawn and self.overload_count > settings.overload:  # uWSGI 2.0: strictly more
            cycles = self.overload_count
            self.overload_count = 0
            count = min(snapshot.spawnable, settings.step)
            return Verdict(count, f"all {_workers(len(active))} busy for {cycles} cycles")
        if self.overload_count == 0:
            busy = sum(1 for s in active if s.busy)
            if len(active) - busy == 1:
                return Verdict()  # the stable state: exactly one spare worker
            self.idle_count += 1
            if len(active) > settings.minimum and self.idle_count % settings.overload == 0:
                return Verdict(-1, f"{len(active) - busy} of {_workers(len(active))} idle for "
                               f"{self.idle_count} cycles")
        return Verdict()


class Spare2(Algorithm):
    def __init__(self, settings: CheaperSettings) -> None:
        self.settings = settings
        self.idle_count = 0

    def decide(self, snapshot: Snapshot, can_spawn: bool) -> Verdict:
        settings = self.settings
        active = snapshot.active
        idle = sum(1 for s in active if not s.busy)
        if idle < settings.minimum:
            self.idle_count = 0
            if not can_spawn:
                return Verdict()
            count = min(settings.minimum - idle, settings.maximum - len(active), settings.step)
            return Verdict(count, f"{idle} idle, fewer than cheaper ({settings.minimum})")
        if idle == settings.minimum:
            self.idle_count = 0
            return Verdict()
        self.idle_count += 1
        if self.idle_count < settings.idle:
            return Verdict()
        cycles, self.idle_count = self.idle_count, 0
        return Verdict(-1, f"{idle} idle, more than cheaper ({settings.minimum}) for "
                       f"{cycles} cycles")


class Backlog(Algorithm):
    def __init__(self, settings: CheaperSettings) -> None:
        self.settings = settings

    def decide(self, snapshot: Snapshot, can_spawn: bool) -> Verdict:
        limit = self.settings.overload
        if can_spawn and snapshot.backlog > limit:
            count = min(snapshot.spawnable, self.settings.step)
            return Verdict(count, f"listen queue {snapshot.backlog}, above {limit}")
        if snapshot.backlog < limit and len(snapshot.active) > self.settings.minimum:
            return Verdict(-1, f"listen queue {snapshot.backlog}, below {limit}")
        return Verdict()


def make_algorithm(settings: CheaperSettings) -> Algorithm:
    if settings.algo == "busyness":
        from uzerg.processes.cheaper_busyness import Busyness

        return Busyness(settings)
    factories: dict[str, Callable[[CheaperSettings], Algorithm]] = {
        "spare": Spare, "spare2": Spare2, "backlog": Backlog, "manual": lambda _s: Algorithm(),
    }
    return factories[settings.algo](settings)


class CheaperPolicy:
    """uWSGI's uwsgi_calc_cheaper around an algorithm: the RSS limits first, then the
    operator's requests (fifo ``+``/``-``, SIGTTIN/SIGTTOU), then the algorithm."""

    def __init__(self, settings: CheaperSettings, algorithm: Algorithm | None = None) -> None:
        self.settings = settings
        self.algorithm = algorithm or make_algorithm(settings)
        self.requested = 0  # the operator's pending +N/-N

    def request(self, delta: int) -> None:
        self.requested += delta

    def cycle(self, snapshot: Snapshot) -> Decision:
        settings = self.settings
        active = snapshot.active
        wanted, reason, can_spawn = 0, "", True
        notes: tuple[str, ...] = ()
        if settings.rss_soft:
            total = sum(s.rss for s in active)
            if settings.rss_hard and len(active) > 1 and total >= settings.rss_hard:
                wanted, can_spawn = -1, False
                reason = (f"cheaper hard rss memory limit exceeded, cheap one of "
                          f"{len(active)} workers")
            elif total >= settings.rss_soft:
                can_spawn = False
        if self.requested:
            if can_spawn:
                wanted = self.requested
                reason = f"asked for {'+' if wanted > 0 else ''}{wanted}"
            self.requested = 0
        elif not wanted:
            verdict = self.algorithm.decide(snapshot, can_spawn)
            wanted, reason, notes = verdict.workers, verdict.reason, verdict.notes
            if wanted > 0 and not can_spawn:
                wanted = 0  # the algorithm ignored the RSS limit
        if wanted > 0:
            free = [s.worker_id for s in snapshot.slots if s.spawnable]
            return Decision(spawn=tuple(free[:wanted]), reason=reason, notes=notes)
        if wanted < 0:
            idle = sorted((s for s in active if not s.busy),
                          key=lambda s: (s.spawned_at, s.worker_id))
            room = max(0, len(active) - 1)  # never the last worker
            chosen = [s.worker_id for s in idle[: min(-wanted, room)]]
            if room:  # as uWSGI: what finds no idle worker now is tried again next cycle
                self.requested -= -wanted - len(chosen)
            return Decision(cheap=tuple(chosen), reason=reason, notes=notes)
        return Decision(notes=notes)
