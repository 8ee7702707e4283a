"""`uwsgi_curl` (PyPI uwsgi-tools), the operators' probe for a uwsgi socket, against uzerg's
`--socket`, TCP and unix; and the same probe against the real uWSGI for an exact comparison."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support.peers import run_client
from support.processes import APPS, free_port

if TYPE_CHECKING:
    from support.peers import Server


UWSGI_CURL = shutil.which("uwsgi_curl")
pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(UWSGI_CURL is None, reason="uwsgi_curl (pip install uwsgi-tools) missing"),
]
TESTAPP = str(APPS / "testapp.py")


def _uwsgi_curl(*args: str) -> subprocess.CompletedProcess[str]:
    assert UWSGI_CURL is not None
    return run_client([UWSGI_CURL, "-t", "10", *args])


def _split(output: str) -> tuple[str, dict[str, str], str]:
    """(status line, headers, body) of uwsgi_curl's output (the response plus print's "\n")."""
    head, _, body = output.removesuffix("\n").partition("\r\n\r\n")
    status, *lines = head.split("\r\n")
    return status, dict(line.split(": ", 1) for line in lines), body


@pytest.fixture
def tcp_server(start_uzerg) -> Server:
    return start_uzerg(["--socket", "127.0.0.1:0", "--wsgi-file", TESTAPP])


def test_get_with_query_and_header(tcp_server: Server) -> None:
    result = _uwsgi_curl(tcp_server.socket_address, "/env/x?q=1&r=two", "-H", "Accept: text/csv")
    assert result.returncode == 0, result.stderr
    status, headers, body = _split(result.stdout)
    assert status == "HTTP/1.1 200 OK"
    assert headers["Content-Type"] == "application/json"
    env = json.loads(body)
    assert env["PATH_INFO"] == "/env/x"
    assert env["QUERY_STRING"] == "q=1&r=two"
    assert env["REQUEST_URI"] == "/env/x?q=1&r=two"
    assert env["HTTP_ACCEPT"] == "text/csv"
    assert env["SERVER_PORT"] == tcp_server.socket_address.rsplit(":", 1)[1]


def test_error_statuses_reach_uwsgi_curl(tcp_server: Server) -> None:
    result = _uwsgi_curl(tcp_server.socket_address, "/status/404")
    assert result.returncode == 1  # uwsgi_curl's exit status for a non-2xx answer
    assert _split(result.stdout)[0] == "HTTP/1.1 404 Test Status"
    result = _uwsgi_curl(tcp_server.socket_address, "/error")
    assert result.returncode == 1
    assert _split(result.stdout)[0] == "HTTP/1.1 500 Internal Server Error"
    assert _uwsgi_curl(tcp_server.socket_address, "/pid").returncode == 0


def test_unix_socket(start_uzerg, tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    server = start_uzerg(["--socket", str(path), "--wsgi-file", TESTAPP, "--master",
                          "--processes", "2"])
    pids = {str(pid) for pid in server.worker_pids(2)}
    result = _uwsgi_curl(str(path), "/pid")
    assert result.returncode == 0, result.stderr
    assert _split(result.stdout)[2] in pids


@pytest.mark.skipif(shutil.which("uwsgi") is None, reason="the uwsgi binary is not installed")
@pytest.mark.parametrize("path", ["/status/404", "/status/201", "/env-missing", "/stream"])
def test_same_answer_as_real_uwsgi(start_uzerg, start_uwsgi, path: str) -> None:
    """Byte for byte what uWSGI sends for the same app and request (headers, framing, body)."""
    ours = start_uzerg(["--socket", "127.0.0.1:0", "--wsgi-file", TESTAPP])
    theirs = start_uwsgi(["--socket", f"127.0.0.1:{free_port()}", "--wsgi-file", TESTAPP])
    if path == "/stream":
        path += "?chunks=3&delay=0"
    got = _uwsgi_curl(ours.socket_address, path).stdout
    expected = _uwsgi_curl(theirs.socket_address, path).stdout
    if path.startswith("/stream"):  # each chunk carries a timestamp
        got, expected = _without_times(got), _without_times(expected)
    assert got == expected


def _without_times(text: str) -> str:
    return "\n".join(line.split(" at ")[0] for line in text.split("\n"))
