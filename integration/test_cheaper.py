"""The cheaper subsystem on running instances (issue 9 §1): a load ramp grows the workers from
cheaper to processes and they shrink back when it stops, with no failed request; spare2,
backlog and busyness each decide once for real; cheaped workers in the stats and uwsgitop;
SIGTTIN/SIGTTOU, reload, max-requests respawns and a zerg in cheaper mode."""

from __future__ import annotations

import re
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from support.activator import NotifyListener
from support.clients import ClientLoop, connect_to, http_get, read_stats
from support.peers import read_uwsgitop_screen, run_client
from support.processes import Instance, InstanceStarter, start_zerg, wait_until

APP = '''
import os, time

def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        release = os.path.join(os.path.dirname(__file__), "release")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not os.path.exists(release):
            time.sleep(0.01)
    else:
        time.sleep(0.02)  # 20 ms per request
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "app.py"
    path.write_text(APP)
    return path


def active(doc: dict[str, object]) -> int:
    return sum(1 for w in doc["workers"] if w["status"] != "cheap")  # type: ignore[union-attr]


def wait_active(stats: str, count: int, timeout: float) -> float:
    """Seconds until exactly ``count`` workers are not cheap."""
    started = time.monotonic()
    wait_until(lambda: active(read_stats(stats)) == count, timeout, f"{count} active workers")
    return time.monotonic() - started


def start(uzerg: InstanceStarter, tmp_path: Path, app: Path, *args: str,
          workers: int = 1, env: dict[str, str] | None = None) -> tuple[Instance, str]:
    stats = str(tmp_path / "stats.sock")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app),
                        "--stats", stats, "--disable-logging", *args], wait_workers=workers,
                       env=env)
    inst.wait_for_log("Stats server enabled")
    return inst, stats


def test_load_ramp_grows_to_processes_and_shrinks_back(
    uzerg: InstanceStarter, tmp_path: Path, app: Path
) -> None:
    inst, stats = start(uzerg, tmp_path, app, "--processes", "4", "--cheaper", "1",
                        "--cheaper-overload", "1")
    assert active(read_stats(stats)) == 1
    loops: list[ClientLoop] = []
    started = time.monotonic()
    try:
        for clients in (1, 1, 2, 4):  # 1, 2, 4, then 8 concurrent connections
            loops.append(ClientLoop(inst.address(0), concurrency=clients))
            if active(read_stats(stats)) < 4:
                time.sleep(0.5)  # the ramp's pace, not a synchronisation
        wait_active(stats, 4, 40)
        grow = time.monotonic() - started
        assert active(read_stats(stats)) == 4  # never more than processes
    finally:
        for loop in loops:
            loop.stop()
    shrink = wait_active(stats, 1, 30)
    answered = sum(loop.count for loop in loops)
    failures = [error for loop in loops for error in loop.errors]
    print(f"\ncheaper load ramp: 1 -> 4 workers in {grow:.1f} s, 4 -> 1 in {shrink:.1f} s "
          f"after the load stopped; {answered} requests, {len(failures)} failed")
    assert failures == [] and answered > 100
    log = inst.log_text()
    assert "cheaper (spare): all 1 worker busy for 2 cycles: spawning 1 worker (2)" in log
    assert re.search(r"cheaper \(spare\): \d of \d workers idle for \d+ cycles: cheaping worker",
                     log)
    # the stats show a slot cheap at once; its process logs "cheaped." once it has exited
    inst.wait_for_log("cheaped.", count=3)
    wait_until(lambda: len(inst.worker_pids()) == 1, 10, "the cheaped processes to exit")


def test_spare2_keeps_one_idle_worker(uzerg: InstanceStarter, tmp_path: Path, app: Path) -> None:
    inst, stats = start(uzerg, tmp_path, app, "--processes", "3", "--cheaper", "1",
                        "--cheaper-algo", "spare2", "--cheaper-idle", "2")
    results: list[tuple[int, bytes]] = []
    slow = threading.Thread(target=lambda: results.append(http_get(inst.address(0), "/slow")))
    slow.start()
    try:
        inst.wait_for_log("cheaper (spare2): 0 idle, fewer than cheaper (1): spawning 1 worker (2)")
        wait_active(stats, 2, 10)
        assert http_get(inst.address(0))[0] == 200  # the new worker serves
    finally:
        (tmp_path / "release").touch()
        slow.join(20)
    assert results and results[0][0] == 200
    inst.wait_for_log("cheaper (spare2): 2 idle, more than cheaper (1) for 2 cycles: cheaping")
    wait_active(stats, 1, 10)


def test_backlog_spawns_on_the_listen_queue(uzerg: InstanceStarter, tmp_path: Path,
                                            app: Path) -> None:
    inst, stats = start(uzerg, tmp_path, app, "--processes", "2", "--cheaper", "1",
                        "--cheaper-algo", "backlog", "--cheaper-overload", "2")
    address = inst.address(0)
    results: list[tuple[int, bytes]] = []
    slow = threading.Thread(target=lambda: results.append(http_get(address, "/slow")))
    slow.start()
    wait_until(lambda: read_stats(stats)["workers"][0]["status"] == "busy", 10, "a busy worker")
    queued = []
    try:
        for _ in range(4):  # wait in the accept queue: the only worker is busy
            sock = connect_to(address, 10)
            sock.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
            queued.append(sock)
        inst.wait_for_log("cheaper (backlog): listen queue ")
        assert re.search(r"listen queue [3-4], above 2: spawning 1 worker \(2\)", inst.log_text())
        for sock in queued:  # the spawned worker answers them while worker 1 is still busy
            sock.settimeout(10)
            assert b" 200 " in sock.recv(65536).split(b"\r\n", 1)[0]
    finally:
        (tmp_path / "release").touch()
        slow.join(20)
        for sock in queued:
            sock.close()
    assert results and results[0][0] == 200
    inst.wait_for_log("cheaper (backlog): listen queue 0, below 2: cheaping worker")
    wait_active(stats, 1, 10)


def test_busyness_spawns_and_cheaps(uzerg: InstanceStarter, tmp_path: Path, app: Path) -> None:
    inst, stats = start(uzerg, tmp_path, app, "--processes", "2", "--cheaper", "1",
                        "--cheaper-algo", "busyness", "--cheaper-overload", "1",
                        "--cheaper-busyness-multiplier", "1", "--cheaper-busyness-verbose")
    inst.wait_for_log("[busyness] settings: min=25%, max=50%, overload=1, multiplier=1, "
                      "respawn penalty=2")
    results: list[tuple[int, bytes]] = []
    slow = threading.Thread(target=lambda: results.append(http_get(inst.address(0), "/slow")))
    slow.start()
    try:
        inst.wait_for_log("[busyness] 1s average busyness is at 100%, will spawn 1 new worker(s)")
        inst.wait_for_log("cheaper (busyness): 1s average busyness is at 100%: spawning 1 worker")
        wait_active(stats, 2, 10)
    finally:
        (tmp_path / "release").touch()
        slow.join(20)
    assert results and results[0][0] == 200
    inst.wait_for_log("cheap one of 2 running workers", timeout=20)
    wait_active(stats, 1, 10)


@pytest.mark.interop
def test_stats_and_uwsgitop_show_cheaped_workers(uzerg: InstanceStarter, tmp_path: Path,
                                                 app: Path) -> None:
    _inst, stats = start(uzerg, tmp_path, app, "--processes", "3", "--cheaper", "1")
    doc = read_stats(stats)
    assert [(w["id"], w["status"]) for w in doc["workers"]] == [
        (1, "idle"), (2, "cheap"), (3, "cheap")]
    assert [w["pid"] for w in doc["workers"]][1:] == [0, 0]
    uwsgitop = shutil.which("uwsgitop")
    if uwsgitop is None:
        pytest.skip("uwsgitop is not installed")
    screen = read_uwsgitop_screen(uwsgitop, stats, lambda text: text.count(b"cheap") >= 2,
                                  uzerg.pids)
    assert screen.count(b"cheap") >= 2, screen[-2000:]


def test_ttin_ttou_and_fifo_within_cheaper_and_processes(
    uzerg: InstanceStarter, tmp_path: Path, app: Path
) -> None:
    fifo = tmp_path / "fifo"
    inst, stats = start(uzerg, tmp_path, app, "--processes", "3", "--cheaper", "1",
                        "--cheaper-algo", "manual", "--master-fifo", str(fifo))
    inst.send(signal.SIGTTIN)
    inst.wait_for_log("cheaper (manual): asked for +1: spawning 1 worker (2)")
    wait_active(stats, 2, 10)
    with open(fifo, "w") as control:
        control.write("++")
    wait_active(stats, 3, 10)  # one more: the other finds no cheaped slot
    inst.send(signal.SIGTTOU)
    inst.wait_for_log("cheaper (manual): asked for -1: cheaping worker 1")
    inst.wait_for_log("uWSGI worker 1 cheaped.")
    assert [w["status"] for w in read_stats(stats)["workers"]][0] == "cheap"
    assert http_get(inst.address(0))[0] == 200


def test_workers_cheaped_while_requests_arrive_lose_none(
    uzerg: InstanceStarter, tmp_path: Path, app: Path
) -> None:
    inst, stats = start(uzerg, tmp_path, app, "--processes", "4", "--cheaper", "1",
                        "--cheaper-initial", "4", "--cheaper-algo", "manual", workers=4)
    # one client: a worker is only cheaped while idle, and more clients than workers would
    # leave none idle at the moment the master looks
    load = ClientLoop(inst.address(0), concurrency=1)
    try:
        for remaining in (3, 2, 1):  # cheaped one by one while requests keep arriving
            inst.send(signal.SIGTTOU)
            wait_until(lambda n=remaining: active(read_stats(stats)) == n, 10,
                       f"{remaining} active workers")
        load.wait_for_more(20, what="answers from the last worker")
    finally:
        load.stop()
    assert load.errors == []
    inst.wait_for_log("cheaped.", count=3)  # each finished its request and exited


def test_reload_and_recycled_workers_keep_cheaper_mode(
    uzerg: InstanceStarter, tmp_path: Path, app: Path
) -> None:
    inst, stats = start(uzerg, tmp_path, app, "--processes", "3", "--cheaper", "1",
                        "--cheaper-initial", "2", "--max-requests", "2", workers=2)
    assert active(read_stats(stats)) == 2
    for _ in range(6):  # max-requests respawns in the active slots, never in a cheaped one
        assert http_get(inst.address(0))[0] == 200
    inst.wait_for_log("Respawned uWSGI worker")
    doc = read_stats(stats)
    assert [w["status"] for w in doc["workers"]][2] == "cheap" and active(doc) == 2
    mark = inst.mark()
    inst.send(signal.SIGHUP)
    inst.wait_for_log("gracefully (RE)spawned uWSGI master process", since=mark)
    inst.wait_for_log("Stats server enabled", since=mark)
    doc = read_stats(stats)
    assert active(doc) == 2 and doc["workers"][2]["status"] == "cheap"
    assert http_get(inst.address(0))[0] == 200


def test_a_zerg_in_cheaper_mode_grows_and_shrinks(uzerg: InstanceStarter, tmp_path: Path,
                                                  app: Path) -> None:
    pool = uzerg.start(["--master", "--zergpool", f"{tmp_path}/pool:127.0.0.1:0"],
                       wait_workers=None)
    bound = pool.wait_for_log("zergpool ")
    match = re.search(r"bound to TCP socket (\S+) ", bound)
    assert match, bound
    address = match.group(1)
    stats = str(tmp_path / "zstats.sock")
    zerg = start_zerg(uzerg, app, f"{tmp_path}/pool", extra=(
        "--processes", "2", "--cheaper", "1", "--cheaper-overload", "1", "--stats", stats))
    load = ClientLoop(address, protocol="uwsgi", concurrency=4)
    try:
        wait_active(stats, 2, 30)
    finally:
        load.stop()
    wait_active(stats, 1, 30)
    assert load.errors == [] and load.count > 50
    assert "cheaper (spare): all 1 worker busy" in zerg.log_text()


def test_systemd_readiness_counts_the_workers_cheaper_runs(uzerg: InstanceStarter,
                                                            tmp_path: Path, app: Path) -> None:
    notify = NotifyListener(str(tmp_path / "notify.sock"))
    try:
        inst, stats = start(uzerg, tmp_path, app, "--processes", "3", "--cheaper", "1",
                            "--cheaper-algo", "manual", env={"NOTIFY_SOCKET": notify.address})
        messages = notify.wait_for("READY")
        assert messages[-1]["STATUS"] == "uzerg is ready: 1 worker accepting"
        inst.send(signal.SIGTTIN)
        wait_active(stats, 2, 10)
        notify.wait_for("STATUS", count=2)
        assert notify.messages[-1] == {"STATUS": "uzerg is ready: 2 workers accepting"}
    finally:
        notify.close()


@pytest.mark.interop
@pytest.mark.parametrize("args", [
    ("--processes", "4", "--cheaper", "4"),
    ("--processes", "4", "--cheaper", "1", "--cheaper-rss-limit-soft", "1000"),
    ("--processes", "4", "--cheaper", "1", "--cheaper-rss-limit-hard", "1000"),
    ("--processes", "4", "--cheaper", "1", "--memory-report", "--cheaper-rss-limit-soft",
     "1000", "--cheaper-rss-limit-hard", "900"),
])
def test_bad_cheaper_settings_fail_with_uwsgis_line(uzerg: InstanceStarter, app: Path,
                                                    args: tuple[str, ...]) -> None:
    argv = ["--master", "--http-socket", "127.0.0.1:0", "--wsgi-file", str(app), *args]
    inst = uzerg.start(argv, wait_workers=None)
    assert inst.wait_exit() == 1
    line = inst.log_text().strip().splitlines()[-1]
    assert "cheaper" in line and "Traceback" not in inst.log_text()
    if shutil.which("uwsgi") is None:
        pytest.skip("the uwsgi binary is not installed")
    real = run_client(["uwsgi", *argv])
    assert real.returncode == 1
    assert (real.stdout + real.stderr).strip().splitlines()[-1] == line


def test_idle_cheap_mode_pauses_the_cheaper_and_wakes_cheaper_workers(
    uzerg: InstanceStarter, tmp_path: Path, app: Path
) -> None:
    # uWSGI: no cheaper cycle while cheap (master.c), and a connection respawns `cheaper`
    # workers, not cheaper-initial nor processes (master_events.c)
    inst, stats = start(uzerg, tmp_path, app, "--processes", "3", "--cheaper", "1",
                        "--cheaper-initial", "2", "--idle", "1", workers=2)
    address = inst.address(0)
    assert http_get(address)[0] == 200
    inst.wait_for_log("cheap mode enabled: waiting for socket connection...", timeout=15)
    wait_until(lambda: not inst.worker_pids(), 15, "no workers")
    # several cheaper cycles go by: the spare algorithm (fewer than cheaper) must not spawn
    watch_until = time.monotonic() + 2.5
    while time.monotonic() < watch_until:
        doc = read_stats(stats)
        assert [w["status"] for w in doc["workers"]] == ["cheap"] * 3, doc["workers"]
        assert not inst.worker_pids()
        time.sleep(0.1)
    answers = [http_get(address) for _ in range(3)]  # the first waits while worker 1 starts
    assert [status for status, _ in answers] == [200] * 3
    assert len(inst.worker_pids(1)) == 1
    doc = read_stats(stats)
    assert [w["status"] for w in doc["workers"]][1:] == ["cheap", "cheap"], doc["workers"]
    assert active(doc) == 1
