"""Process options of issue 10 run for real: max-fd sets the descriptor limit of the master
and of the workers it forks (uWSGI's setrlimit(RLIMIT_NOFILE))."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from support.clients import http_get, http_request
from support.processes import InstanceStarter


def _nofile(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no 'Max open files' line")


def test_max_fd_sets_the_limit_of_every_process(uzerg: InstanceStarter, app_file: Path) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--master", "--max-fd", "777", "--processes", "2"], wait_workers=2)
    assert "detected max file descriptor number: 777" in inst.log_text()
    for pid in [inst.pid, *inst.worker_pids(2)]:
        assert _nofile(pid) == (777, 777)
    assert inst.stop() == 0


WRITER_APP = '''
import os

def application(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    for _ in range(400):
        write(b"x" * 65536)
    open(os.path.join(os.path.dirname(__file__), "finished"), "w").close()
    return []
'''


@pytest.mark.parametrize("disabled", [True, False])
def test_disable_write_exception(uzerg: InstanceStarter, tmp_path: Path, disabled: bool) -> None:
    """With disable-write-exception the app's write() to a client that went away does not
    raise: the app runs to its end. Without it the write raises (uWSGI's IOError)."""
    app = tmp_path / "writer.py"
    app.write_text(WRITER_APP)
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app),
                        *(["--disable-write-exception"] if disabled else [])])
    host, port = inst.address().rsplit(":", 1)
    with socket.create_connection((host, int(port)), 10) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        sock.recv(1000)
    line = inst.wait_for_log("GET / =>")
    assert (tmp_path / "finished").exists() is disabled, line
    assert inst.stop() == 0


def test_max_worker_lifetime_recycles_each_worker(uzerg: InstanceStarter, app_file: Path) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--master", "--processes", "2", "--max-worker-lifetime", "2",
                        "--max-worker-lifetime-delta", "1"], wait_workers=2)
    first = set(inst.worker_pids(2))
    line = inst.wait_for_log("worker 1 lifetime reached, it was running for")
    assert line.endswith("second(s)")
    inst.wait_for_log("worker 2 lifetime reached")  # one second later: the delta
    inst.wait_for_log("Respawned uWSGI worker 2")
    uzerg.track(inst)
    assert not first & set(inst.worker_pids(2))
    assert http_get(inst.address())[0] == 200
    assert inst.stop() == 0


def test_check_static_serves_the_docroot_then_the_app(uzerg: InstanceStarter, app_file: Path,
                                                      tmp_path: Path) -> None:
    docroot = tmp_path / "public"
    (docroot / "css").mkdir(parents=True)
    (docroot / "css" / "site.css").write_text("body { color: red }\n")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--check-static", str(docroot)])
    status, body = http_get(inst.address(), "/css/site.css")
    assert status == 200 and body.endswith(b"body { color: red }\n")
    status, body = http_get(inst.address(), "/not/there")
    assert status == 200 and b"hello" in body  # the app answers what the docroot lacks
    (tmp_path / "secret.txt").write_text("top secret")
    _status, _headers, body = http_request(inst.address(), "/%2e%2e/secret.txt")
    assert b"top secret" not in body  # never a file outside the docroot
    assert inst.stop() == 0
