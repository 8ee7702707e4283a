"""uWSGI's logging, run for real (issue 10): loggers and request loggers (file, stdio, socket
over UDP and unix datagrams), named loggers with log-route, log encoders, log-date, the log
master (lines of concurrent workers never interleave), rotation by size that loses no line,
reopening by name after a rotating tool moved the file (fifo ``l``), and conditional request
logging (log-zero, log-slow, log-big with disable-logging) and log-x-forwarded-for."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
from pathlib import Path

import pytest
from support.clients import http_get, http_request
from support.processes import Instance, InstanceStarter, wait_until

APP = '''
import sys, time

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/err":
        print("ERROR the database is gone", flush=True)
    if path.startswith("/burst/"):
        tag = path.rsplit("/", 1)[1]
        for i in range(50):
            sys.stderr.write(f"burst {tag} {i} " + tag * 3000 + " end\\n")
            sys.stderr.flush()
    if path == "/slow":
        time.sleep(0.3)
    body = b"" if path == "/empty" else (b"x" * 5000 if path == "/big" else b"ok")
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
'''
DEFAULT_LINE = re.compile(
    r"\[pid: \d+\|app: 0\|req: \d+/\d+\] 127\.0\.0\.1 \(\) \{\d+ vars in \d+ bytes\} "
    r"\[.{24}\] GET /\S* => generated \d+ bytes in \d+ msecs \(HTTP/1\.1 200\) 1 headers in "
    r"\d+ bytes \(1 switches on core 0\)")


def start(uzerg: InstanceStarter, tmp_path: Path, *lines: str, workers: int = 1,
          log: Path | None = None) -> tuple[Instance, str]:
    """An instance of the test app with these config lines; ``log``: where its server lines go
    (a logto file) instead of its output."""
    app = tmp_path / "logapp.py"
    app.write_text(APP)
    ini = tmp_path / "log.ini"
    ini.write_text("[uwsgi]\nmaster = true\nhttp-socket = 127.0.0.1:0\n"
                   f"processes = {workers}\nwsgi-file = {app}\n" + "\n".join(lines) + "\n")
    instance = uzerg.start(["--ini", str(ini)], wait_workers=None if log else workers)
    if log is None:
        return instance, instance.address()
    output, instance.log_path = instance.log_path, log
    instance.wait_ready(workers)
    uzerg.track(instance)
    if "bound to" not in text(log):  # logto2: opened after the sockets were bound
        instance.log_path = output
        address = instance.address()
        instance.log_path = log
        return instance, address
    return instance, instance.address()


def text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_loggers_named_routes_encoders_and_request_loggers(uzerg: InstanceStarter,
                                                           tmp_path: Path) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(10)
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    unix.bind(str(tmp_path / "dgram.sock"))
    unix.settimeout(10)
    errs, every, requests = tmp_path / "errs.log", tmp_path / "all.log", tmp_path / "req.log"
    instance, address = start(
        uzerg, tmp_path,
        "logger = stdio",
        f"logger = file:{every}",
        f"logger = socket:127.0.0.1:{udp.getsockname()[1]}",
        f"logger = socket:{tmp_path / 'dgram.sock'},[uzerg]",
        f"logger = errs file:{errs}",
        "log-route = errs ^ERROR",
        'log-encoder = json:errs {"at": "${strftime:%%Y}", "line": "${msg}"}',
        "log-date = %%Y-%%m-%%d",  # INI: %% is a % (uWSGI magic variables)
        f"req-logger = file:{requests}",
    )
    assert http_get(address, "/err")[0] == 200
    assert http_get(address, "/plain")[0] == 200
    # the worker's print went to the named logger only, JSON-encoded
    wait_until(lambda: text(errs), 10, "the routed line")
    record = json.loads(text(errs).splitlines()[0])
    assert record["line"] == "ERROR the database is gone" and record["at"].isdigit()
    assert "ERROR the database" not in text(every) + instance.log_text()
    # the master's lines reach every unnamed logger, dated as log-date says
    assert re.search(r"^\d{4}-\d\d-\d\d - spawned uWSGI worker 1", text(every), re.M)
    assert "spawned uWSGI worker 1" in instance.log_text()  # stdio
    datagrams = [udp.recv(65536) for _ in range(3)]
    assert any(b"spawned uWSGI" in d or b"WSGI app 0" in d for d in datagrams), datagrams
    assert unix.recv(65536).startswith(b"[uzerg]")  # socket:PATH,PREFIX
    # request lines go to the request logger only, in uWSGI's default form
    wait_until(lambda: len(text(requests).splitlines()) >= 2, 10, "two request lines")
    for line in text(requests).splitlines():
        assert DEFAULT_LINE.fullmatch(line), line
    assert "GET /plain" not in instance.log_text() + text(every)
    instance.stop()
    udp.close()
    unix.close()


def test_lines_of_concurrent_workers_never_interleave(uzerg: InstanceStarter,
                                                      tmp_path: Path) -> None:
    log = tmp_path / "all.log"
    _instance, address = start(uzerg, tmp_path, "log-master = true", "logger = stdio",
                               f"logger = file:{log}", "log-master-bufsize = 65536",
                               "disable-logging = true", workers=4)
    import threading

    tags = "ABCDEFGH"
    threads = [threading.Thread(target=http_get, args=(address, f"/burst/{t}")) for t in tags]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    wait_until(lambda: text(log).count(" end\n") >= 50 * len(tags), 20, "every burst line")
    bursts = [ln for ln in text(log).splitlines() if ln.startswith("burst ")]
    assert len(bursts) == 50 * len(tags)
    for line in bursts:
        tag = line.split()[1]
        assert line == f"burst {tag} {line.split()[2]} {tag * 3000} end", line[:80]


def test_rotation_by_size_loses_no_line(uzerg: InstanceStarter, tmp_path: Path) -> None:
    log = tmp_path / "main.log"
    instance, address = start(uzerg, tmp_path, f"logto = {log}", "log-maxsize = 4000",
                              f"log-backupname = {tmp_path / 'main.old'}", log=log)
    count = 120
    for _ in range(count):
        assert http_get(address, "/r")[0] == 200

    def request_lines() -> list[str]:
        files = [log, *sorted(tmp_path.glob("main.old*"))]
        return [ln for f in files for ln in text(f).splitlines() if "GET /r " in ln]

    wait_until(lambda: len(request_lines()) >= count, 15, "every request line")
    lines = request_lines()
    assert len(lines) == count
    assert sorted(int(re.search(r"req: (\d+)/", ln)[1]) for ln in lines) == list(
        range(1, count + 1))
    assert len(list(tmp_path.glob("main.old*"))) >= 3  # it did rotate, several times
    assert "triggering rotation to" in "".join(text(f) for f in tmp_path.glob("main*"))
    assert log.stat().st_size < 4000 + 1000
    instance.stop()


def test_reopen_after_a_rotating_tool_moved_the_file(uzerg: InstanceStarter,
                                                     tmp_path: Path) -> None:
    log, named = tmp_path / "main.log", tmp_path / "named.log"
    fifo = tmp_path / "fifo"
    instance, address = start(uzerg, tmp_path, f"logto = {log}", f"master-fifo = {fifo}",
                              f"logger = file:{named}", "logger = stdio", log=log)
    assert http_get(address, "/before")[0] == 200
    wait_until(lambda: "GET /before" in text(log), 10, "the first request line")
    log.rename(tmp_path / "main.log.1")  # what logrotate does, then it signals
    named.rename(tmp_path / "named.log.1")
    with open(fifo, "w") as control:
        control.write("l")
    wait_until(lambda: log.exists() and named.exists(), 10, "the logs reopened by name")
    assert http_get(address, "/after")[0] == 200
    wait_until(lambda: "GET /after" in text(log), 10, "the next request line in the new file")
    assert "GET /after" not in text(tmp_path / "main.log.1")
    instance.stop()
    assert "goodbye" in text(log) + text(named)


def test_conditional_request_logging_and_x_forwarded_for(uzerg: InstanceStarter,
                                                         tmp_path: Path) -> None:
    instance, address = start(uzerg, tmp_path, "disable-logging = true", "log-zero = true",
                              "log-slow = 200", "log-big = 4096", "log-x-forwarded-for = true")
    for path in ("/plain", "/empty", "/slow", "/big"):
        assert http_request(address, path)[0] == 200
    wait_until(lambda: "GET /big" in instance.log_text(), 10, "the big response's line")
    logged = instance.log_text()
    assert "GET /empty" in logged and "GET /slow" in logged and "GET /plain" not in logged
    sock = socket.create_connection(address.rsplit(":", 1) and (
        address.rsplit(":", 1)[0], int(address.rsplit(":", 1)[1])), 10)
    sock.sendall(b"GET /empty HTTP/1.0\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n")
    while sock.recv(4096):
        pass
    sock.close()
    line = instance.wait_for_log("GET /empty", count=2).strip()
    assert instance.log_text().count("] 203.0.113.9 () {") == 1, line
    instance.stop()


SYSLOG_NAMESPACE = """
set -e
mkdir -p "$OLD_DEV"
mount --bind /dev "$OLD_DEV"
mount -t tmpfs tmpfs /dev
for node in null zero random urandom; do
    touch "/dev/$node"
    mount --bind "$OLD_DEV/$node" "/dev/$node"
done
mkdir /dev/shm
ln -s "$SYSLOG_SOCKET" /dev/log
exec "$@"
"""


def test_syslog_logger_writes_to_dev_log(uzerg: InstanceStarter, tmp_path: Path) -> None:
    """syslog:IDENT,FACILITY sends what libc's syslog() sends to /dev/log. The instance runs
    in a mount namespace of its own whose /dev/log is a datagram socket of the test."""
    if not shutil.which("unshare") or os.geteuid() != 0:
        pytest.skip("needs root and unshare for a private /dev")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "devlog.sock"))
    listener.settimeout(15)
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", SYSLOG_NAMESPACE,
              "sh"]
    app = tmp_path / "logapp.py"
    app.write_text(APP)
    instance = uzerg.start(
        ["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app), "--master",
         "--logger", "stdio", "--logger", "syslog:myapp,local3", "--disable-logging"],
        prefix=prefix, env={"OLD_DEV": str(tmp_path / "olddev"),
                            "SYSLOG_SOCKET": str(tmp_path / "devlog.sock")})
    assert http_get(instance.address(), "/err")[0] == 200
    seen: list[bytes] = []
    while not any(b"ERROR the database" in d for d in seen):
        seen.append(listener.recv(65536))
    line = next(d for d in seen if b"ERROR the database" in d)
    # <PRI> = local3 (19) * 8 + info (6); then the date, the ident and the line
    assert re.fullmatch(rb"<158>\w{3} [ \d]\d \d\d:\d\d:\d\d myapp: ERROR the database is gone",
                        line), line
    instance.stop()
    listener.close()


def test_sighup_with_log_reopen_writes_to_a_new_file(uzerg: InstanceStarter,
                                                     tmp_path: Path) -> None:
    """A rotating tool moves the file away and sends SIGHUP (a graceful reload): with
    log-reopen the reloaded master opens the file by name again (logto2 here: uWSGI's log
    file opened after the privileges drop)."""
    log = tmp_path / "main.log"
    instance, address = start(uzerg, tmp_path, f"logto2 = {log}", "log-reopen = true", log=log)
    assert http_get(address, "/before")[0] == 200
    wait_until(lambda: "GET /before" in text(log), 10, "the first request line")
    old_workers = set(instance.worker_pids(1))
    log.rename(tmp_path / "main.log.1")
    instance.send(signal.SIGHUP)
    wait_until(lambda: "gracefully (RE)spawned uWSGI master" in text(log), 20,
               "the reloaded master's lines in a new file")
    # the old worker serves on across the re-exec until the new one is up (nothing is
    # dropped), and its lines go on to the file it holds, as in uWSGI: ask once it is gone
    wait_until(lambda: len(pids := instance.worker_pids()) == 1 and not old_workers & set(pids),
               20, "the new worker alone")
    assert http_get(address, "/after")[0] == 200
    wait_until(lambda: "GET /after" in text(log), 10, "the next request line in the new file")
    assert "GET /after" not in text(tmp_path / "main.log.1")
    uzerg.track(instance)
    instance.stop()
