"""SPEC §10 options on running instances, each compared with what uWSGI 2.0.31 does: static-map
(both protocols, nginx in front), mount + manage-script-name (side by side with the real
binary), the request log options, reuse-port, timeouts and the options that are accepted."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from pathlib import Path

import psutil
import pytest
from support.clients import (
    http_get,
    http_request,
    read_one_response,
    seconds_until_closed,
    uwsgi_get,
)
from support.peers import nginx_available, running_nginx
from support.processes import (
    APPS,
    InstanceStarter,
    free_port,
    io_counters,
    wait_until,
    write_mount_app,
)

TESTAPP = str(APPS / "testapp.py")


# -- static-map -------------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Path:
    static = tmp_path / "static"
    (static / "css").mkdir(parents=True)
    (static / "index.html").write_text("<h1>static</h1>\n")
    (static / "css" / "site.css").write_text("body { color: red }\n")
    (static / "big.bin").write_bytes(os.urandom(8 << 20))
    (tmp_path / "secret.txt").write_text("top secret\n")
    return static


def _check_static(get, address: str, site: Path, direct: bool) -> None:
    status, headers, body = get(address, "/static/index.html")
    assert (status, body) == (200, b"<h1>static</h1>\n")
    assert headers["content-type"] == "text/html" and headers["content-length"] == "16"
    assert "last-modified" in headers
    status, headers, body = get(address, "/static/css/site.css")
    assert (status, headers["content-type"]) == (200, "text/css")
    big = (site / "big.bin").read_bytes()
    status, headers, body = get(address, "/static/big.bin")
    assert status == 200 and headers["content-length"] == str(len(big))
    assert hashlib.sha256(body).digest() == hashlib.sha256(big).digest()
    # a missing file falls through to the application (testapp: 404 from the app itself)
    status, _, body = get(address, "/static/missing.txt")
    assert (status, body) == (404, b"not found\n")
    if direct:  # nginx normalises `..` itself; sent raw, uzerg must not escape the root
        for path in ("/static/../secret.txt", "/static/%2e%2e/secret.txt",
                     "/static/css/%2E%2E/..%2fsecret.txt"):
            status, _, body = get(address, path)
            assert b"secret" not in body and status == 404, (path, status, body)


def test_static_map_on_http_socket(uzerg: InstanceStarter, site: Path) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", TESTAPP,
                        "--static-map", f"/static={site}"])
    address = inst.address(0)
    _check_static(http_request, address, site, direct=True)
    line = inst.wait_for_log("[uwsgi-fileserve] security error: ")
    assert f"{site.parent}/secret.txt is not under {site} or a safe path" in line
    # sent with sendfile(): one read-like system call for 8 MiB, not a read() per 64 KiB
    worker = inst.worker_pids(1)[0]
    before = io_counters(worker)
    assert http_request(address, "/static/big.bin")[0] == 200
    after = io_counters(worker)
    assert after["rchar"] - before["rchar"] >= 8 << 20
    assert after["syscr"] - before["syscr"] < 32, (before, after)


def test_static_map_over_uwsgi_behind_nginx(uzerg: InstanceStarter, site: Path,
                                            tmp_path: Path) -> None:
    if not nginx_available():
        pytest.skip("nginx is not installed")
    inst = uzerg.start(["--socket", "127.0.0.1:0", "--wsgi-file", TESTAPP,
                        "--static-map", f"/static={site}"])
    _check_static(uwsgi_get, inst.address(0), site, direct=True)
    rewrite = "rewrite ^/assets/(.*)$ /static/$1 break;"
    with running_nginx(tmp_path, inst.address(0), extra=rewrite) as nginx:
        _check_static(http_request, f"127.0.0.1:{nginx.port}", site, direct=False)
        # as uWSGI, PATH_INFO ($document_uri, after the rewrite) is matched, not REQUEST_URI
        status, headers, body = http_request(f"127.0.0.1:{nginx.port}", "/assets/index.html")
        assert (status, headers["content-type"], body) == (200, "text/html", b"<h1>static</h1>\n")


# -- mount + manage-script-name, side by side with the real uWSGI -------------------------------


def _mount_args(tmp_path: Path, manage: bool) -> list[str]:
    a = write_mount_app(tmp_path / "mount_a.py", "A")
    b = write_mount_app(tmp_path / "mount_b.py", "B")
    return ["--mount", f"/a={a}", "--mount", f"/b={b}",
            *(["--manage-script-name"] if manage else [])]


# (SCRIPT_NAME sent by the front end, PATH_INFO): the uwsgi-protocol cases
SENT = [(None, "/a/x"), ("", "/a/x"), ("/b", "/b/y"), ("/b", "/y"), ("/a", "/c"),
        ("/zz", "/zz/q"), ("/a", "/b/y"), ("/b/", "/b/y")]
# "/" is left out: uWSGI 2.0.31 gives the app no SCRIPT_NAME at all there (PEP 3333 wants one)
HTTP_PATHS = ["/a", "/a/", "/a/x/y", "/b/y", "/ab", "/c", "/b%2fy"]


@pytest.mark.parametrize("manage", [True, False], ids=["manage-script-name", "plain"])
def test_mount_sees_what_uwsgi_sets(uzerg: InstanceStarter, start_uwsgi, tmp_path: Path,
                                    manage: bool) -> None:
    args = _mount_args(tmp_path, manage)
    ours = uzerg.start(["--http-socket", "127.0.0.1:0", "--socket", "127.0.0.1:0", *args])
    ours_http, ours_uwsgi = ours.address(1), ours.address(0)
    theirs_http, theirs_uwsgi = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    start_uwsgi(["--http-socket", theirs_http, "--socket", theirs_uwsgi, *args])
    for path in HTTP_PATHS:
        assert http_request(ours_http, path)[2] == http_request(theirs_http, path)[2], path
    for script_name, path in SENT:
        if script_name is None and not manage:
            continue  # uWSGI: no SCRIPT_NAME and no manage-script-name crashes its app (KeyError)
        expected = uwsgi_get(theirs_uwsgi, path, script_name)[2]
        assert uwsgi_get(ours_uwsgi, path, script_name)[2] == expected, (script_name, path)
    if manage:  # the values themselves, so that a shared mistake cannot pass
        assert http_request(ours_http, "/a/x/y")[2] == b"A|/a|/x/y"
        assert http_request(ours_http, "/b/y")[2] == b"B|/b|/y"
        assert http_request(ours_http, "/c")[2] == b"A||/c"  # the first mount is app 0


# -- request log options ------------------------------------------------------------------------

DEFAULT_LINE = re.compile(
    r"^\[pid: (?P<pid>\d+)\|app: 0\|req: 1/1\] 127\.0\.0\.1 \(\) "
    r"\{(?P<vars>\d+) vars in (?P<bytes>\d+) bytes\} \[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] "
    r"GET /status/203\?x=1 => generated (?P<size>\d+) bytes in \d+ msecs \(HTTP/1\.1 203\) "
    r"\d+ headers in \d+ bytes \(\d+ switches on core 0\)$")
MEMORY = r"\{address space usage: (\d+) bytes/(\d+)MB\} \{rss usage: (\d+) bytes/(\d+)MB\} "


def _request_line(log_text: str) -> str:
    return next(line for line in log_text.splitlines() if "GET /status/203?x=1" in line)


def test_default_request_line_is_uwsgis(uzerg: InstanceStarter, start_uwsgi) -> None:
    ours = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", TESTAPP])
    theirs = start_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", "--wsgi-file", TESTAPP])
    for server in (ours, theirs):
        http_request(server.socket_address if server is theirs else ours.address(0),
                     "/status/203?x=1")
        server.wait_for_log("GET /status/203?x=1 => ")
    mine = DEFAULT_LINE.match(_request_line(ours.log_text()))
    real = DEFAULT_LINE.match(_request_line(theirs.log_text()))
    assert mine and real, (ours.log_text()[-600:], theirs.log_text()[-600:])
    assert int(mine["pid"]) in ours.worker_pids(1)
    # same request, same CGI variables: the same counts as uWSGI (both ports have 5 digits)
    assert (mine["vars"], mine["bytes"], mine["size"]) == (real["vars"], real["bytes"],
                                                            real["size"])


def test_memory_report(uzerg: InstanceStarter) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", TESTAPP,
                        "--memory-report"])
    http_request(inst.address(0), "/status/203?x=1")
    line = inst.wait_for_log("GET /status/203?x=1 => ")
    match = re.match(MEMORY + r"\[pid: (\d+)\|", line)
    assert match, line
    vsz, vsz_mb, rss, rss_mb, pid = map(int, match.groups())
    assert (vsz_mb, rss_mb) == (vsz >> 20, rss >> 20) and vsz > rss
    memory = psutil.Process(pid).memory_info()  # the worker's, a moment later
    assert 0.5 < rss / memory.rss < 2 and 0.5 < vsz / memory.vms < 2
    assert DEFAULT_LINE.match(line[re.match(MEMORY, line).end():])  # then the usual line


def test_disable_logging_keeps_4xx_and_5xx_when_asked(uzerg: InstanceStarter) -> None:
    quiet = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", TESTAPP,
                         "--disable-logging"])
    some = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", TESTAPP,
                        "-L", "--log-4xx", "--log-5xx"])
    for inst in (quiet, some):
        for path in ("/status/200", "/status/404", "/error", "/status/503"):
            http_request(inst.address(0), path)
    # one worker serves them in order: once the last is logged, the others were decided
    some.wait_for_log("GET /status/503 => ")
    assert "GET /status/200 => " not in some.log_text()
    assert "(HTTP/1.1 404)" in some.wait_for_log("GET /status/404 => ")
    assert "(HTTP/1.1 500)" in some.wait_for_log("GET /error => ")
    quiet.wait_for_log("integration test app: deliberate failure")  # the traceback still is
    assert quiet.stop() == 0
    assert " => generated " not in quiet.log_text()


def test_log_format_and_its_ini_alias(uzerg: InstanceStarter, tmp_path: Path) -> None:
    fmt = ("%(addr) %(method) %(uri) %(proto) %(status) %(size) %(rsize) %(msecs) "
           "[%(uagent)] [%(referer)] pid=%(pid) wid=%(wid) %(nosuchvar)")
    ini = tmp_path / "site.ini"
    # as uWSGI 2.0.31: `%(var)` naming no option passes the INI reader unchanged, `%%` is the
    # reader's escape, and `%(literal)` names no log variable: `-`; `%d` is the INI's directory
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = {TESTAPP}\n"
                   f"logformat = {fmt} %%(literal) %d\n")
    for args, tail in (
        (["--http-socket", "127.0.0.1:0", "--wsgi-file", TESTAPP, "--log-format",
          fmt + " %%(literal)"], " %-"),  # uWSGI prints `%-` here too
        ([str(ini)], f" - {tmp_path}/"),
    ):
        inst = uzerg.start(args)
        http_request(inst.address(0), "/status/203?x=1")
        line = inst.wait_for_log("GET /status/203?x=1 ")
        worker = inst.worker_pids(1)[0]
        match = re.fullmatch(
            r"127\.0\.0\.1 GET /status/203\?x=1 HTTP/1\.1 203 (\d+) 11 \d+ "
            rf"\[served-test/1\] \[http://ref\.example/\] pid={worker} wid=1 -"
            + re.escape(tail), line)
        assert match, line
        assert int(match[1]) > 11  # size: headers and body


def test_log_json_every_line_is_an_object(uzerg: InstanceStarter, tmp_path: Path) -> None:
    ini = tmp_path / "site.ini"
    ini.write_text(f"[uwsgi]\nprint = printed while parsing %n\nhttp-socket = 127.0.0.1:0\n"
                   f"wsgi-file = {TESTAPP}\nlog-json = true\n")
    inst = uzerg.start([str(ini)], wait_workers=None)
    bound = inst.wait_for_log('"uwsgi socket 0 bound to TCP address ')
    address = json.loads(bound)["addr"]
    inst.wait_ready(1)
    http_request(address, "/status/203?x=1")
    http_request(address, "/error")
    inst.wait_for_log("GET /error => ")
    lines = inst.log_text().splitlines()
    # `print` is written while the INI is read, before anything else and as it is (uWSGI too)
    assert lines[0] == "printed while parsing site"
    events = [json.loads(line) for line in lines[1:]]  # every other line is one JSON object
    texts = [event["event"] for event in events]
    assert texts[0].startswith("*** Starting uzerg ")
    assert any(text.startswith("spawned uWSGI worker 1 (pid: ") for text in texts)
    assert any("RuntimeError: integration test app: deliberate failure" in t for t in texts)
    request = next(e for e in events if e.get("event_kind") == "request"
                   and e["uri"] == "/status/203?x=1")
    assert (request["method"], request["status"], request["addr"]) == ("GET", 203, "127.0.0.1")
    assert DEFAULT_LINE.match(request["event"])


# -- sockets: reuse-port, protocol, timeouts -----------------------------------------------------


def test_reuse_port_lets_two_instances_serve_one_port(uzerg: InstanceStarter,
                                                      app_file: Path) -> None:
    first = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                         "--reuse-port"])
    address = first.address(0)
    second = uzerg.start(["--http-socket", address, "--wsgi-file", str(app_file),
                          "--reuse-port"])
    workers = {first.worker_pids(1)[0], second.worker_pids(1)[0]}
    seen: set[int] = set()

    def both_answered() -> bool:
        seen.add(int(http_get(address)[1].split()[1]))
        return seen == workers
    wait_until(both_answered, 20, f"answers from both instances ({workers}), got {seen}")
    # without the option the kernel refuses the port: one clear line, no traceback
    third = uzerg.start(["--http-socket", address, "--wsgi-file", str(app_file)],
                        wait_workers=None)
    assert third.wait_exit() == 1
    text = third.log_text()
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if f"cannot bind {address}" in line]
    assert len(errors) == 1 and "Address already in use" in errors[0], text


def test_protocol_http_on_a_socket_option(uzerg: InstanceStarter, app_file: Path) -> None:
    inst = uzerg.start(["--socket", "127.0.0.1:0", "--protocol", "http",
                        "--wsgi-file", str(app_file)])
    assert http_get(inst.address(0))[0] == 200


def test_socket_timeout_closes_stalled_clients(uzerg: InstanceStarter) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", TESTAPP,
                        "--socket-timeout", "1"])
    host, port = inst.address(0).rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
        assert 0.7 < seconds_until_closed(sock) < 3
    # (the head's deadline: a 408, then the close)
    inst.wait_for_log("timeout: request head incomplete after 1 s (127.0.0.1): closing")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
                     + b"x" * 10)  # a body that stops coming
        assert 0.7 < seconds_until_closed(sock) < 3
    # uWSGI 2.0.31's line for a body read that times out; the app's read fails: a 500 line
    inst.wait_for_log("[uwsgi-body-read] Timeout reading 90 bytes. Content-Length: 100 "
                      "consumed: 10 left: 90")
    assert "(HTTP/1.1 500)" in inst.wait_for_log("POST /echo => ")
    assert http_request(inst.address(0), "/pid")[0] == 200


def test_http_keepalive_idle_connections_close_after_http_timeout(
    uzerg: InstanceStarter
) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", TESTAPP,
                        "--http-keepalive", "--http-timeout", "1"])
    host, port = inst.address(0).rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for _ in range(2):  # two requests on one connection
            sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, _ = read_one_response(sock)
            assert status == 200 and headers.get("connection") != "close"
        # then idle: closed after ~1 s (not after the 4 s socket-timeout)
        assert 0.7 < seconds_until_closed(sock) < 3


# -- options that are accepted as in uWSGI, and the process and app ones -------------------------


def test_accepted_options_change_nothing_visible(uzerg: InstanceStarter) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", TESTAPP,
                        "--single-interpreter", "--thunder-lock", "--post-buffering", "8192",
                        "--processes", "2", "--master"], wait_workers=2)
    body = os.urandom(300_000)
    host, port = inst.address(0).rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % len(body) + body)
        status, _, echoed = read_one_response(sock)
    assert status == 200 and echoed == body
    text = inst.log_text()
    for name in ("single-interpreter", "post-buffering"):
        assert name not in text, text  # no warning about them
    # issue 10: a tuning option keeps a one-line note saying what uzerg does instead
    assert text.count("thunder-lock") == 1 and "no lock needed" in text


def test_procname_prefix_callable_and_pythonpath(uzerg: InstanceStarter,
                                                 tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "served_site_mod.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'from the callable']\n")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--pythonpath", str(lib),
                        "--module", "served_site_mod", "--callable", "app",
                        "--auto-procname", "--procname-prefix", "site-", "--master"])
    assert http_get(inst.address(0)) == (200, b"from the callable")
    worker = inst.worker_pids(1)[0]
    assert psutil.Process(worker).cmdline()[0] == "site-uzerg worker 1"
    assert psutil.Process(inst.pid).cmdline()[0] == "site-uzerg master"
