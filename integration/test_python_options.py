"""uWSGI's Python options, run for real (issue 10): import/shared-import/pymodule-alias,
pyargv, chdir2, eval, wsgi-disable-file-wrapper, optimize, py-autoreload (a graceful reload
when a loaded module's file changes), paste/paste-logger (PasteDeploy) and declare-option."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from support.clients import http_get
from support.processes import InstanceStarter, wait_until

REPORT_APP = '''
import json, os, sys

def application(environ, start_response):
    import helper
    body = json.dumps({
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "imported": [m for m in ("helper", "shared_one", "lazy_one") if m in sys.modules],
        "alias": sys.modules["myalias"].NAME if "myalias" in sys.modules else None,
        "file_wrapper": "wsgi.file_wrapper" in environ,
        "optimize": sys.flags.optimize,
        "debug": __debug__,
    }).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
'''


def report(address: str) -> dict[str, object]:
    status, body = http_get(address, "/")
    assert status == 200, body
    return json.loads(body.split(b"\r\n\r\n")[-1] if body.startswith(b"HTTP") else body)


def modules(tmp_path: Path) -> Path:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "helper.py").write_text("NAME = 'helper'\n")
    (lib / "shared_one.py").write_text("NAME = 'shared'\n")
    (lib / "lazy_one.py").write_text("NAME = 'lazy'\n")
    (tmp_path / "aliased.py").write_text("NAME = 'aliased by file'\n")
    (tmp_path / "after").mkdir()
    return lib


def test_imports_aliases_pyargv_chdir2_eval_and_no_file_wrapper(uzerg: InstanceStarter,
                                                                  tmp_path: Path) -> None:
    lib = modules(tmp_path)
    ini = tmp_path / "py.ini"
    ini.write_text(
        "[uwsgi]\nmaster = true\nhttp-socket = 127.0.0.1:0\n"
        f"pythonpath = {lib}\n"
        "shared-import = shared_one\n"
        "import = helper\npyimport = lazy_one\n"
        f"pymodule-alias = myalias={tmp_path / 'aliased.py'}\n"
        "pyargv = --one two  three\n"
        f"chdir2 = {tmp_path / 'after'}\n"
        "wsgi-disable-file-wrapper = true\n"
        "eval = " + "; ".join(line for line in REPORT_APP.strip().splitlines()
                               if not line.startswith(("def", " "))) + "\n")
    # eval's code is one line in an INI file: define the app with exec of the report source
    ini.write_text(ini.read_text().replace(
        ini.read_text().splitlines()[-1],
        f"eval = exec(open({str(tmp_path / 'report.py')!r}).read())"))
    (tmp_path / "report.py").write_text(REPORT_APP)
    instance = uzerg.start(["--ini", str(ini)])
    seen = report(instance.address())
    assert seen["argv"] == ["uwsgi", "--one", "two", "three"]
    assert seen["cwd"] == str(tmp_path / "after")
    assert sorted(seen["imported"]) == ["helper", "lazy_one", "shared_one"]  # type: ignore[arg-type]
    assert seen["alias"] == "aliased by file"
    assert seen["file_wrapper"] is False
    instance.stop()


def test_optimize_runs_the_interpreter_with_O(uzerg: InstanceStarter, tmp_path: Path) -> None:
    modules(tmp_path)
    (tmp_path / "report.py").write_text(REPORT_APP)
    instance = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file",
                            str(tmp_path / "report.py"), "--pythonpath", str(tmp_path / "lib"),
                            "--optimize", "2"])
    seen = report(instance.address())
    assert seen["optimize"] == 2 and seen["debug"] is False
    assert seen["file_wrapper"] is True
    instance.stop()


def test_py_autoreload_reloads_when_a_module_changes(uzerg: InstanceStarter,
                                                     tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "version.py").write_text("VERSION = 'one'\n")
    app = tmp_path / "app.py"
    app.write_text("import version\n\ndef application(environ, start_response):\n"
                   "    start_response('200 OK', [])\n    return [version.VERSION.encode()]\n")
    instance = uzerg.start(["--master", "--http-socket", "127.0.0.1:0", "--wsgi-file", str(app),
                            "--pythonpath", str(lib), "--py-autoreload", "1"])
    address = instance.address()
    assert http_get(address)[1].endswith(b"one")
    (lib / "version.py").write_text("VERSION = 'two'\n")
    stamp = time.time() + 5
    os.utime(lib / "version.py", (stamp, stamp))  # a different mtime, whatever the clock's grain
    line = instance.wait_for_log("[uwsgi-python-reloader] module/file")
    assert "version.py has been modified" in line
    instance.wait_for_log("gracefully (RE)spawned uWSGI master process")
    wait_until(lambda: http_get(address)[1].endswith(b"two"), 20, "the new code answering")
    uzerg.track(instance)
    instance.stop()


PASTE_INI = """
[app:main]
paste.app_factory = pasteapp:factory
greeting = hello from paste

[loggers]
keys = root, pasteapp

[handlers]
keys = file

[formatters]
keys = plain

[logger_root]
level = WARNING
handlers =

[logger_pasteapp]
level = INFO
handlers = file
qualname = pasteapp

[handler_file]
class = FileHandler
args = ({log!r},)
formatter = plain

[formatter_plain]
format = %(name)s %(message)s
"""

PASTE_APP = """
import logging

def factory(global_config, **settings):
    greeting = settings["greeting"].encode()

    def application(environ, start_response):
        logging.getLogger("pasteapp").info("served %s", environ["PATH_INFO"])
        start_response("200 OK", [("Content-Length", str(len(greeting)))])
        return [greeting]

    return application
"""


def test_paste_and_paste_logger(uzerg: InstanceStarter, tmp_path: Path) -> None:
    pytest.importorskip("paste.deploy")
    log = tmp_path / "paste.log"
    (tmp_path / "paste.ini").write_text(PASTE_INI.format(log=str(log)))
    (tmp_path / "pasteapp.py").write_text(PASTE_APP)
    instance = uzerg.start(["--http-socket", "127.0.0.1:0", "--paste",
                            f"config:{tmp_path / 'paste.ini'}", "--paste-logger",
                            "--pythonpath", str(tmp_path)])
    assert http_get(instance.address(), "/hi")[1].endswith(b"hello from paste")
    wait_until(lambda: log.exists() and "pasteapp served /hi" in log.read_text(), 10,
               "the paste logger's line")
    instance.stop()


def test_declare_option_expands_into_real_options(uzerg: InstanceStarter,
                                                  tmp_path: Path) -> None:
    modules(tmp_path)
    (tmp_path / "report.py").write_text(REPORT_APP)
    ini = tmp_path / "custom.ini"
    ini.write_text("[uwsgi]\n"
                   "declare-option = webapp=http-socket=127.0.0.1:0;wsgi-file=$1;pythonpath=$2\n"
                   "declare-option2 = argv=pyargv=$2 $1\n"
                   f"webapp = {tmp_path / 'report.py'} {tmp_path / 'lib'}\n"
                   "argv = first second\n")
    instance = uzerg.start(["--ini", str(ini)])
    assert report(instance.address())["argv"] == ["uwsgi", "second", "first"]
    instance.stop()
