"""HTTPS served by the workers (issue 10): https / https-socket with a certificate made at
test time (openssl), client certificates (ca: optional, !ca: required) and their environ
variables, ssl-option, a stalled handshake bounded by socket-timeout, shared-socket =N,
http-to-https and http-to. Clients: Python's ssl and curl."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from support.processes import InstanceStarter, free_port

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl CLI")

APP = '''
import json, os

def application(environ, start_response):
    if environ["PATH_INFO"] == "/echo":
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if environ["PATH_INFO"] == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(os.environ["BIG_FILE"], "rb"))
    start_response("200 OK", [("Content-Type", "application/json")])
    keys = ("HTTPS", "HTTPS_DN", "HTTPS_CC", "wsgi.url_scheme", "SERVER_PORT")
    found = {k: environ[k] for k in keys if k in environ}
    found["cert_len"] = len(environ.get("HTTPS_CLIENT_CERTIFICATE", ""))
    return [json.dumps(found).encode()]
'''


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    where = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=test CA", cwd=where)
    (where / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, subject in (("server", "/CN=localhost"), ("client", "/C=FR/O=Zerg/CN=client one")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", subject, cwd=where)
        extra = ["-extfile", "san.ext"] if name == "server" else []
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", *extra, cwd=where)
    (where / "big").write_bytes(bytes(range(256)) * 1024)
    return where


def _start(uzerg: InstanceStarter, tmp_path: Path, pki: Path, *args: str):  # type: ignore[no-untyped-def]
    app = tmp_path / "app.py"
    app.write_text(APP)
    return uzerg.start(["--wsgi-file", str(app), "--master", *args],
                       env={"BIG_FILE": str(pki / "big")})


def _client(pki: Path, cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert:
        context.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    return context


def _get(port: int, context: ssl.SSLContext, path: str = "/") -> tuple[bytes, str | None]:
    """The whole reply and the TLS version used."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            version = tls.version()
            tls.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            return data, version


def _post(port: int, context: ssl.SSLContext, body: bytes) -> bytes:
    """The reply to a POST /echo of `body` (the app reads it with one read(n))."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"POST /echo HTTP/1.0\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n"
                        % len(body) + body)
            parts = []
            while chunk := tls.recv(65536):
                parts.append(chunk)
            return b"".join(parts)


def _json(data: bytes) -> dict[str, object]:
    return json.loads(data.partition(b"\r\n\r\n")[2])


def test_https_with_python_ssl_and_curl(uzerg: InstanceStarter, tmp_path: Path,
                                        pki: Path) -> None:
    port = free_port()
    spec = f"127.0.0.1:{port},{pki / 'server.pem'},{pki / 'server.key'}"
    inst = _start(uzerg, tmp_path, pki, "--https", spec)
    data, _tls = _get(port, _client(pki))
    assert data.startswith(b"HTTP/1.0 200") or data.startswith(b"HTTP/1.1 200")
    assert _json(data) == {"HTTPS": "on", "wsgi.url_scheme": "https", "SERVER_PORT": str(port),
                           "cert_len": 0}
    # a response sent through wsgi.file_wrapper (sendfile on plain sockets) arrives whole
    body = _get(port, _client(pki), "/file")[0].partition(b"\r\n\r\n")[2]
    assert body == (pki / "big").read_bytes()
    # a large request body read at once (received into one buffer on plain sockets only)
    upload = (pki / "big").read_bytes() * 2
    assert _post(port, _client(pki), upload).partition(b"\r\n\r\n")[2] == upload
    curl = subprocess.run(["curl", "-sS", "--cacert", str(pki / "ca.pem"),
                           f"https://localhost:{port}/"], capture_output=True, timeout=30)
    assert curl.returncode == 0 and json.loads(curl.stdout)["HTTPS"] == "on"
    # plain HTTP on the TLS port is a failed handshake, not a crash
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
        try:
            reply = raw.recv(100)
        except ConnectionResetError:
            reply = b""
        assert not reply.startswith(b"HTTP")  # at most a TLS alert
    assert _get(port, _client(pki))[0].startswith(b"HTTP/1.")
    # a reload keeps the socket and serves it over TLS again
    mark = inst.mark()
    inst.send(signal.SIGHUP)
    inst.wait_for_log("gracefully (RE)spawned uWSGI master process", since=mark)
    inst.wait_for_log("spawned uWSGI worker 1", since=mark)
    assert _json(_get(port, _client(pki))[0])["HTTPS"] == "on"


def test_client_certificates_optional_and_required(uzerg: InstanceStarter, tmp_path: Path,
                                                   pki: Path) -> None:
    optional, required = free_port(), free_port()
    base = f"{pki / 'server.pem'},{pki / 'server.key'},HIGH"
    _start(uzerg, tmp_path, pki,
           "--https2", f"addr=127.0.0.1:{optional},cert={pki / 'server.pem'},"
                       f"key={pki / 'server.key'},clientca={pki / 'ca.pem'}",
           "--https-socket", f"127.0.0.1:{required},{base},!{pki / 'ca.pem'}",
           "--https-export-cert")
    anonymous = _json(_get(optional, _client(pki))[0])
    assert "HTTPS_DN" not in anonymous and anonymous["cert_len"] == 0
    known = _json(_get(optional, _client(pki, cert=True))[0])
    assert known["HTTPS_DN"] == "/C=FR/O=Zerg/CN=client one"
    assert int(known["cert_len"]) > 500  # type: ignore[call-overload]
    assert str(known["HTTPS_CC"]).startswith("-----BEGIN CERTIFICATE-----")
    assert _json(_get(required, _client(pki, cert=True))[0])["HTTPS_DN"] == \
        "/C=FR/O=Zerg/CN=client one"
    with pytest.raises((ssl.SSLError, ConnectionError)):
        data, _tls = _get(required, _client(pki))  # no certificate: refused
        assert not data  # TLS 1.3 reports the refusal at the first read


def test_a_stalled_handshake_does_not_hold_the_worker(uzerg: InstanceStarter, tmp_path: Path,
                                                      pki: Path) -> None:
    port = free_port()
    spec = f"127.0.0.1:{port},{pki / 'server.pem'},{pki / 'server.key'}"
    inst = _start(uzerg, tmp_path, pki, "--https", spec, "--socket-timeout", "2")
    stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        stalled.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
        started = time.monotonic()
        data, _tls = _get(port, _client(pki))  # the only worker is free again in ~2 s
        assert data.startswith(b"HTTP/1.") and time.monotonic() - started < 8
        inst.wait_for_log("TLS handshake timed out after 2 s")
    finally:
        stalled.close()


def test_ssl_option_and_bad_certificates(uzerg: InstanceStarter, tmp_path: Path,
                                         pki: Path) -> None:
    port = free_port()
    spec = f"127.0.0.1:{port},{pki / 'server.pem'},{pki / 'server.key'}"
    _start(uzerg, tmp_path, pki, "--https", spec, "--ssl-option", str(int(ssl.OP_NO_TLSv1_3)))
    assert _get(port, _client(pki))[1] == "TLSv1.2"
    bad = uzerg.start(["--https", f"127.0.0.1:0,{pki / 'nope.pem'},{pki / 'server.key'}",
                       "--wsgi-file", str(tmp_path / "app.py")], wait_workers=None)
    assert bad.wait_exit() == 1
    log = bad.log_text()
    assert f"cannot load certificate {pki / 'nope.pem'}" in log and "Traceback" not in log
    bad = uzerg.start(["--https", f"127.0.0.1:0,{pki / 'server.pem'},{pki / 'server.key'},"
                       "NO-SUCH-CIPHER", "--wsgi-file", str(tmp_path / "app.py")],
                      wait_workers=None)
    assert bad.wait_exit() == 1
    assert "unable to set requested ciphers (NO-SUCH-CIPHER)" in bad.log_text()
    zerg = uzerg.start(["--https", spec.replace(str(port), "0"), "--zerg-server",
                        str(tmp_path / "zerg.sock"), "--wsgi-file", str(tmp_path / "app.py")],
                       wait_workers=None)
    assert zerg.wait_exit() == 1
    assert "zerg-server: cannot hand out https or http-to-https sockets" in zerg.log_text()


def test_shared_socket_references_http_to_https_and_http_to(uzerg: InstanceStarter,
                                                            tmp_path: Path, pki: Path) -> None:
    tls_port, plain_port, app_sock = free_port(), free_port(), tmp_path / "app.sock"
    inst = _start(uzerg, tmp_path, pki,
                  "--shared-socket", f"127.0.0.1:{plain_port}",
                  "--shared-socket", f"127.0.0.1:{tls_port}",
                  "--https", f"=1,{pki / 'server.pem'},{pki / 'server.key'}",
                  "--http-to-https", f"=0,{tls_port}",
                  "--socket", str(app_sock), "--http-to", str(app_sock))
    assert _json(_get(tls_port, _client(pki))[0])["HTTPS"] == "on"
    with socket.create_connection(("127.0.0.1", plain_port), timeout=10) as raw:
        raw.sendall(b"GET /a/b?c=d HTTP/1.1\r\nHost: example.test:8080\r\n\r\n")
        reply = b""
        while chunk := raw.recv(4096):
            reply += chunk
    assert reply == (f"HTTP/1.1 301 Moved Permanently\r\nLocation: https://example.test:"
                     f"{tls_port}/a/b?c=d\r\n\r\n").encode()
    curl = subprocess.run(["curl", "-sS", "-L", "--cacert", str(pki / "ca.pem"),
                           f"http://localhost:{plain_port}/"], capture_output=True, timeout=30)
    assert json.loads(curl.stdout)["wsgi.url_scheme"] == "https"
    assert f"http-to {app_sock}: this instance's own socket" in inst.log_text()
    refused = uzerg.start(["--http", "127.0.0.1:0", "--http-to", "127.0.0.1:1",
                           "--wsgi-file", str(tmp_path / "app.py")], wait_workers=None)
    assert refused.wait_exit() == 1
    assert "http-to 127.0.0.1:1: not one of this instance's sockets" in refused.log_text()
    missing = uzerg.start(["--http-socket", "=3", "--shared-socket", "127.0.0.1:0",
                           "--wsgi-file", str(tmp_path / "app.py")], wait_workers=None)
    assert missing.wait_exit() == 1
    assert "=3: no such shared socket (there are 1" in missing.log_text()


def _tls_connect(port: int, pki: Path) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return _client(pki).wrap_socket(raw, server_hostname="localhost")


def _read_reply(tls: ssl.SSLSocket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < int(
            data.partition(b"Content-Length: ")[2].partition(b"\r\n")[0] or 0):
        chunk = tls.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_incomplete_https_heads_wait_in_the_epoll(uzerg: InstanceStarter, tmp_path: Path,
                                                  pki: Path) -> None:
    """Slow TLS clients (handshake done, head incomplete) do not hold the only worker: their
    connections wait in its epoll like plain ones, are served when the head completes, and
    get a 408 (over TLS) at the head's deadline."""
    port = free_port()
    spec = f"127.0.0.1:{port},{pki / 'server.pem'},{pki / 'server.key'}"
    inst = _start(uzerg, tmp_path, pki, "--https", spec, "--socket-timeout", "3",
                  "--http-keepalive")
    slow = [_tls_connect(port, pki) for _ in range(10)]
    try:
        for tls in slow:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        started = time.monotonic()
        for _ in range(3):
            assert _json(_get(port, _client(pki))[0])["HTTPS"] == "on"
        assert time.monotonic() - started < 2.5  # well under the 3 s the slow ones may take
        # one slow head completes: it is served on the same connection
        slow[1].sendall(b"X-Late: 1\r\n\r\n")
        assert _read_reply(slow[1]).startswith(b"HTTP/1.1 200")
        # keep-alive: two whole requests in one TLS record longer than the server's first
        # read: the end of the second is decrypted already, inside the SSL object, when the
        # first is answered (the socket has nothing more and will not wake the epoll)
        first = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"a" * 700 + b"\r\n\r\n"
        second = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"b" * 3500 + b"\r\n\r\n"
        pipelined = _tls_connect(port, pki)
        slow.append(pipelined)
        pipelined.sendall(first + second)
        assert _read_reply(pipelined).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert _json(_read_reply(pipelined))["HTTPS"] == "on"
        assert time.monotonic() - started < 2.5  # not at the head's deadline
        # the others reach the whole head's deadline: a 408 over TLS
        slow[0].settimeout(10)
        assert _read_reply(slow[0]).startswith(b"HTTP/1.1 408 Request Timeout")
        inst.wait_for_log("request head incomplete after 3 s")
    finally:
        for tls in slow:
            tls.close()
