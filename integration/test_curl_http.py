"""curl against uzerg's `--http-socket`: GET, POST, chunked upload, keep-alive."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support.peers import run_client
from support.processes import APPS

if TYPE_CHECKING:
    from support.peers import Server


CURL = shutil.which("curl")
pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(CURL is None, reason="curl is not installed"),
]
TESTAPP = str(APPS / "testapp.py")


def _curl(*args: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `curl -sS --max-time 20 ARGS`."""
    assert CURL is not None
    result = run_client([CURL, "-sS", "--max-time", "20", *args])
    return result.returncode, result.stdout, result.stderr


def _http_server(start_uzerg, *extra: str) -> tuple[Server, str]:
    server = start_uzerg(["--http-socket", "127.0.0.1:0", "--wsgi-file", TESTAPP, *extra])
    return server, f"http://{server.socket_address}"


def test_get(start_uzerg) -> None:
    server, url = _http_server(start_uzerg)
    status, out, err = _curl("-H", "X-Trace: t-1", "-A", "curl-test", f"{url}/env/a%20b?x=1&y")
    assert status == 0, err
    env = json.loads(out)
    assert env["PATH_INFO"] == "/env/a b"
    assert env["QUERY_STRING"] == "x=1&y"
    assert env["REQUEST_URI"] == "/env/a%20b?x=1&y"
    assert env["HTTP_X_TRACE"] == "t-1"
    assert env["HTTP_USER_AGENT"] == "curl-test"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["uzerg.test.pid"] in {str(pid) for pid in server.worker_pids()}


def test_post_data_binary_and_error_statuses(start_uzerg, tmp_path: Path) -> None:
    _, url = _http_server(start_uzerg)
    payload = os.urandom(3 * 1024 * 1024)
    (tmp_path / "up.bin").write_bytes(payload)
    status, _, err = _curl("--data-binary", f"@{tmp_path / 'up.bin'}",
                           "-o", str(tmp_path / "down.bin"), "-D", str(tmp_path / "h.txt"),
                           f"{url}/echo")
    assert status == 0, err
    assert (tmp_path / "down.bin").read_bytes() == payload
    assert hashlib.sha256(payload).hexdigest() in (tmp_path / "h.txt").read_text()
    status, out, _ = _curl("-o", "/dev/null", "-w", "%{http_code}", f"{url}/status/404")
    assert (status, out) == (0, "404")
    status, out, _ = _curl("-o", "/dev/null", "-w", "%{http_code}", f"{url}/error")
    assert (status, out) == (0, "500")


def test_chunked_upload(start_uzerg, tmp_path: Path) -> None:
    _, url = _http_server(start_uzerg)
    payload = os.urandom(700_000)
    (tmp_path / "up.bin").write_bytes(payload)
    status, _, err = _curl("-H", "Transfer-Encoding: chunked",
                           "--data-binary", f"@{tmp_path / 'up.bin'}",
                           "-o", str(tmp_path / "down.bin"), "-v", f"{url}/echo")
    assert status == 0, err
    assert "transfer-encoding: chunked" in err.lower()  # curl really sent it chunked
    assert (tmp_path / "down.bin").read_bytes() == payload


def _two_requests(url: str, tmp_path: Path) -> tuple[dict[str, str], dict[str, str], str]:
    status, _, err = _curl("-v", "-o", str(tmp_path / "1.json"), "-o", str(tmp_path / "2.json"),
                           f"{url}/env/1", f"{url}/env/2")
    assert status == 0, err
    first = json.loads((tmp_path / "1.json").read_text())
    second = json.loads((tmp_path / "2.json").read_text())
    return first, second, err


def test_keepalive_reuses_the_connection(start_uzerg, tmp_path: Path) -> None:
    _, url = _http_server(start_uzerg, "--http-keepalive")
    first, second, err = _two_requests(url, tmp_path)
    assert "Re-using existing connection" in err
    assert first["REMOTE_PORT"] == second["REMOTE_PORT"]  # one TCP connection, two requests
    assert (first["PATH_INFO"], second["PATH_INFO"]) == ("/env/1", "/env/2")


def test_without_keepalive_each_request_gets_a_connection(
    start_uzerg, tmp_path: Path
) -> None:
    _, url = _http_server(start_uzerg)
    first, second, err = _two_requests(url, tmp_path)
    assert "Re-using existing connection" not in err
    assert first["REMOTE_PORT"] != second["REMOTE_PORT"]


def test_http_1_0(start_uzerg) -> None:
    _, url = _http_server(start_uzerg)
    status, out, err = _curl("--http1.0", "-i", f"{url}/pid")
    assert status == 0, err
    assert out.startswith("HTTP/1.0 200 ")
