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
    assert error("--strict", "--proesses", "2") == ("command line: --proesses: unrecognized "
                                                    "option (did you mean --processes?)")


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
    f.write_text("[uwsgi]\nproesses = 2\nstrict = true\nmaster = true\n")
    assert load(str(f)).warnings
    f.write_text("[uwsgi]\nstrict = true\nproesses = 2\n")
    assert "proesses: unknown option" in error(str(f))
    f.write_text("[uwsgi]\nstrict = true\nbase = /srv\nchdir = %(base)\n")
    assert "set-placeholder" in error(str(f))


def test_strict_fails_only_on_keys_uwsgi_does_not_know(tmp_path: Path) -> None:
    """uwsgi 2.0.31 --strict runs a file with a lenient number, a known option uzerg ignores, a
    missing section and a plugin it cannot load; it exits on "unknown config directive" only."""
    f = tmp_path / "a.ini"
    f.write_text("[uwsgi]\nstrict = true\nprocesses = 4x\nharakiri-verbose = true\n"
                 "plugin = /srv/escape_json_plugin.so\nchmod-socket = 666\n")
    c = load(str(f))
    assert c.processes == 4 and c.strict
    assert [w.split(": ", 2)[1] for w in c.warnings] == ["processes", "harakiri-verbose",
                                                         "plugin"]
    assert load("--strict", f"{f}:nope").warnings[0].endswith("section [nope] not found")
    f.write_text("[uwsgi]\nstrict = true\nchmod-sock = 666\n")
    assert error(str(f)) == (f"{f}:3: chmod-sock: unknown option, ignored (did you mean "
                             "`chmod-socket`?) (strict mode)")


def test_warnings_before_an_error_are_kept(tmp_path: Path) -> None:
    f = tmp_path / "a.ini"
    f.write_text("[uwsgi]\nharakiri-verbose = true\nchmod-socket = rw\n")
    with pytest.raises(ConfigError) as info:
        load(str(f))
    assert info.value.warnings == (f"{f}:2: harakiri-verbose: uWSGI option not implemented by "
                                   "uzerg, ignored: uzerg logs each harakiri with the worker's "
                                   "id and pid",)


def test_format_config_lists_each_value_in_order() -> None:
    c = load("--master", "--socket", ":1", "--workers", "2", "--socket", ":2", "--check-config")
    assert format_config(c) == (";uWSGI instance configuration\n[uwsgi]\nmaster = true\n"
                                "socket = :1\nsocket = :2\nprocesses = 2\n"
                                ";end of configuration\n")


def test_plugins_uzerg_cannot_load(tmp_path: Path) -> None:
    """uWSGI logs a plugin it cannot load and goes on; need-plugin exits instead (uwsgi 2.0.31:
    "unable to load plugin", exit 1). uzerg loads no C plugins."""
    f = tmp_path / "a.ini"
    f.write_text("[uwsgi]\nplugin = /srv/escape_json_plugin.so\nneed-plugin = python3\n")
    assert load(str(f)).warnings == (
        f"{f}:2: plugin: uWSGI option not implemented by uzerg, ignored: uzerg cannot load "
        "uWSGI's C plugins and goes on without it, as uWSGI does with a plugin it cannot load",)
    f.write_text("[uwsgi]\nneed-plugins = python3,/srv/escape_json_plugin.so\n")
    assert error(str(f)) == (
        f"{f}:2: need-plugins: uzerg does not provide this uWSGI feature; running without it "
        "would change the service (uzerg cannot load uWSGI's C plugins, and uWSGI exits when a "
        "need-plugin does not load)")


def test_uwsgi_options_of_pcre_and_libcap_builds_are_known(tmp_path: Path) -> None:
    """Options uWSGI 2.0 has only when built with PCRE or libcap (pip's build lacks them) are
    uWSGI options, not typos: tuning ones warn with what uzerg does, the others are refused."""
    f = tmp_path / "a.ini"
    f.write_text("[uwsgi]\npcre-jit = true\nlog-drain = ^ping\n"
                 "lazy = true\nreload-mercy = 8\n")
    c = load("--strict", str(f))
    assert c.lazy_apps is True
    assert c.warnings == (
        f"{f}:2: pcre-jit: uWSGI option not implemented by uzerg, ignored: uzerg has no PCRE "
        "regexps to compile",
        f"{f}:3: log-drain: uWSGI option not implemented by uzerg, ignored: uzerg logs every "
        "line: filter in the log collector",
        f"{f}:5: reload-mercy: uWSGI option not implemented by uzerg, ignored: uzerg gives each "
        "stopping worker worker-reload-mercy seconds (default 60) before SIGKILL",
    )
    f.write_text("[uwsgi]\ncap = setgid,setuid\n")
    assert "cap: uzerg does not provide this uWSGI feature" in error(str(f))
    f.write_text("[uwsgi]\ncap = net_bind_service\n")  # to bind :80: uzerg binds as root
    assert load(str(f)).warnings == (
        f"{f}:2: cap: uWSGI option not implemented by uzerg, ignored: uzerg binds its sockets "
        "before dropping privileges and keeps them across reloads",)
    f.write_text("[uwsgi]\nroute-remote-user = ^bob$ break:403\n")
    assert "route-remote-user: uzerg does not provide this uWSGI feature" in error(str(f))
    f.write_text("[uwsgi]\njail = /jails/app\n")
    assert "jail: uzerg does not provide this uWSGI feature" in error(str(f))
    f.write_text("[uwsgi]\nhttp-enable-proxy-protocol = 1\n")  # every request would fail
    assert error(str(f)).endswith("(uzerg's HTTP reader does not take the PROXY protocol line: "
                                  "have the proxy send X-Forwarded-For instead)")



def test_pidfile2_is_an_option(tmp_path: Path) -> None:
    """uWSGI's pidfile2 (written after privileges are dropped) is implemented, not ignored."""
    f = tmp_path / "a.ini"
    f.write_text("[uwsgi]\npidfile = /run/app.pid\npidfile2 = /tmp/app.pid\n")
    c = load(str(f))
    assert (c.pidfile, c.pidfile2, c.warnings) == ("/run/app.pid", "/tmp/app.pid", ())
