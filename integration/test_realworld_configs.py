"""The ready configs of configs/ run as an operator runs them, with real Django, Flask and nginx.

Each test copies the config into tmp_path and substitutes only what must differ on a test
machine — the project directory and the listening address (a free port or a path under
tmp_path) — and asserts that the substituted text was there, so the shipped file and the
tested file cannot drift apart. Everything else (master, processes, chmod-socket, vacuum,
die-on-term, harakiri, max-requests, `ini = :base` layering) is exactly what ships.
"""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support.peers import nginx_available, run_client, running_nginx
from support.processes import APPS, REPO, free_port

if TYPE_CHECKING:
    from support.peers import Server


CONFIGS = REPO / "configs"
LIST_OPTIONS = {"socket", "http-socket", "env"}
needs_nginx = pytest.mark.skipif(not nginx_available(), reason="nginx is not installed")


def localise(name: str, tmp_path: Path, replacements: dict[str, str]) -> Path:
    """Copy configs/NAME into tmp_path with each `old` line text replaced by `new`."""
    text = (CONFIGS / name).read_text()
    for old, new in replacements.items():
        assert old in text, f"configs/{name} no longer contains {old!r}: update this test"
        text = text.replace(old, new)
    target = tmp_path / name
    target.write_text(text)
    return target


def check_config(*args: str, cwd: Path | None = None) -> dict[str, list[str]]:
    """`uzerg ARGS --check-config` as {option: [values]}."""
    result = subprocess.run([sys.executable, "-m", "uzerg", *args, "--check-config"],
                            capture_output=True, text=True, timeout=30, cwd=cwd)
    assert result.returncode == 0, result.stderr
    resolved: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        if " = " in line and not line.startswith(";"):
            key, _, value = line.partition(" = ")
            resolved.setdefault(key, []).append(value)
    return resolved


def _request(port: int, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@needs_nginx
def test_django_behind_nginx(start_uzerg, tmp_path: Path) -> None:
    sock = tmp_path / "run" / "mysite.sock"
    sock.parent.mkdir()
    ini = localise("django-nginx.ini", tmp_path, {
        "base = /srv/%(project)": f"base = {APPS / 'djangosite'}",
        "socket = /run/uwsgi/%(project).sock": f"socket = {sock}",
    })
    resolved = check_config("--ini", str(ini))
    assert resolved["module"] == ["mysite.wsgi:application"]
    assert resolved["chdir"] == [str(APPS / "djangosite")]
    assert resolved["processes"] == ["4"]
    assert resolved["harakiri"] == ["30"]
    server = start_uzerg(["--ini", str(ini)])
    assert len(server.worker_pids(4)) == 4
    assert stat.S_IMODE(sock.stat().st_mode) == 0o664  # chmod-socket
    with running_nginx(tmp_path, f"unix:{sock}") as nginx:
        assert _request(nginx.port, "GET", "/") == (200, b"Hello from Django\n")
        status, body = _request(nginx.port, "GET", "/items/42/?colour=blue")
        assert status == 200
        item = json.loads(body)
        assert item["item"] == 42
        assert item["path"] == "/items/42/"
        assert item["query"] == {"colour": "blue"}
        assert item["host"] == "127.0.0.1"
        assert item["remote_addr"] == "127.0.0.1"
        status, body = _request(nginx.port, "POST", "/submit/", b"name=zerg&count=3",
                                {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 200
        assert json.loads(body) == {"fields": {"name": "zerg", "count": "3"}, "length": 17}
        assert _request(nginx.port, "GET", "/missing/")[0] == 404
        assert _request(nginx.port, "GET", "/fail/")[0] == 500
        server.wait_for_log("RuntimeError: django view failure")
        assert _request(nginx.port, "GET", "/")[0] == 200
    # die-on-term: SIGTERM stops (not reloads) the instance; vacuum removes the socket file
    assert server.stop(signal.SIGTERM) == 0
    assert not sock.exists()


def _flask_ini(tmp_path: Path) -> Path:
    return localise("flask-http.ini", tmp_path, {
        "chdir = /srv/flaskapp": f"chdir = {APPS / 'flaskapp'}",
        "http-socket = 0.0.0.0:8000": "http-socket = 127.0.0.1:0",
    })


def _port(server: Server) -> int:
    return int(server.socket_address.rsplit(":", 1)[1])


def test_flask_over_http_socket(start_uzerg, tmp_path: Path) -> None:
    server = start_uzerg([str(_flask_ini(tmp_path))])  # a bare FILE.ini argument works too
    port = _port(server)
    assert len(server.worker_pids(2)) == 2
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        # http-keepalive = true: three requests on one connection
        conn.request("GET", "/")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"Hello from Flask\n")
        local_port = conn.sock.getsockname()[1]
        conn.request("GET", "/hello/zerg?lang=en", headers={"User-Agent": "ops-probe"})
        response = conn.getresponse()
        hello = json.loads(response.read())
        assert hello["greeting"] == "Hello, zerg!"
        assert hello["args"] == {"lang": "en"}
        assert hello["user_agent"] == "ops-probe"
        conn.request("POST", "/api/items", body=b'{"name": "drone"}',
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 201
        assert json.loads(response.read()) == {"created": {"name": "drone"}, "size": 17}
        assert conn.sock.getsockname()[1] == local_port  # still the same connection
    finally:
        conn.close()
    assert _request(port, "GET", "/fail")[0] == 500
    server.wait_for_log("RuntimeError: flask view failure")
    assert _request(port, "GET", "/")[0] == 200


@needs_nginx
def test_flask_behind_nginx_proxy_pass(start_uzerg, tmp_path: Path) -> None:
    server = start_uzerg(["--ini", str(_flask_ini(tmp_path))])
    with running_nginx(tmp_path, server.socket_address, protocol="http") as nginx:
        status, body = _request(nginx.port, "GET", "/hello/nginx?x=1")
        assert status == 200
        assert json.loads(body)["args"] == {"x": "1"}
        assert _request(nginx.port, "GET", "/")[1] == b"Hello from Flask\n"


@needs_nginx
def test_flask_behind_nginx_uwsgi_pass(start_uzerg, tmp_path: Path) -> None:
    """The same app through `uwsgi_pass`, from a plain command line (`--socket --module`)."""
    sock = tmp_path / "flask.sock"
    start_uzerg(["--master", "--processes", "2", "--socket", str(sock), "--chdir",
                 str(APPS / "flaskapp"), "--module", "app:app"])
    with running_nginx(tmp_path, f"unix:{sock}") as nginx:
        status, body = _request(nginx.port, "POST", "/api/items", b'{"n": 1}',
                                {"Content-Type": "application/json"})
        assert status == 201
        assert json.loads(body)["created"] == {"n": 1}


def _layered(tmp_path: Path) -> Path:
    """configs/layered.ini next to an app/ directory holding wsgi.py, as its %d paths expect;
    the TCP ports of [dev] and [local] become 0 (the kernel picks one)."""
    (tmp_path / "app").mkdir()
    shutil.copy(APPS / "testapp.py", tmp_path / "app" / "wsgi.py")
    return localise("layered.ini", tmp_path, {
        "http-socket = 127.0.0.1:8000": "http-socket = 127.0.0.1:0",
        "socket = 127.0.0.1:8001": "socket = 127.0.0.1:0",
    })


def test_layered_default_section(start_uzerg, tmp_path: Path) -> None:
    ini = _layered(tmp_path)
    resolved = check_config("--ini", str(ini))
    assert resolved["socket"] == [f"{tmp_path}/app.sock"]
    assert resolved["chdir"] == [f"{tmp_path}/app/"]
    assert resolved["module"] == ["wsgi:application"]
    assert resolved["processes"] == ["4"]
    assert resolved["max-requests"] == ["5000"]
    assert "http-socket" not in resolved
    server = start_uzerg(["--ini", str(ini)])
    pids = {str(pid) for pid in server.worker_pids(4)}
    assert server.uwsgi_get("/pid") in pids
    assert stat.S_IMODE((tmp_path / "app.sock").stat().st_mode) == 0o664


def test_layered_dev_section(start_uzerg, tmp_path: Path) -> None:
    ini = _layered(tmp_path)
    resolved = check_config("--ini", f"{ini}:dev")
    assert resolved["http-socket"] == ["127.0.0.1:0"]
    assert resolved["processes"] == ["1"]
    assert resolved["chdir"] == [f"{tmp_path}/app/"]
    assert resolved["touch-reload"] == [f"{tmp_path}/app/wsgi.py"]
    assert "socket" not in resolved
    server = start_uzerg(["--ini", f"{ini}:dev"])
    assert len(server.worker_pids(1)) == 1
    status, body = _request(_port(server), "GET", "/env?from=dev")
    assert status == 200
    assert json.loads(body)["QUERY_STRING"] == "from=dev"


def test_layered_local_section_resolves(tmp_path: Path) -> None:
    ini = _layered(tmp_path)
    resolved = check_config("--ini", f"{ini}:local")
    assert resolved["socket"] == ["127.0.0.1:0"]
    assert resolved["processes"] == ["2"]
    assert resolved["module"] == ["wsgi:application"]


def _uwsgi_show_config(ini: str, cwd: Path) -> dict[str, list[str]]:
    """The real uWSGI's `--show-config` for `ini`; a clock that does not exist makes it exit
    right after printing, before it binds or forks."""
    result = run_client(["uwsgi", "--ini", ini, "--show-config", "--clock", "uzerg-no-clock"],
                        cwd=cwd)
    text = result.stdout + result.stderr
    assert ";end of configuration" in text, text
    block = text[text.index(";uWSGI instance configuration"):text.index(";end of configuration")]
    resolved: dict[str, list[str]] = {}
    for line in block.splitlines()[2:]:
        key, _, value = line.partition(" = ")
        resolved.setdefault(key, []).append(value)
    return resolved


@pytest.mark.skipif(shutil.which("uwsgi") is None, reason="the uwsgi binary is not installed")
@pytest.mark.parametrize("ini", ["django-nginx.ini", "flask-http.ini", "layered.ini",
                                 "layered.ini:dev", "layered.ini:local"])
def test_shipped_configs_resolve_as_in_uwsgi(ini: str) -> None:
    """Each shipped file means the same to uzerg as to uWSGI (uWSGI also lists the `ini`
    entries, the placeholders and its own --show-config/--clock; a scalar set twice shows
    twice there: its last value counts)."""
    theirs = _uwsgi_show_config(ini, CONFIGS)
    for key in ("ini", "show-config", "clock", "project", "base"):
        theirs.pop(key, None)
    ours = check_config("--ini", ini, cwd=CONFIGS)
    assert set(ours) == set(theirs)
    for key, values in ours.items():
        expected = theirs[key] if key in LIST_OPTIONS else theirs[key][-1:]
        assert values == expected, key


def test_nginx_site_fragment_is_valid_nginx(tmp_path: Path) -> None:
    """configs/nginx-uwsgi.conf, included in an http{} block, passes `nginx -t`."""
    if not nginx_available():
        pytest.skip("nginx is not installed")
    fragment = localise("nginx-uwsgi.conf", tmp_path, {
        "listen 80;": f"listen 127.0.0.1:{free_port()};",
        "include uwsgi_params;": "include /etc/nginx/uwsgi_params;",
    })
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n    access_log off;\n    include {fragment};\n}}\n"
    )
    result = subprocess.run(["/usr/sbin/nginx", "-t", "-p", str(tmp_path), "-c", str(conf),
                             "-e", str(tmp_path / "error.log")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr
