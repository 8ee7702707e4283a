"""Security of the request path (issue 11): a uwsgi-protocol socket on a non-loopback address is
flagged at start-up, and no request variable changes what uzerg loads or runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from support.clients import connect_to, http_get, read_all
from support.processes import InstanceStarter

from uzerg.protocols.uwsgi import encode_uwsgi_packet

WARNING = "speaks the uwsgi protocol on a non-loopback address"


def test_a_uwsgi_socket_on_a_non_loopback_address_logs_a_warning(
    uzerg: InstanceStarter, app_file: Path, tmp_path: Path
) -> None:
    # 0.0.0.0 is bound, never used: every byte of the test stays on this host
    instance = uzerg.start(["--socket", "0.0.0.0:0", "--socket", "127.0.0.1:0",
                            "--socket", str(tmp_path / "u.sock"), "--http-socket", "0.0.0.0:0",
                            "--wsgi-file", str(app_file)])
    port = instance.address(0).rpartition(":")[2]
    lines = [line for line in instance.log_text().splitlines() if WARNING in line]
    assert len(lines) == 1, lines  # loopback, unix and HTTP sockets: no warning
    assert f"uwsgi socket 0 (0.0.0.0:{port}) {WARNING}" in lines[0]


def test_a_uwsgi_socket_on_loopback_logs_no_warning(
    uzerg: InstanceStarter, app_file: Path
) -> None:
    instance = uzerg.start(["--socket", "127.0.0.1:0", "--wsgi-file", str(app_file)])
    assert WARNING not in instance.log_text()


LOADER_VARS = ("UWSGI_FILE", "UWSGI_SCRIPT", "UWSGI_APPID", "UWSGI_CHDIR", "UWSGI_PYHOME")


@pytest.fixture
def probe(tmp_path: Path) -> dict[str, str]:
    """An app that reports what the process looks like, and the values each loader variable
    gets: a file and a module that leave a marker if anything loads them, a directory, a
    virtualenv-shaped directory."""
    (tmp_path / "probe.py").write_text(
        "import json, os, sys\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'application/json')])\n"
        "    evil = sorted(m for m in sys.modules if 'evil' in m)\n"
        "    return [json.dumps({'app': 'probe', 'cwd': os.getcwd(), 'prefix': sys.prefix,\n"
        "                        'path': sys.path, 'evil': evil}).encode()]\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    marker = tmp_path / "LOADED"
    evil = f"open({str(marker)!r}, 'w').write('x')\napplication = None\n"
    (elsewhere / "evil_file.py").write_text(evil)
    (elsewhere / "evil_module.py").write_text(evil)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    return {
        "UWSGI_FILE": str(elsewhere / "evil_file.py"),
        "UWSGI_SCRIPT": "evil_module",
        "UWSGI_APPID": "evil_app",
        "UWSGI_CHDIR": str(elsewhere),
        "UWSGI_PYHOME": str(venv),
    }


def _check_untouched(reply: bytes, tmp_path: Path) -> None:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"200", reply[:200]
    seen = json.loads(body)
    assert seen["app"] == "probe"
    assert seen["cwd"] == str(tmp_path)  # the instance's directory, not UWSGI_CHDIR
    assert seen["prefix"] == sys.prefix  # not UWSGI_PYHOME
    assert not any("elsewhere" in entry or "venv" in entry for entry in seen["path"])
    assert seen["evil"] == []
    assert not (tmp_path / "LOADED").exists()


@pytest.mark.parametrize("name", LOADER_VARS)
def test_loader_variables_in_a_uwsgi_packet_are_ignored(
    uzerg: InstanceStarter, tmp_path: Path, probe: dict[str, str], name: str
) -> None:
    instance = uzerg.start(["--socket", "127.0.0.1:0", "--wsgi-file", "probe.py"])
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REQUEST_URI": "/",
           "SERVER_PROTOCOL": "HTTP/1.1", name: probe[name]}
    if name == "UWSGI_SCRIPT":
        env["UWSGI_CHDIR"] = probe["UWSGI_CHDIR"]  # where the module would be found
    with connect_to(instance.address(0), 10) as sock:
        sock.sendall(encode_uwsgi_packet(env))
        reply = read_all(sock)
    _check_untouched(reply, tmp_path)


@pytest.mark.parametrize("name", LOADER_VARS)
def test_loader_variables_as_http_headers_are_ignored(
    uzerg: InstanceStarter, tmp_path: Path, probe: dict[str, str], name: str
) -> None:
    instance = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", "probe.py"])
    address = instance.address(0)
    for header in (name, name.replace("_", "-")):  # the underscore spelling is dropped
        with connect_to(address, 10) as sock:
            sock.sendall(f"GET / HTTP/1.1\r\nHost: x\r\n{header}: {probe[name]}\r\n\r\n"
                         .encode())
            _check_untouched(read_all(sock), tmp_path)
    assert http_get(address)[0] == 200
