"""Application loading (module, wsgi-file, callable, pythonpath, mount) and PEP 3333 conformance
under wsgiref.validate, served through the real RequestHandler over socketpairs."""

from __future__ import annotations

import sys
import textwrap
import uuid
import warnings
from pathlib import Path
from typing import Any
from wsgiref.validate import validator

import pytest
from config_helpers import make_config
from request_helpers import exchange, logs_fixture  # noqa: F401

from uzerg.protocols.uwsgi import encode_uwsgi_packet
from uzerg.serve.apps import AppLoadError, MountDispatcher, load_application, no_application
from uzerg.serve.request import RequestHandler

APP_SOURCE = """
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [NAME.encode() + b" " + environ["SCRIPT_NAME"].encode() + b"|"
            + environ["PATH_INFO"].encode()]

def other(environ, start_response):
    start_response("200 OK", [])
    return [b"other"]

not_callable = 42
"""


@pytest.fixture
def isolated_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write_module(directory: Path, name: str, source: str | None = None) -> str:
    """Write `<name>.py` into directory and return a unique module name."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(
        source if source is not None else f"NAME = {name!r}\n" + APP_SOURCE
    )
    return name


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def call(app: Any, path: str = "/", script_name: str = "") -> bytes:
    captured: list[str] = []
    environ = {"PATH_INFO": path, "SCRIPT_NAME": script_name}
    body = b"".join(app(environ, lambda status, headers, exc_info=None: captured.append(status)))
    return body


# -- loading ----------------------------------------------------------------------------------


def test_module_from_pythonpath(tmp_path, isolated_imports):
    name = write_module(tmp_path / "src", unique("mod"))
    app = load_application(make_config(module=name, pythonpath=(str(tmp_path / "src"),)))
    assert call(app, "/x") == f"{name} |/x".encode()


def test_module_with_explicit_callable(tmp_path, isolated_imports):
    name = write_module(tmp_path, unique("mod"))
    app = load_application(make_config(module=f"{name}:other", pythonpath=(str(tmp_path),)))
    assert call(app) == b"other"


def test_callable_option(tmp_path, isolated_imports):
    name = write_module(tmp_path, unique("mod"))
    app = load_application(make_config(module=name, callable="other",
                                       pythonpath=(str(tmp_path),)))
    assert call(app) == b"other"


def test_dotted_package_module(tmp_path, isolated_imports):
    pkg = unique("pkg")
    (tmp_path / pkg).mkdir()
    (tmp_path / pkg / "__init__.py").write_text("")
    write_module(tmp_path / pkg, "wsgi")
    app = load_application(make_config(module=f"{pkg}.wsgi", pythonpath=(str(tmp_path),)))
    assert call(app) == b"wsgi |/"


@pytest.mark.parametrize("filename", ["app.py", "site.wsgi", "noext"])
def test_wsgi_file_any_extension(tmp_path, isolated_imports, filename):
    path = tmp_path / filename
    path.write_text("NAME = 'file'\n" + APP_SOURCE)
    app = load_application(make_config(wsgi_file=str(path)))
    assert call(app) == b"file |/"


def test_wsgi_file_relative_to_cwd(tmp_path, isolated_imports, monkeypatch):
    (tmp_path / "rel.py").write_text("NAME = 'rel'\n" + APP_SOURCE)
    monkeypatch.chdir(tmp_path)
    assert call(load_application(make_config(wsgi_file="rel.py"))) == b"rel |/"


def test_wsgi_file_can_import_its_neighbours_via_pythonpath(tmp_path, isolated_imports):
    helper = unique("helper")
    (tmp_path / f"{helper}.py").write_text("GREETING = b'hi'\n")
    (tmp_path / "app.py").write_text(textwrap.dedent(f"""
        import {helper}
        def application(environ, start_response):
            start_response("200 OK", [])
            return [{helper}.GREETING]
    """))
    app = load_application(make_config(wsgi_file=str(tmp_path / "app.py"),
                                       pythonpath=(str(tmp_path),)))
    assert call(app) == b"hi"


@pytest.mark.parametrize(
    "source,message",
    [
        (None, "callable 'missing' not found in"),
        ("import no_such_module_xyz\n", "No module named 'no_such_module_xyz'"),
        ("raise RuntimeError('bad\\nconfig')\n", "RuntimeError: bad config"),
        ("def f(:\n", "SyntaxError"),
        ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
    ],
)
def test_module_errors_are_one_line(tmp_path, isolated_imports, logs, source, message):
    name = write_module(tmp_path, unique("bad"), source)
    with pytest.raises(AppLoadError) as info:
        load_application(make_config(module=name, callable="missing",
                                     pythonpath=(str(tmp_path),)))
    text = str(info.value)
    assert message in text and "\n" not in text
    if source is not None:
        assert "Traceback (most recent call last):" in logs.getvalue()


def test_missing_module(isolated_imports, logs):
    with pytest.raises(AppLoadError, match="unable to import module 'nope_nope'"):
        load_application(make_config(module="nope_nope"))


def test_missing_wsgi_file(tmp_path, isolated_imports):
    with pytest.raises(AppLoadError, match=r"unable to load wsgi file .*/nope\.py: no such file"):
        load_application(make_config(wsgi_file=str(tmp_path / "nope.py")))


def test_not_callable(tmp_path, isolated_imports):
    name = write_module(tmp_path, unique("mod"))
    with pytest.raises(AppLoadError, match="'not_callable' in .* is not callable"):
        load_application(make_config(module=f"{name}:not_callable", pythonpath=(str(tmp_path),)))


def test_nothing_configured():
    with pytest.raises(AppLoadError, match="no application configured"):
        load_application(make_config())


def test_bad_mount_syntax(tmp_path, isolated_imports):
    with pytest.raises(AppLoadError, match="invalid mount syntax: /x"):
        load_application(make_config(mount=("/x",)))


# -- mounts -----------------------------------------------------------------------------------


def test_mount_with_manage_script_name(tmp_path, isolated_imports):
    a, b, main = (write_module(tmp_path, unique(n)) for n in ("a", "b", "main"))
    app = load_application(make_config(
        module=main, pythonpath=(str(tmp_path),), manage_script_name=True,
        mount=(f"/app={a}", f"/app/deeper={b}", f"/file={tmp_path / (b + '.py')}"),
    ))
    assert isinstance(app, MountDispatcher)
    assert call(app, "/app/x") == f"{a} /app|/x".encode()
    assert call(app, "/app") == f"{a} /app|".encode()
    assert call(app, "/app/deeper/y") == f"{b} /app/deeper|/y".encode()
    assert call(app, "/application") == f"{main} |/application".encode()
    assert call(app, "/file/z") == f"{b} /file|/z".encode()


def test_mount_without_manage_script_name_uses_script_name(tmp_path, isolated_imports):
    a, main = (write_module(tmp_path, unique(n)) for n in ("a", "main"))
    app = load_application(make_config(module=main, pythonpath=(str(tmp_path),),
                                       mount=(f"/app={a}",)))
    assert call(app, "/x", script_name="/app") == f"{a} /app|/x".encode()
    assert call(app, "/app/x") == f"{main} |/app/x".encode()


def test_without_a_main_app_the_first_mount_is_the_default(logs):
    # uWSGI 2.0.31: the first mount is app 0, "(default app)": it gets what no mount claims
    def answer(text: bytes) -> Any:
        def app(environ, start_response):
            start_response("200 OK", [])
            return [text + b" " + environ["SCRIPT_NAME"].encode() + b"|"
                    + environ["PATH_INFO"].encode()]
        return app

    dispatcher = MountDispatcher([("/a", answer(b"A")), ("/b", answer(b"B"))], None, True)

    def get(path: str, script_name: str = "") -> bytes:
        environ = {"PATH_INFO": path, "SCRIPT_NAME": script_name}
        return b"".join(dispatcher(environ, lambda s, h, e=None: None))

    assert get("/c") == b"A |/c"
    assert get("/ab") == b"A |/ab"  # not a whole segment
    assert get("/b/y") == b"B /b|/y"
    # as uWSGI: the mountpoint replaces the SCRIPT_NAME sent; a SCRIPT_NAME naming a mount
    # picks it when PATH_INFO matches none; one naming no mount goes to the default app
    assert get("/b/y", script_name="/a") == b"B /b|/y"
    assert get("/y", script_name="/b") == b"B /b|/y"
    assert get("/zz/q", script_name="/zz") == b"A /zz|/zz/q"


def test_mount_dispatcher_without_any_app_answers_500(logs):
    statuses: list[str] = []
    MountDispatcher([], None, True)({"PATH_INFO": "/b"}, lambda s, h, e=None: statuses.append(s))
    assert statuses == ["500 Internal Server Error"]
    assert "no python application found" in logs.getvalue()


def test_no_application_is_a_valid_wsgi_app(logs):
    statuses: list[str] = []
    assert no_application({}, lambda s, h, e=None: statuses.append(s)) == [b"Internal Server Error"]


# -- PEP 3333 conformance under wsgiref.validate ----------------------------------------------


def conformant_app(environ: dict[str, Any], start_response: Any) -> Any:
    stream = environ["wsgi.input"]
    body = stream.read(int(environ.get("CONTENT_LENGTH") or 0) or 0)
    environ["wsgi.errors"].write("validated\n")
    environ["wsgi.errors"].flush()
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"via write;")
    return iter([b"echo:", body])


@pytest.mark.parametrize(
    "protocol,raw",
    [
        ("http", b"GET /v?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("http", b"POST /v HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody"),
        ("http", b"POST /v HTTP/1.0\r\nContent-Length: 4\r\n\r\nbody"),
        ("http11", b"POST /v HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody"
                   b"GET /w HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("uwsgi", encode_uwsgi_packet({
            "REQUEST_METHOD": "POST", "REQUEST_URI": "/v", "PATH_INFO": "/v", "QUERY_STRING": "",
            "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "CONTENT_LENGTH": "4", "CONTENT_TYPE": "text/plain"}, b"body")),
    ],
)
def test_runs_unmodified_under_wsgiref_validator(logs, protocol, raw):
    handler = RequestHandler(validator(conformant_app), make_config(), 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reply, counts = exchange(handler, raw, protocol=protocol)
    assert counts.exceptions == 0, logs.getvalue()
    assert counts.status == 200
    assert not [w for w in caught if "wsgiref" in str(w.filename) or "WSGI" in str(w.category)]
    assert b"via write;echo:" in reply.replace(b"\r\n5\r\n", b"").replace(b"a\r\n", b"")
    assert "validated" in logs.getvalue()


def test_sys_path_order_matches_uwsgi(tmp_path, isolated_imports, monkeypatch):
    # uwsgi --chdir D --pythonpath /opt/a --pythonpath /opt/b shows ['/opt/b', '/opt/a', '.']
    name = write_module(tmp_path, unique("mod"))
    monkeypatch.chdir(tmp_path)
    sys.path[:] = [p for p in sys.path if p not in (".", "")]
    load_application(make_config(module=name, pythonpath=("/opt/a", "/opt/b")))
    assert sys.path[:3] == ["/opt/b", "/opt/a", "."]


def test_module_in_the_current_directory_is_importable(tmp_path, isolated_imports, monkeypatch):
    name = write_module(tmp_path, unique("mod"))
    monkeypatch.chdir(tmp_path)
    sys.path[:] = [p for p in sys.path if p not in (".", "")]
    assert call(load_application(make_config(module=name))) == f"{name} |/".encode()


def test_flask_app_round_trip(logs):
    flask = pytest.importorskip("flask")
    app = flask.Flask("uzerg_test")

    @app.post("/form")
    def form():  # type: ignore[no-untyped-def]
        return {"name": flask.request.form["name"], "path": flask.request.path,
                "url": flask.request.url}

    handler = RequestHandler(app, make_config(), 1)
    body = b"name=caf%C3%A9"
    raw = (b"POST /form HTTP/1.1\r\nHost: example.com\r\n"
           b"Content-Type: application/x-www-form-urlencoded\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    reply, counts = exchange(handler, raw, protocol="http11")
    assert counts.status == 200, logs.getvalue()
    assert b'"name":"caf\\u00e9"' in reply and b'"url":"http://example.com/form"' in reply
