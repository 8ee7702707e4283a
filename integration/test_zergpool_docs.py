"""The documentation's zergpool example, run exactly as written.

configs/zergpool.ini (the documentation's text, byte for byte, 192.168.173.22 included) and the
documentation's zerg command lines run unchanged inside a network namespace that the test
creates: 192.168.173.22/32 on the namespace's loopback, fixed ports 3031/3032 free there, and a
private /tmp so /tmp/zergpool_1 and /tmp/zergpool_2 never meet the host's. Pool, zergs and
clients all run in the namespace; nothing leaves the machine.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.netns import Namespace, Namespaces, require_namespaces
from support.processes import Instance, InstanceStarter

REPO = Path(__file__).resolve().parent.parent
POOL_CONFIG = REPO / "configs" / "zergpool.ini"
DOC_POOL_TEXT = (
    b"[uwsgi]\n"
    b"master = true\n"
    b"zergpool = /tmp/zergpool_1:127.0.0.1:3031,127.0.0.1:3032\n"
    b"zergpool = /tmp/zergpool_2:192.168.173.22:3031,192.168.173.22:3032\n"
)
POOL_1 = ["127.0.0.1:3031", "127.0.0.1:3032"]
POOL_2 = ["192.168.173.22:3031", "192.168.173.22:3032"]
# The documentation's zerg lines; only the app file is ours (written as /tmp/myapp.wsgi inside)
ONE_POOL_ZERG = "--zerg /tmp/zergpool_1 --wsgi-file myapp.wsgi --master --processes 8"
TWO_POOL_ZERG = (
    "--zerg /tmp/zergpool_1 --zerg /tmp/zergpool_2 --wsgi-file myapp.wsgi --master --processes 8"
)
MYAPP = '''
import os, time

def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(0.25)
    body = ("pid %d" % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
'''


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Namespace]:
    """A namespace with the documentation's address and /tmp/myapp.wsgi."""
    require_namespaces()
    namespaces = Namespaces(tmp_path)
    try:
        namespace = namespaces.create("doc", addresses=["192.168.173.22/32"])
        (namespace.root / "myapp.wsgi").write_text(MYAPP)
        yield namespace
    finally:
        namespaces.cleanup()


def start_doc_pool(uzerg: InstanceStarter, host: Namespace) -> Instance:
    pool = uzerg.start(["--ini", str(POOL_CONFIG)], wait_workers=None, prefix=host.prefix())
    pool.wait_for_log("*** Zerg server enabled on /tmp/zergpool_2 ***")
    return pool


def pids_in(results: list[dict[str, object]]) -> set[int]:
    failed = [r for r in results if not r["ok"]]
    assert not failed, failed[:3]
    return {int(str(r["body"]).split()[1]) for r in results}


def test_config_is_the_documentation_text_byte_for_byte() -> None:
    assert POOL_CONFIG.read_bytes() == DOC_POOL_TEXT


def test_doc_pool_binds_its_four_sockets_and_runs_no_workers(
    uzerg: InstanceStarter, host: Namespace
) -> None:
    pool = start_doc_pool(uzerg, host)
    log = pool.log_text()
    for pool_address, sockets in (("/tmp/zergpool_1", POOL_1), ("/tmp/zergpool_2", POOL_2)):
        for sock in sockets:
            assert f"zergpool {pool_address} bound to TCP socket {sock} (fd: " in log
        assert f"*** Zerg server enabled on {pool_address} ***" in log
    pool.wait_for_log("spawned uWSGI master process")
    assert pool.worker_pids() == []  # a pool-only instance runs no workers
    assert host.host_path("/tmp/zergpool_1").is_socket()
    assert host.host_path("/tmp/zergpool_2").is_socket()


def test_doc_one_pool_zerg_line_serves_pool_1(uzerg: InstanceStarter, host: Namespace) -> None:
    start_doc_pool(uzerg, host)
    zerg = uzerg.start(ONE_POOL_ZERG.split(), wait_workers=8, prefix=host.prefix())
    log = zerg.log_text()
    assert "uwsgi zerg socket 0 attached to INET address 127.0.0.1:3031" in log
    assert "uwsgi zerg socket 1 attached to INET address 127.0.0.1:3032" in log
    assert "uwsgi zerg socket 2" not in log
    workers = set(zerg.worker_pids())
    results = host.requests(POOL_1, count=4)
    assert pids_in(results) <= workers


def test_doc_two_pool_zerg_line_serves_all_four_sockets_from_one_worker_pool(
    uzerg: InstanceStarter, host: Namespace
) -> None:
    start_doc_pool(uzerg, host)
    zerg = uzerg.start(TWO_POOL_ZERG.split(), wait_workers=8, prefix=host.prefix())
    zerg.wait_for_log("zerg sockets attached")
    log = zerg.log_text()
    for index, sock in enumerate(POOL_1 + POOL_2):
        assert f"uwsgi zerg socket {index} attached to INET address {sock}" in log
    workers = set(zerg.worker_pids())
    # slow requests, many at once on every socket: each worker takes whatever socket is ready
    results = host.requests(POOL_1 + POOL_2, path="/slow", count=8, concurrency=32)
    by_socket = {sock: pids_in([r for r in results if r["addr"] == sock])
                 for sock in POOL_1 + POOL_2}
    pool_1_pids = by_socket[POOL_1[0]] | by_socket[POOL_1[1]]
    pool_2_pids = by_socket[POOL_2[0]] | by_socket[POOL_2[1]]
    assert pool_1_pids | pool_2_pids <= workers, (by_socket, workers)
    assert pool_1_pids & pool_2_pids, by_socket  # the same workers answer both pools
    assert len(pool_1_pids | pool_2_pids) > 1, by_socket


def test_doc_rails_line_is_refused_clearly() -> None:
    argv = ["--zerg", "/tmp/zergpool_1", "--rails", "/var/www/myapp", "--master",
            "--processes", "8"]
    result = subprocess.run([sys.executable, "-m", "uzerg", *argv], capture_output=True,
                            text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "--rails" in output and "uzerg does not provide" in output, output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) == 1, output
