"""The option table: declarations, booleans, generated docs and help."""

from __future__ import annotations

from pathlib import Path

import pytest

from uzerg.config import docs, options, uwsgi_options
from uzerg.config.load import Config, load_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("text", ["false", "FALSE", "Off", "no", "NO", "0", " false "])
def test_false_words(text: str) -> None:
    assert options.parse_bool(text) is False


@pytest.mark.parametrize("text", ["", "true", "1", "yes", "on", "anything", "00", None])
def test_true_words(text: str | None) -> None:
    assert options.parse_bool(text) is True


def test_every_option_is_a_config_attribute_with_its_default() -> None:
    config = load_config([], {})
    for option in options.OPTIONS:
        assert hasattr(config, option.attr)
        assert getattr(config, option.attr) == option.initial
    assert isinstance(config, Config)


def test_contract_defaults() -> None:
    c = load_config([], {})
    assert (c.processes, c.threads, c.listen, c.buffer_size) == (1, 1, 100, 4096)
    assert (c.socket_timeout, c.http_timeout, c.harakiri, c.max_requests) == (4, 4, 0, 0)
    assert (c.reload_on_rss, c.worker_reload_mercy, c.zerg_timeout) == (0, 60, 10)
    assert c.callable == "application" and c.protocol is None
    assert c.master is False and c.log_json is False
    assert c.socket == () and c.zergpool == () and c.warnings == ()


def test_aliases_map_to_canonical_options() -> None:
    expected = {
        "workers": "processes", "zerg-pool": "zergpool", "wsgi": "module",
        "uwsgi-socket": "socket", "socket-protocol": "protocol", "logformat": "log-format",
        "virtualenv": "home", "venv": "home", "pyhome": "home",
    }
    for alias, name in expected.items():
        opt = options.lookup(alias)
        assert opt is not None and opt.name == name


def test_uwsgi_short_flags() -> None:
    expected = {"M": "master", "p": "processes", "s": "socket", "w": "module",
                "b": "buffer-size", "t": "harakiri", "R": "max-requests", "L": "disable-logging",
                "l": "listen", "d": "daemonize", "C": "chmod-socket", "T": "enable-threads",
                "H": "home"}
    for short, name in expected.items():
        assert options.BY_SHORT[short].name == name
        # and they agree with the real uWSGI's short flags
        assert uwsgi_options.UWSGI_SHORTS[short] in (name, *options.BY_NAME[name].aliases)


def test_spec_options_are_declared() -> None:
    spec = """ini master processes workers threads enable-threads module wsgi wsgi-file callable
    chdir pythonpath home virtualenv venv pyhome env lazy-apps need-app single-interpreter mount
    manage-script-name uid gid auto-procname procname-prefix procname-prefix-spaced socket
    uwsgi-socket http-socket http protocol socket-protocol listen chmod-socket chown-socket vacuum
    reuse-port thunder-lock buffer-size socket-timeout http-timeout http-keepalive post-buffering
    zerg zerg-server zerg-fallback zergpool zerg-pool harakiri max-requests reload-on-rss
    worker-reload-mercy die-on-term touch-reload pidfile daemonize master-fifo static-map logto
    disable-logging log-format logformat log-4xx log-5xx memory-report stats stats-http strict
    print check-config log-json zerg-allow-uid zerg-allow-gid zerg-timeout http11-socket reload
    stop pause resume show-config version help""".split()
    missing = [name for name in spec if options.lookup(name) is None]
    assert missing == []


def test_list_options_are_lists() -> None:
    for name in ("socket", "http-socket", "http", "zerg", "zergpool", "env", "pythonpath",
                 "static-map", "mount", "touch-reload", "zerg-allow-uid", "zerg-allow-gid",
                 "master-fifo", "http11-socket"):
        assert options.BY_NAME[name].kind == "list", name


def test_uzerg_options_that_uwsgi_knows_are_in_the_uwsgi_table() -> None:
    # a typo in our table would silently make a uWSGI option an unknown one
    ours_only = {"check-config", "log-json", "zerg-allow-uid", "zerg-allow-gid", "zerg-timeout",
                 "resume", "file", "zerg-wait", "takeover", "takeover-stop", "stats-prometheus",
                 "rollback", "zerg-probe", "zerg-status", "json", "max-pending-heads",
                 "cheaper-idle",
                 "emperor-broodlord-standby", "start-paused"}  # cheaper-idle: uWSGI's master branch
    for name in options.BY_NAME:
        if name not in ours_only:
            assert name in uwsgi_options.KNOWN, name


def test_generated_docs_are_fresh() -> None:
    committed = (ROOT / "docs" / "options.md").read_text()
    assert committed == docs.render_markdown(), (
        "docs/options.md is stale: run `python -m uzerg.config.docs > docs/options.md`")


def test_help_lists_every_option() -> None:
    text = docs.render_help()
    for option in options.OPTIONS:
        assert f"--{option.name}" in text


def test_uwsgi_table_classification() -> None:
    classify = uwsgi_options.classify
    assert classify("plugins", "python3") == "silent"
    assert classify("plugins", "python311, python3") == "silent"
    assert classify("plugins", "python3,logfile,syslog") == "silent"  # uzerg's own loggers
    assert classify("plugins", "python3,rsyslog") == "warning"
    for name in ("emperor", "legion-attach-daemon", "cron-legion", "unique-cron-legion",
                 "route", "route-run", "hook-emperor-start", "mules", "spooler", "ssl-socket",
                 "rails", "rack", "psgi", "gevent", "vassal-set", "exec-pre-jail"):
        assert classify(name, "x") == "error", name
    # implemented now: options of uzerg's own table, never classified as missing
    for name in ("attach-daemon", "smart-attach-daemon2", "cron", "cron2", "unique-cron",
                 "hook-pre-app", "exec-as-root", "call-asap", "mule", "hook-as-mule"):
        assert options.lookup(name) is not None, name
    for name in ("offload-threads", "log-alarm", "memory-report", "limit-as",
                 "log-drain", "harakiri-verbose"):
        assert classify(name, "x") == "warning", name
    assert uwsgi_options.closest("proesses", sorted(uwsgi_options.KNOWN)) == "processes"


def test_the_written_out_option_init_matches_the_fields() -> None:
    # Option writes its own __init__ (start-up time, issue 13): same names, order and defaults
    # as its record fields, and the instance it builds equals one field by field
    import inspect

    from uzerg.config.option import Option
    from uzerg.record import MISSING, fields

    params = list(inspect.signature(Option.__init__).parameters.values())[1:]
    assert [(p.name, p.default) for p in params] == [
        (f.name, inspect.Parameter.empty if f.default is MISSING else f.default)
        for f in fields(Option)]
    option = Option("x", "int", "help", "cat", 3, ("y",), "X", "1", "N", True, 1, 9, "w", int)
    assert [getattr(option, f.name) for f in fields(Option)] == [
        "x", "int", "help", "cat", 3, ("y",), "X", "1", "N", True, 1, 9, "w", int]
    assert option == Option(**{f.name: getattr(option, f.name) for f in fields(Option)})
