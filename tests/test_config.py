"""Merging sources, the documentation's command lines, validation and error lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from uzerg.config.load import Config, ConfigError, format_config, load_config
from uzerg.config.values import ZergPoolEntry

ROOT = Path(__file__).resolve().parent.parent


def load(*argv: str, env: dict[str, str] | None = None) -> Config:
    return load_config(list(argv), env or {}, write=lambda _t: None)


def error(*argv: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(*argv, env=env)
    return str(info.value)


# -- the Zerg documentation's command lines ---------------------------------------------------
def test_doc_zerg_server_path() -> None:
    c = load(*"-M -p 8 --module welcome --zerg-server /var/run/mutalisk".split())
    assert (c.master, c.processes, c.module, c.zerg_server) == (True, 8, "welcome",
                                                                "/var/run/mutalisk")


def test_doc_zerg_server_abstract() -> None:
    c = load(*"-M -p 8 --module welcome --zerg-server @nydus".split())
    assert c.zerg_server == "@nydus" and c.processes == 8


def test_doc_zerg_client() -> None:
    c = load(*"--zerg /var/run/mutalisk --master --processes 4 --module welcome".split())
    assert (c.zerg, c.master, c.processes, c.module) == (("/var/run/mutalisk",), True, 4,
                                                         "welcome")


def test_doc_two_pools() -> None:
    c = load(*("--zerg /tmp/zergpool_1 --zerg /tmp/zergpool_2 --wsgi-file myapp.wsgi "
               "--master --processes 8").split())
    assert c.zerg == ("/tmp/zergpool_1", "/tmp/zergpool_2")
    assert (c.wsgi_file, c.master, c.processes) == ("myapp.wsgi", True, 8)


def test_doc_fallback() -> None:
    c = load(*"--zerg-fallback --socket 127.0.0.1:3031 --zerg /tmp/z".split())
    assert (c.zerg_fallback, c.socket, c.zerg) == (True, ("127.0.0.1:3031",), ("/tmp/z",))


def test_doc_zergpool_ini() -> None:
    c = load(str(ROOT / "configs" / "zergpool.ini"))
    assert c.master is True
    assert c.zergpool == (
        ZergPoolEntry("/tmp/zergpool_1", ("127.0.0.1:3031", "127.0.0.1:3032")),
        ZergPoolEntry("/tmp/zergpool_2", ("192.168.173.22:3031", "192.168.173.22:3032")),
    )
    assert c.warnings == ()


def test_quickstart_configs(tmp_path: Path) -> None:
    server = load(str(ROOT / "configs" / "quickstart.ini"))
    assert server.wsgi_file == str(ROOT / "configs" / "demo_app.py")
    assert server.http_socket == ("127.0.0.1:8080",) and server.zerg_server
    zerg = load(str(ROOT / "configs" / "zerg.ini"))
    assert zerg.zerg == (server.zerg_server,) and zerg.warnings == ()


# -- command-line forms ---------------------------------------------------------------------
def test_equals_and_combined_short_flags() -> None:
    c = load("--processes=3", "-MTp8", "-b", "8192", "-t30", "-R", "100", "-L", "-l", "64",
             "-s", ":3031", "-w", "pkg.mod:app", "-H", "/venv", "-d", "/tmp/log")
    assert (c.master, c.enable_threads, c.processes, c.buffer_size) == (True, True, 8, 8192)
    assert (c.harakiri, c.max_requests, c.disable_logging, c.listen) == (30, 100, True, 64)
    assert (c.socket, c.module, c.home, c.daemonize) == ((":3031",), "pkg.mod:app", "/venv",
                                                         "/tmp/log")


def test_chmod_socket_forms() -> None:
    assert load("-C").chmod_socket == 0o666
    assert load("--chmod-socket").chmod_socket == 0o666
    assert load("--chmod-socket=660").chmod_socket == 0o660
    assert load("-C660").chmod_socket == 0o660
    assert load("--chmod-socket=0640").chmod_socket == 0o640
    assert load().chmod_socket is None
    assert "invalid socket mode" in error("--chmod-socket=rw")


def test_flags_take_uwsgi_booleans() -> None:
    assert load("--master=false").master is False
    assert load("--master=0", "--vacuum=yes").vacuum is True


def test_bare_ini_argument_is_read_after_the_options(tmp_path: Path) -> None:
    f = tmp_path / "site.ini"
    f.write_text("[uwsgi]\nprocesses = 2\n[prod]\nprocesses = 6\n")
    assert load("--processes", "5", str(f)).processes == 2  # uWSGI: bare files come last
    assert load(f"{f}:prod").processes == 6
    assert load("--processes", "5", "--ini", str(f), "--threads", "2").processes == 2
    assert load("--ini", str(f), "--processes", "5").processes == 5


def test_bare_python_file_is_wsgi_file() -> None:
    assert load("app.py").wsgi_file == "app.py"


def test_environment_first(tmp_path: Path) -> None:
    env = {"UWSGI_ZERG_FALLBACK": "1", "UWSGI_PROCESSES": "3", "UZERG_LOG_JSON": "true",
           "UWSGI_SOCKET": "/tmp/env.sock", "UWSGI_PROFILE": "x", "UWSGI_RELOADS": "2"}
    c = load("--socket", ":1", env=env)
    assert (c.zerg_fallback, c.processes, c.log_json) == (True, 3, True)
    assert c.socket == ("/tmp/env.sock", ":1")
    assert load("-p", "5", env=env).processes == 5
    assert c.origins["processes"].source == "environment"


def test_uwsgi_ini_from_environment(tmp_path: Path) -> None:
    f = tmp_path / "site.ini"
    f.write_text("[uwsgi]\nprocesses = 7\n")
    assert load(env={"UWSGI_INI": str(f)}).processes == 7


def test_lists_accumulate_scalars_last_wins(tmp_path: Path) -> None:
    f = tmp_path / "a.ini"
    f.write_text("[uwsgi]\nsocket = :1\nprocesses = 2\nsocket = :2\nprocesses = 3\n"
                 "workers = 4\nzerg-pool = /tmp/p:127.0.0.1:1\nuwsgi-socket = :3\n")
    c = load(str(f))
    assert c.socket == (":1", ":2", ":3") and c.processes == 4
    assert c.zergpool == (ZergPoolEntry("/tmp/p", ("127.0.0.1:1",)),)


def test_int_with_trailing_comment_as_uwsgi_reads_it(tmp_path: Path) -> None:
    f = tmp_path / "a.ini"
    f.write_text("[uwsgi]\nreload-on-rss = 300 # MB\nmax-requests = 1000    ; restart\n"
                 "lazy-apps = false # no\n")
    c = load(str(f))
    assert (c.reload_on_rss, c.max_requests, c.lazy_apps) == (300, 1000, True)
    assert any("counts as true" in w for w in c.warnings)


def test_buffer_size_above_maximum_is_clamped_with_a_warning() -> None:
    c = load("--buffer-size", "65536")
    assert c.buffer_size == 65535 and c.warnings


def test_empty_string_value_means_default(tmp_path: Path) -> None:
    f = tmp_path / "a.ini"
    f.write_text("[uwsgi]\ncallable =\npidfile =\n")
    c = load(str(f))
    assert c.callable == "application" and c.pidfile is None


# -- errors: one line, file:line: key: message -------------------------------------------------
def test_error_lines(tmp_path: Path) -> None:
    site = tmp_path / "site.ini"
    site.write_text("[uwsgi]\n" + "\n" * 5 + "zergpool = /tmp/p\n")
    assert error(str(site)) == f"{site}:7: zergpool: invalid zergpool syntax: /tmp/p"
    assert error("-p", "0") == "command line: -p: must be at least 1: 0"
    assert error("--strict", "--processes", "many") == (
        "command line: --processes: 'many' is not a number; uWSGI reads it as 0, below the "
        "minimum 1: uzerg uses 1 (strict mode)")


def test_command_line_errors() -> None:
    assert error("--proesses", "2") == ("command line: --proesses: unrecognized option "
                                        "(did you mean --processes?)")
    assert error("--socket") == "command line: --socket: needs a value"
    assert error("-Y") == "command line: -Y: unrecognized option"
    assert "unexpected argument" in error("stray")
    assert "only INI" in error("--ini", "x.yaml")


def test_value_validation() -> None:
    assert "expected NAME=VALUE" in error("--env", "FOO")
    assert "expected /URL=/DIR" in error("--static-map", "/static")
    assert "expected /PREFIX=APP" in error("--mount", "/app")
    assert "unsupported protocol" in error("--protocol", "fastcgi")
    assert load("--protocol", "http").protocol == "http"


def test_unknown_keys_are_sorted(tmp_path: Path) -> None:
    f = tmp_path / "a.ini"
    f.write_text("[uwsgi]\nplugins = python3\nproesses = 4\noffload-threads = 2\n"
                 "base = /srv\nchdir = %(base)\n")
    c = load(str(f))
    assert c.warnings == (
        f"{f}:3: proesses: unknown option, ignored (did you mean `processes`?)",
        f"{f}:4: offload-threads: uWSGI option not implemented by uzerg, ignored: uzerg's "
        "workers send files themselves with sendfile()",
    )
    emperor = tmp_path / "e.ini"
    emperor.write_text("[uwsgi]\nemperor = /etc/uwsgi/vassals\nemperor-use-clone = fs,pid\n")
    assert error(str(emperor)) == (
        f"{emperor}:3: emperor-use-clone: uzerg does not provide this uWSGI feature; running "
        "without it would change the service "
        "(run one uzerg per app under systemd or another supervisor)")
    emperor.write_text("[uwsgi]\nsocket = /tmp/s\nemperor = /etc/uwsgi/vassals\n")
    assert error(str(emperor)).startswith(
        f"{emperor}:3: emperor: uzerg does not provide this uWSGI feature: an Emperor beside "
        "an instance (`socket`)")
    with pytest.raises(ConfigError) as info:
        load("--strict", str(f))
    assert "proesses" in str(info.value) and "strict mode" in str(info.value)


def test_strict_applies_from_where_it_is_set(tmp_path: Path) -> None:
    f = tmp_path / "a.ini"
    f.write_text("[uwsgi]\noffload-threads = 2\nstrict = true\nmaster = true\n")
    assert load(str(f)).warnings
    f.write_text("[uwsgi]\nstrict = true\nbase = /srv\nchdir = %(base)\n")
    assert "set-placeholder" in error(str(f))


def test_warnings_before_an_error_are_kept(tmp_path: Path) -> None:
    f = tmp_path / "a.ini"
    f.write_text("[uwsgi]\nharakiri-verbose = true\nchmod-socket = rw\n")
    with pytest.raises(ConfigError) as info:
        load(str(f))
    assert info.value.warnings == (f"{f}:2: harakiri-verbose: uWSGI option not implemented by "
                                   "uzerg, ignored",)


def test_format_config_lists_each_value_in_order() -> None:
    c = load("--master", "--socket", ":1", "--workers", "2", "--socket", ":2", "--check-config")
    assert format_config(c) == (";uWSGI instance configuration\n[uwsgi]\nmaster = true\n"
                                "socket = :1\nsocket = :2\nprocesses = 2\n"
                                ";end of configuration\n")
