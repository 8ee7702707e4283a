"""A warm standby zerg (``start-paused``): attached to its pool, app loaded, workers forked,
serving nothing until resumed by the master fifo's ``p`` or SIGTSTP; then it serves at once.
The uWSGI documentation's "zerg as tester": the main instance is paused while the standby
takes the load, then resumed, and no request is lost."""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path

import pytest
from support.clients import ClientLoop, answering_pid, get, read_stats
from support.processes import Instance, InstanceStarter, start_zerg, wait_until, write_app

pytestmark = pytest.mark.timeout(90)

BOUND = re.compile(r"zergpool \S+ bound to TCP socket (\S+) \(fd: \d+\)")


def start_pool(uzerg: InstanceStarter, tmp_path: Path) -> tuple[str, str]:
    """A zergpool holding one TCP socket; (pool address, TCP address)."""
    pool_address = str(tmp_path / "p.pool")
    pool = uzerg.start(["--master", "--zergpool", f"{pool_address}:127.0.0.1:0"],
                       wait_workers=None)
    pool.wait_for_log("spawned uWSGI master process")
    match = BOUND.search(pool.log_text())
    assert match is not None, pool.log_text()
    return pool_address, match.group(1)


def start_standby(uzerg: InstanceStarter, app: Path, pool_address: str, fifo: Path,
                  stats: str) -> Instance:
    standby = uzerg.start(["--master", "--processes", "2", "--wsgi-file", str(app),
                           "--zerg", pool_address, "--start-paused", "--master-fifo", str(fifo),
                           "--stats", stats], wait_workers=2)
    standby.wait_for_log("warm standby: workers start paused")
    standby.wait_for_log("suspended ***", count=2)
    return standby


def resume(standby: Instance, fifo: Path, how: str) -> None:
    if how == "fifo":
        with open(fifo, "w") as writer:
            writer.write("p")
    else:
        standby.send(signal.SIGTSTP)


@pytest.mark.parametrize("how", ["fifo", "signal"])
def test_a_standby_serves_nothing_while_paused_and_every_request_once_resumed(
    uzerg: InstanceStarter, tmp_path: Path, how: str
) -> None:
    app = write_app(tmp_path / "app.py", body="standby")
    pool_address, tcp = start_pool(uzerg, tmp_path)
    stats = str(tmp_path / "stats.sock")
    fifo = tmp_path / "standby.fifo"
    standby = start_standby(uzerg, app, pool_address, fifo, stats)
    document = read_stats(stats)
    assert [w["accepting"] for w in document["workers"]] == [0, 0]
    assert {w["status"] for w in document["workers"]} == {"pause"}

    answers: list[str] = []
    failures: list[str] = []

    def ask() -> None:
        try:
            answers.append(get(tcp, "uwsgi", timeout=30))
        except (OSError, AssertionError) as exc:
            failures.append(repr(exc))

    clients = [threading.Thread(target=ask) for _ in range(4)]
    for client in clients:
        client.start()
    # the four connections wait in the pool's queue: the standby holds it and accepts nothing
    wait_until(lambda: read_stats(stats)["listen_queue"] == 4, 10, "four queued connections")
    assert not answers and not failures
    resume(standby, fifo, how)
    standby.wait_for_log("resumed ***", count=2)
    for client in clients:
        client.join(30)
    assert not failures
    workers = set(standby.worker_pids(2))
    assert len(answers) == 4
    assert {int(body.rsplit(" ", 1)[1]) for body in answers} <= workers
    assert answering_pid(tcp) in workers


def test_the_main_zerg_pauses_while_the_standby_takes_the_load_no_request_lost(
    uzerg: InstanceStarter, tmp_path: Path
) -> None:
    pool_address, tcp = start_pool(uzerg, tmp_path)
    main = start_zerg(uzerg, write_app(tmp_path / "main_app.py", body="main"), pool_address,
                      workers=2, extra=("--master",))
    (tmp_path / "standby").mkdir()
    standby_app = write_app(tmp_path / "standby" / "app.py", body="standby")
    fifo = tmp_path / "standby.fifo"
    standby = start_standby(uzerg, standby_app, pool_address, fifo, str(tmp_path / "s.sock"))
    main_workers, standby_workers = set(main.worker_pids(2)), set(standby.worker_pids(2))

    loop = ClientLoop(tcp, protocol="uwsgi", concurrency=3, seconds=60)
    try:
        loop.wait_for_more(60)
        assert set(loop.served_by()) <= main_workers  # the standby served nothing
        resume(standby, fifo, "fifo")
        standby.wait_for_log("resumed ***", count=2)
        main.send(signal.SIGTSTP)
        main.wait_for_log("suspended ***", count=2)
        # each of the 3 clients may still be recording an answer a main worker gave before
        # it paused: look at the answers after those
        switched = loop.count + 3
        loop.wait_for_more(63)
        assert set(loop.served_by(switched)) <= standby_workers
        main.send(signal.SIGTSTP)  # resumed: both serve
        main.wait_for_log("resumed ***", count=2)
        loop.wait_for(lambda body: body.startswith("main"), what="the main zerg again")
    finally:
        loop.stop()
    assert not loop.errors, loop.errors[:5]
    assert os.path.exists(fifo)
