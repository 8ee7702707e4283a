"""The cheaper subsystem's decisions (uzerg.processes.cheaper, cheaper_busyness): state in,
decision out, cycle by cycle, against uWSGI 2.0.31's master_utils.c and cheaper_busyness.c."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from uzerg.config.load import load_config
from uzerg.processes import prometheus
from uzerg.processes.cheaper import (
    Backlog,
    BusynessSettings,
    CheaperConfigError,
    CheaperPolicy,
    CheaperSettings,
    Slot,
    Snapshot,
    Spare,
    Spare2,
    settings_from_config,
)
from uzerg.processes.cheaper_busyness import Busyness
from uzerg.processes.scoreboard import Scoreboard
from uzerg.processes.stats import stats_document


def snapshot(states: str, now: float = 0.0, backlog: int = 0,
             running_time: dict[int, int] | None = None) -> Snapshot:
    """One letter per slot: B busy, I idle, C cheaped (spawnable), F cheaped and finishing,
    D dead (waiting for a respawn)."""
    slots = []
    for index, state in enumerate(states):
        wid = index + 1
        slots.append(Slot(
            worker_id=wid, running=state in "BIF", cheaped=state in "CF", busy=state == "B",
            running_time=(running_time or {}).get(wid, 0), spawned_at=float(wid),
        ))
    return Snapshot(now, tuple(slots), backlog)


def settings(**values: object) -> CheaperSettings:
    base: dict[str, object] = {"minimum": 1, "maximum": 4, "initial": 1}
    base.update(values)
    return CheaperSettings(**base)  # type: ignore[arg-type]


def run(algorithm: object, states: list[str], can_spawn: bool = True) -> list[int]:
    return [algorithm.decide(snapshot(s, now=float(i)), can_spawn).workers  # type: ignore[attr-defined]
            for i, s in enumerate(states)]


# -- spare -----------------------------------------------------------------------------------------

def test_spare_spawns_after_more_than_overload_busy_cycles() -> None:
    spare = Spare(settings(overload=3))
    # uWSGI 2.0.31: overload_count > cheaper-overload, so the 4th busy cycle in a row spawns
    assert run(spare, ["BCCC"] * 4) == [0, 0, 0, 1]
    assert spare.overload_count == 0  # reset after spawning
    assert run(spare, ["BBCC"] * 4) == [0, 0, 0, 1]


def test_spare_an_idle_cycle_takes_one_overload_back() -> None:
    spare = Spare(settings(overload=2))
    assert run(spare, ["BCCC", "BCCC", "BICC", "BBCC", "BBCC"]) == [0, 0, 0, 0, 1]


def test_spare_step_and_the_maximum() -> None:
    assert run(Spare(settings(overload=1, step=2)), ["BCCC", "BCCC"]) == [0, 2]
    assert run(Spare(settings(overload=1, step=5)), ["BCCC", "BCCC"]) == [0, 3]
    assert run(Spare(settings(overload=1)), ["BBBB", "BBBB"]) == [0, 0]  # nothing to spawn
    assert run(Spare(settings(overload=1)), ["BCCC", "BCCC"], can_spawn=False) == [0, 0]


def test_spare_cheaps_one_every_overload_idle_cycles_down_to_cheaper() -> None:
    spare = Spare(settings(overload=3))
    assert run(spare, ["IIII"] * 6) == [0, 0, -1, 0, 0, -1]
    verdict = Spare(settings(overload=1)).decide(snapshot("IIIB"), True)
    assert verdict.workers == -1 and verdict.reason == "3 of 4 workers idle for 1 cycles"
    # at the minimum, and in the stable state (exactly one idle worker), nothing goes
    assert run(Spare(settings(overload=1)), ["ICCC"] * 3) == [0, 0, 0]
    assert run(Spare(settings(overload=1)), ["BBIC"] * 3) == [0, 0, 0]


def test_spare_busy_cycle_restarts_the_idle_count() -> None:
    spare = Spare(settings(overload=2))
    # idle 1, then all busy (idle count back to 0, overload 1), idle (overload back to 0,
    # idle 1), idle (idle 2: a multiple of cheaper-overload)
    assert run(spare, ["IIIC", "BBBC", "IIIC", "IIIC"]) == [0, 0, 0, -1]


# -- spare2 ----------------------------------------------------------------------------------------

def test_spare2_keeps_cheaper_idle_workers() -> None:
    spare2 = Spare2(settings(minimum=2, maximum=6, step=1, idle=3))
    assert spare2.decide(snapshot("BBCCCC"), True).workers == 1  # 0 idle < 2, step 1
    wide = Spare2(settings(minimum=2, maximum=6, step=4, idle=3))
    verdict = wide.decide(snapshot("BBCCCC"), True)
    assert verdict.workers == 2 and verdict.reason == "0 idle, fewer than cheaper (2)"
    assert wide.decide(snapshot("BBBBBB"), True).workers == 0  # no slot left
    assert wide.decide(snapshot("BBCCCC"), False).workers == 0


def test_spare2_cheaps_after_cheaper_idle_cycles_with_too_many_idle() -> None:
    spare2 = Spare2(settings(minimum=1, maximum=4, idle=3))
    assert run(spare2, ["IIIC"] * 7) == [0, 0, -1, 0, 0, -1, 0]
    spare2 = Spare2(settings(minimum=1, maximum=4, idle=3))
    # exactly cheaper idle workers resets the count
    assert run(spare2, ["IIIC", "IIIC", "BBIC", "IIIC", "IIIC", "IIIC"]) == [0, 0, 0, 0, 0, -1]


# -- backlog ---------------------------------------------------------------------------------------

def test_backlog_follows_the_listen_queue() -> None:
    backlog = Backlog(settings(overload=3, step=2))
    assert backlog.decide(snapshot("BCCC", backlog=4), True).workers == 2
    assert backlog.decide(snapshot("BCCC", backlog=4), False).workers == 0
    assert backlog.decide(snapshot("BBBB", backlog=9), True).workers == 0
    assert backlog.decide(snapshot("BBCC", backlog=3), True).workers == 0  # equal: steady
    verdict = backlog.decide(snapshot("BBCC", backlog=2), True)
    assert verdict.workers == -1 and verdict.reason == "listen queue 2, below 3"
    assert backlog.decide(snapshot("ICCC", backlog=0), True).workers == 0  # at the minimum


# -- busyness --------------------------------------------------------------------------------------

def busy_settings(**values: object) -> CheaperSettings:
    busyness = BusynessSettings(**{"multiplier": 2, "penalty": 2, **values})  # type: ignore[arg-type]
    return settings(algo="busyness", overload=2, busyness=busyness)


def test_busyness_spawns_when_a_window_is_busier_than_max() -> None:
    algo = Busyness(busy_settings())
    assert algo.decide(snapshot("BCCC", now=100.0), True).workers == 0  # starts the window
    assert algo.decide(snapshot("BCCC", now=101.0), True).workers == 0
    # 1.6 s of requests in a 2 s window: 80% > 50%
    verdict = algo.decide(snapshot("ICCC", now=102.0, running_time={1: 1_600_000}), True)
    assert verdict.workers == 1
    assert verdict.reason == "2s average busyness is at 80%"
    assert verdict.notes[-1] == ("[busyness] 2s average busyness is at 80%, will spawn 1 new "
                                 "worker(s)")


def test_busyness_a_long_request_counts_as_fully_busy() -> None:
    algo = Busyness(busy_settings(verbose=True))
    algo.decide(snapshot("BCCC", now=0.0), True)
    algo.decide(snapshot("BCCC", now=1.0), True)
    verdict = algo.decide(snapshot("BCCC", now=2.0), True)  # no request ended: 0 µs counted
    assert verdict.workers == 1
    assert any("marking as 100% busy" in note for note in verdict.notes)


def test_busyness_cheaps_after_overload_times_multiplier_idle_seconds() -> None:
    algo = Busyness(busy_settings())
    times = {1: 0, 2: 0}
    decisions = [algo.decide(snapshot("IICC", now=float(t), running_time=times), True).workers
                 for t in range(0, 6)]
    # next_cheap = start + 2 s x 2: the window ending at t=4 cheaps
    assert decisions == [0, 0, 0, 0, -1, 0]
    assert algo.last_action == 2


def test_busyness_respawn_too_fast_raises_the_multiplier() -> None:
    algo = Busyness(busy_settings())
    for t in range(5):
        algo.decide(snapshot("IICC", now=float(t)), True)
    assert algo.last_cheaped is not None
    verdict = algo.decide(snapshot("BCCC", now=6.0, running_time={1: 2_000_000}), True)
    assert verdict.workers == 1 and algo.multiplier == 4
    assert "[busyness] worker(s) respawned to fast, increasing cheaper multiplier to 4 (+2)" \
        in verdict.notes


def test_busyness_emergency_workers_on_backlog() -> None:
    algo = Busyness(busy_settings(backlog_alert=5, backlog_step=2))
    algo.decide(snapshot("BCCC", now=0.0), True)
    verdict = algo.decide(snapshot("BCCC", now=0.5, backlog=6), True)
    assert verdict.workers == 2 and algo.emergency == 2
    assert verdict.notes[-1] == ("[busyness] 6 requests in listen queue, spawning 2 emergency "
                                 "worker(s) (2)!")
    # a queue that stays non-empty spawns after backlog-nonzero seconds
    algo = Busyness(busy_settings(backlog_nonzero=3))
    assert [algo.decide(snapshot("BCCC", now=t, backlog=1), True).workers
            for t in (0.0, 0.5, 1.5, 3.6)] == [0, 0, 0, 1]


def test_busyness_between_min_and_max_delays_the_cheap() -> None:
    algo = Busyness(busy_settings(minimum=25, maximum=50))
    algo.decide(snapshot("IICC", now=0.0), True)
    before = algo.next_cheap
    # 40% busy: not idle, the cheap timer moves by one window
    algo.decide(snapshot("IICC", now=2.0, running_time={1: 800_000, 2: 800_000}), True)
    assert algo.next_cheap == before + 2_000_000 and algo.tolerance == 1


# -- the policy around the algorithm ---------------------------------------------------------------

def test_policy_spawns_lowest_slots_and_cheaps_the_oldest_idle() -> None:
    policy = CheaperPolicy(settings(overload=1, step=2))
    policy.cycle(snapshot("BCFC"))
    decision = policy.cycle(snapshot("BCFC"))
    assert decision.spawn == (2, 4)  # 3 is still finishing its last request
    policy = CheaperPolicy(settings(overload=1))
    slots = (Slot(1, True, spawned_at=9.0), Slot(2, True, spawned_at=3.0),
             Slot(3, True, busy=True, spawned_at=1.0), Slot(4, True, spawned_at=5.0))
    decision = policy.cycle(Snapshot(0.0, slots))
    assert decision.cheap == (2,)


def test_policy_operator_requests_come_first() -> None:
    policy = CheaperPolicy(settings(algo="manual"))
    assert policy.cycle(snapshot("ICCC")).spawn == ()
    policy.request(+1)
    policy.request(+1)
    decision = policy.cycle(snapshot("ICCC"))
    assert decision.spawn == (2, 3) and decision.reason == "asked for +2"
    policy.request(-1)
    assert policy.cycle(snapshot("IIIC")).cheap == (1,)
    policy.request(-1)
    assert policy.cycle(snapshot("ICCC")).cheap == ()  # never the last worker
    assert policy.requested == 0
    policy.request(-1)
    assert policy.cycle(snapshot("BBCC")).cheap == ()  # all busy: tried again next cycle
    assert policy.requested == -1
    assert policy.cycle(snapshot("BICC")).cheap == (2,)


def test_policy_rss_limits() -> None:
    soft = settings(overload=1, rss_soft=100, rss_hard=200)
    policy = CheaperPolicy(soft)

    def with_rss(states: str, rss: int) -> Snapshot:
        base = snapshot(states)
        return Snapshot(0.0, tuple(Slot(s.worker_id, s.running, s.cheaped, s.busy,
                                        spawned_at=s.spawned_at, rss=rss) for s in base.slots))

    assert policy.cycle(with_rss("BBCC", 60)).spawn == ()
    assert policy.cycle(with_rss("BBCC", 60)).spawn == ()  # 120 >= soft: no spawn
    policy.request(+1)
    assert policy.cycle(with_rss("BBCC", 60)).spawn == ()  # not even asked for
    decision = policy.cycle(with_rss("IIBC", 70))  # 210 >= hard
    assert decision.cheap == (1,)
    assert decision.reason == "cheaper hard rss memory limit exceeded, cheap one of 3 workers"


# -- settings and uWSGI's checks -------------------------------------------------------------------

def config(*argv: str) -> object:
    return load_config(["--http-socket", ":0", *argv], {})


def test_settings_defaults_and_off() -> None:
    assert settings_from_config(config("--processes", "4")) == (None, [])
    got, warnings = settings_from_config(config("--processes", "4", "--cheaper", "1"))
    assert warnings == [] and got is not None
    assert (got.minimum, got.maximum, got.initial, got.step, got.overload, got.idle,
            got.algo) == (1, 4, 1, 1, 3, 10, "spare")
    assert got.busyness == BusynessSettings()


@pytest.mark.parametrize(("argv", "message"), [
    (("--processes", "2", "--cheaper", "2"), "invalid cheaper value: must be lower than processes"),
    (("--processes", "4", "--cheaper", "1", "--cheaper-rss-limit-soft", "1000"),
     "enabling cheaper-rss-limit-soft requires enabling also memory-report"),
    (("--processes", "4", "--cheaper", "1", "--cheaper-rss-limit-hard", "1000"),
     "enabling cheaper-rss-limit-hard requires setting also cheaper-rss-limit-soft"),
    (("--processes", "4", "--cheaper", "1", "--memory-report", "--cheaper-rss-limit-soft", "9",
      "--cheaper-rss-limit-hard", "9"),
     "cheaper-rss-limit-hard value must be higher than cheaper-rss-limit-soft value"),
    (("--processes", "4", "--cheaper", "1", "--cheaper-overload", "0"),
     "cheaper-overload must be at least 1 with cheaper-algo spare"),
    (("--processes", "4", "--cheaper", "1", "--cheaper-algo", "busyness",
      "--cheaper-busyness-min", "60"),
     "cheaper-busyness-min must be lower than cheaper-busyness-max"),
])
def test_settings_errors(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(CheaperConfigError) as info:
        settings_from_config(config(*argv))
    assert str(info.value) == message


def test_settings_warnings_as_uwsgi() -> None:
    got, warnings = settings_from_config(config("--processes", "4", "--cheaper", "2",
                                                "--cheaper-initial", "9", "--cheaper-algo", "x"))
    assert got is not None and got.initial == 4 and got.algo == "spare"
    assert warnings == [
        "warning: invalid cheaper-initial value (9), must be lower or equal than worker count "
        "(4), using 4 as initial number of workers",
        "unable to find requested cheaper algorithm, falling back to spare",
    ]
    got, warnings = settings_from_config(config("--processes", "4", "--cheaper", "2",
                                                "--cheaper-initial", "1", "--cheaper-step", "0"))
    assert got is not None and got.initial == 2 and got.step == 1
    assert warnings[0].startswith("warning: invalid cheaper-initial value (1), must be equal")


def test_busyness_zero_means_default_as_uwsgi() -> None:
    got, _ = settings_from_config(config("--processes", "4", "--cheaper", "1", "--cheaper-algo",
                                         "busyness", "--cheaper-busyness-max", "0",
                                         "--cheaper-busyness-multiplier", "7"))
    assert got is not None and got.busyness.maximum == 50 and got.busyness.multiplier == 7


# -- the stats document ----------------------------------------------------------------------------

def test_stats_show_cheaped_slots_as_uwsgi() -> None:
    scoreboard = Scoreboard(8, 1)
    try:
        live = SimpleNamespace(worker_id=2, pid=4242, spawned_at=1.0e9, respawn_count=0,
                               harakiri_count=0)
        cheap = [SimpleNamespace(worker_id=1, pid=4000, spawned_at=1.0e9, respawn_count=1,
                                 harakiri_count=0),
                 SimpleNamespace(worker_id=3, pid=0, spawned_at=0.0, respawn_count=0,
                                 harakiri_count=0)]
        scoreboard.worker(2).accepting = 1
        doc = stats_document(scoreboard=scoreboard, workers=[live], listeners=[], cheap=cheap)
    finally:
        scoreboard.close()
    workers = doc["workers"]
    assert [(w["id"], w["pid"], w["status"]) for w in workers] == [
        (1, 0, "cheap"), (2, 4242, "idle"), (3, 0, "cheap")]
    assert workers[2]["last_spawn"] == 0 and workers[0]["rss"] == 0
    # what uwsgitop reads of every worker is there
    for worker in workers:
        for key in ("id", "pid", "requests", "exceptions", "status", "avg_rt", "rss", "vsz",
                    "tx", "respawn_count", "harakiri_count", "running_time", "last_spawn"):
            assert key in worker


def test_prometheus_counts_cheap_workers_and_a_pause_ignores_them() -> None:
    doc = {"workers": [{"id": 1, "status": "pause"}, {"id": 2, "status": "cheap"}],
           "sockets": []}
    text = prometheus.render(doc)
    assert 'uwsgi_worker_cheap{worker_id="2"} 1' in text
    assert "uzerg_paused 1" in text
