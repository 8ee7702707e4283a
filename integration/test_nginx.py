"""A real nginx in front of a real uzerg: `uwsgi_pass` over TCP and over a unix socket.

Every test starts `python -m uzerg --socket ... --wsgi-file apps/testapp.py` (one worker, so
"the same worker survives" is checkable by pid) and an nginx whose only location passes to it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from apps.testapp import ECHO_STARTED, ERROR_TEXT
from support.peers import Nginx, nginx_available, running_nginx
from support.processes import APPS, free_port

if TYPE_CHECKING:
    from support.peers import Server


pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not nginx_available(), reason="nginx is not installed (/usr/sbin/nginx)"),
]

TESTAPP = str(APPS / "testapp.py")


def _start(start_uzerg, tmp_path: Path, kind: str, *extra: str) -> Server:
    """uzerg on a TCP port (chosen by the kernel) or a unix socket in tmp_path."""
    listen = "127.0.0.1:0" if kind == "tcp" else str(tmp_path / "app.sock")
    return start_uzerg(["--socket", listen, "--wsgi-file", TESTAPP, "--master",
                        "--processes", "1", *extra])


def _upstream(server: Server) -> str:
    address = server.socket_address
    return f"unix:{address}" if address.startswith("/") else address


def _get(nginx: Nginx, path: str, headers: dict[str, str] | None = None,
         method: str = "GET", body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_get_passes_query_string_path_and_headers(start_uzerg, tmp_path: Path, kind: str) -> None:
    server = _start(start_uzerg, tmp_path, kind)
    with running_nginx(tmp_path, _upstream(server)) as nginx:
        status, _, body = _get(
            nginx, "/env/caf%C3%A9?a=1&b=two%20words&c=%2F",
            {"X-Request-Id": "abc-123", "User-Agent": "uzerg-tests/1", "Accept": "text/plain"},
        )
    assert status == 200
    env = json.loads(body)
    assert env["REQUEST_METHOD"] == "GET"
    assert env["QUERY_STRING"] == "a=1&b=two%20words&c=%2F"
    # nginx decodes $document_uri; PEP 3333: the UTF-8 bytes as latin-1 text
    assert env["PATH_INFO"] == "/env/café".encode().decode("latin-1")
    assert env["REQUEST_URI"] == "/env/caf%C3%A9?a=1&b=two%20words&c=%2F"
    assert env["HTTP_X_REQUEST_ID"] == "abc-123"
    assert env["HTTP_USER_AGENT"] == "uzerg-tests/1"
    assert env["HTTP_ACCEPT"] == "text/plain"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(nginx.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["uzerg.test.pid"] in {str(pid) for pid in server.worker_pids(1)}


def test_each_client_connection_gets_its_own_remote_port(start_uzerg, tmp_path: Path) -> None:
    """Clients connecting again and again with the same request: nginx's packets differ in
    REMOTE_PORT only (the worker builds them from the first one's environ, issue 13); each
    request sees its own connection's port and otherwise the same environ, also when the
    same connection asks twice."""
    server = _start(start_uzerg, tmp_path, "tcp")
    seen = []
    with running_nginx(tmp_path, _upstream(server)) as nginx:
        for _ in range(6):
            conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
            try:
                for _ in range(2):  # the same connection twice: the same packet again
                    conn.request("GET", "/env/p?q=1", headers={"X-Id": "same"})
                    response = conn.getresponse()
                    assert response.status == 200
                    assert conn.sock is not None
                    seen.append((conn.sock.getsockname()[1], json.loads(response.read())))
            finally:
                conn.close()
    ports = [port for port, _ in seen]
    assert [env["REMOTE_PORT"] for _, env in seen] == [str(port) for port in ports]
    assert len(set(ports)) == 6
    rest = [{k: v for k, v in env.items() if k != "REMOTE_PORT"} for _, env in seen]
    assert all(env == rest[0] for env in rest)
    assert rest[0]["HTTP_X_ID"] == "same" and rest[0]["QUERY_STRING"] == "q=1"


@pytest.mark.skipif(shutil.which("uwsgi") is None, reason="the uwsgi binary is not installed")
def test_same_environ_as_real_uwsgi_behind_nginx(start_uzerg, start_uwsgi, tmp_path: Path) -> None:
    """The app sees the variables uWSGI gives it behind the same nginx config, with the same
    values (but ports, pids and per-nginx paths). uzerg adds SCRIPT_NAME="" when nginx sends
    none: PEP 3333 wants the key; uWSGI leaves it out."""
    ours = _start(start_uzerg, tmp_path, "tcp")
    theirs = start_uwsgi(["--socket", f"127.0.0.1:{free_port()}", "--wsgi-file", TESTAPP])
    headers = {"X-Forwarded-For": "10.1.2.3", "Cookie": "a=b; c=d", "Accept-Language": "fr"}
    seen = []
    for server in (ours, theirs):
        with running_nginx(tmp_path, server.socket_address) as nginx:
            seen.append(json.loads(_get(nginx, "/env/x%20y?q=1&q=2", headers)[2]))
    ours_env, theirs_env = seen
    assert ours_env.pop("SCRIPT_NAME") == ""
    assert set(ours_env) == set(theirs_env)
    differing = {k for k in ours_env if ours_env[k] != theirs_env[k]}
    assert differing <= {"REMOTE_PORT", "SERVER_PORT", "DOCUMENT_ROOT", "uzerg.test.pid"}


def test_tls_terminating_nginx_sets_the_https_scheme(start_uzerg, tmp_path: Path) -> None:
    """nginx that terminates TLS passes HTTPS=on (uwsgi_params: `$https if_not_empty`) or
    UWSGI_SCHEME; the app must see wsgi.url_scheme "https" (Django's is_secure, redirects)."""
    server = _start(start_uzerg, tmp_path, "unix")
    with running_nginx(tmp_path, _upstream(server), extra="uwsgi_param HTTPS on;") as nginx:
        assert json.loads(_get(nginx, "/env")[2])["wsgi.url_scheme"] == "https"
    with running_nginx(tmp_path, _upstream(server)) as nginx:
        assert json.loads(_get(nginx, "/env")[2])["wsgi.url_scheme"] == "http"


def test_uwsgi_modifier1_30_is_served_as_uwsgi_does(start_uzerg, tmp_path: Path) -> None:
    """The old "app in a sub-path" recipe: `uwsgi_param SCRIPT_NAME` + `uwsgi_modifier1 30`.
    uWSGI 2.0.31 (Python 3) serves it as a plain WSGI request, PATH_INFO as nginx sent it."""
    server = _start(start_uzerg, tmp_path, "unix")
    extra = "uwsgi_param SCRIPT_NAME /env;\nuwsgi_modifier1 30;"
    with running_nginx(tmp_path, _upstream(server), extra=extra) as nginx:
        status, _, body = _get(nginx, "/env/sub?x=1")
    assert status == 200, server.log_text()
    env = json.loads(body)
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/env", "/env/sub")


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_10mb_post_is_echoed_byte_exact(start_uzerg, tmp_path: Path, kind: str) -> None:
    server = _start(start_uzerg, tmp_path, kind)
    payload = os.urandom(10 * 1024 * 1024)
    with running_nginx(tmp_path, _upstream(server)) as nginx:
        status, headers, body = _get(
            nginx, "/echo", {"Content-Type": "application/octet-stream"}, "POST", payload
        )
    expected = hashlib.sha256(payload).hexdigest()
    assert status == 200
    assert headers["x-body-sha256"] == expected  # what the app read
    assert len(body) == len(payload)
    assert hashlib.sha256(body).hexdigest() == expected  # what came back


def test_streamed_response_arrives_chunk_by_chunk(start_uzerg, tmp_path: Path) -> None:
    server = _start(start_uzerg, tmp_path, "unix")
    chunks, delay = 5, 0.2
    # without buffering nginx forwards each piece as soon as uzerg writes it
    with running_nginx(tmp_path, _upstream(server), extra="uwsgi_buffering off;") as nginx:
        conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
        try:
            conn.request("GET", f"/stream?chunks={chunks}&delay={delay}")
            response = conn.getresponse()
            assert response.status == 200
            assert response.getheader("Transfer-Encoding") == "chunked"
            lines: list[tuple[float, bytes]] = []
            while line := response.readline():
                lines.append((time.monotonic(), line))
        finally:
            conn.close()
    assert [line.split()[:2] for _, line in lines] == [
        [b"chunk", str(n).encode()] for n in range(chunks)
    ]
    # the first chunk reached the client well before the generator finished
    assert lines[-1][0] - lines[0][0] >= (chunks - 1) * delay * 0.8


def test_404_and_500_pass_through_and_the_worker_survives(start_uzerg, tmp_path: Path) -> None:
    server = _start(start_uzerg, tmp_path, "tcp")
    with running_nginx(tmp_path, _upstream(server)) as nginx:
        status, _, body = _get(nginx, "/status/404")
        assert (status, body) == (404, b"status 404\n")
        status, _, pid_before = _get(nginx, "/pid")
        assert status == 200
        status, _, body = _get(nginx, "/error")
        assert status == 500
        assert b"Internal Server Error" in body
        server.wait_for_log(ERROR_TEXT)
        log = server.log_text()
        assert "Traceback (most recent call last):" in log
        assert f"RuntimeError: {ERROR_TEXT}" in log
        status, _, pid_after = _get(nginx, "/pid")
    assert status == 200
    assert pid_after == pid_before


def _cut_upload(port: int, path: str, total: int, sent: int,
                server: Server, raw_uwsgi: bytes | None = None) -> None:
    """Start an upload of `total` bytes, send `sent` of them, wait until the app is reading,
    then close the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if raw_uwsgi is None:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {total}\r\n"
                "Content-Type: application/octet-stream\r\n\r\n".encode()
            )
        else:
            sock.sendall(raw_uwsgi)
        sock.sendall(os.urandom(sent))
        server.wait_for_log(f"{ECHO_STARTED} {total}")


def test_client_disconnecting_mid_body_is_logged_and_survived(
    start_uzerg, tmp_path: Path
) -> None:
    server = _start(start_uzerg, tmp_path, "tcp")
    # nginx streams the body to uzerg instead of spooling it first, so the cut reaches uzerg
    with running_nginx(tmp_path, _upstream(server), extra="uwsgi_request_buffering off;") as nginx:
        _, _, pid_before = _get(nginx, "/pid")
        _cut_upload(nginx.port, "/echo?announce", 5_000_000, 100_000, server)
        # uWSGI 2.0.31's wording; the app's read fails, so the request line says 500
        line = server.wait_for_log("[uwsgi-body-read] Error reading ")
        assert "Content-Length: 5000000 consumed: " in line
        assert line.endswith("message: Client closed connection")
        line = server.wait_for_log("POST /echo?announce => generated 0 bytes")
        assert "(HTTP/1.1 500)" in line
        status, _, pid_after = _get(nginx, "/pid")
        assert status == 200
        assert pid_after == pid_before
        status, _, body = _get(nginx, "/echo", method="POST", body=b"still fine")
        assert (status, body) == (200, b"still fine")


def test_client_leaving_mid_response_is_logged_and_survived(start_uzerg, tmp_path: Path) -> None:
    server = _start(start_uzerg, tmp_path, "unix")
    with running_nginx(tmp_path, _upstream(server), extra="uwsgi_buffering off;") as nginx:
        _, _, pid_before = _get(nginx, "/pid")
        with socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as sock:
            sock.sendall(b"GET /stream?chunks=200&delay=0.02 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"chunk 0" in _read_until(sock, b"chunk 0")
        # nginx closes its upstream connection; uzerg's next writes fail
        line = server.wait_for_log("during GET /stream")
        assert "uwsgi_response_write_body_do()" in line
        status, _, pid_after = _get(nginx, "/pid")
    assert status == 200
    assert pid_after == pid_before


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    deadline = time.monotonic() + 10
    while marker not in data:
        assert time.monotonic() < deadline, f"no {marker!r} from the server"
        piece = sock.recv(65536)
        assert piece, f"connection closed before {marker!r}: {data!r}"
        data += piece
    return data


def test_upload_cut_on_the_uwsgi_socket_itself(start_uzerg, tmp_path: Path) -> None:
    """The same cut without nginx: a raw uwsgi packet announcing more body than is sent."""
    from uzerg.protocols.uwsgi import encode_uwsgi_packet

    server = _start(start_uzerg, tmp_path, "tcp")
    port = int(server.socket_address.rsplit(":", 1)[1])
    packet = encode_uwsgi_packet({
        "REQUEST_METHOD": "POST", "PATH_INFO": "/echo", "QUERY_STRING": "announce",
        "REQUEST_URI": "/echo?announce", "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_LENGTH": "1000000",
    })
    pid_before = server.uwsgi_get("/pid")
    _cut_upload(port, "/echo", 1_000_000, 1000, server, raw_uwsgi=packet)
    # the line uWSGI 2.0.31 logs for the same cut (the app reads 64 KiB pieces)
    server.wait_for_log("[uwsgi-body-read] Error reading 64536 bytes. Content-Length: 1000000 "
                        "consumed: 1000 left: 999000 message: Client closed connection")
    assert server.uwsgi_get("/pid") == pid_before


def test_concurrent_requests_spread_over_the_workers(start_uzerg, tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    server = start_uzerg(["--socket", str(path), "--wsgi-file", TESTAPP, "--master",
                          "--processes", "4"])
    workers = {str(pid) for pid in server.worker_pids(4)}
    with running_nginx(tmp_path, f"unix:{path}") as nginx:
        def slow_pid(_: int) -> tuple[int, bytes]:
            status, _, body = _get(nginx, "/slow?seconds=0.3")
            assert body == b"slept\n"
            return status, _get(nginx, "/pid")[2]
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(slow_pid, range(8)))
        elapsed = time.monotonic() - started
    assert [status for status, _ in results] == [200] * 8
    assert {pid.decode() for _, pid in results} <= workers
    # 8 requests of 0.3 s on 4 workers: two rounds, not eight
    assert elapsed < 8 * 0.3


def test_harakiri_kills_a_stuck_worker_and_a_new_one_serves(start_uzerg, tmp_path: Path) -> None:
    server = _start(start_uzerg, tmp_path, "unix", "--harakiri", "1")
    with running_nginx(tmp_path, _upstream(server)) as nginx:
        pid_before = _get(nginx, "/pid")[2]
        started = time.monotonic()
        status, _, _ = _get(nginx, "/slow?seconds=20")
        assert status == 502  # the worker died mid-request: nginx's bad gateway
        assert time.monotonic() - started < 10
        server.wait_for_log("HARAKIRI")
        status, _, pid_after = _get(nginx, "/pid")
    assert status == 200
    assert pid_after != pid_before
