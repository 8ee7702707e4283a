"""The value parsers of the option table and the typed Config they build: each value is parsed
once, where the config is built, and a bad one is one `file:line: key: message` error."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

from uzerg import record
from uzerg.config import options
from uzerg.config.load import ConfigError, format_config, load_config
from uzerg.config.log_values import parse_logger
from uzerg.config.model import Config
from uzerg.config.values import (
    NotANumber,
    ZergPoolEntry,
    parse_int,
    parse_mode,
    parse_protocol,
)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "uzerg" / "config"
# the config layer is read by everything else; it must not depend on what runs the server
FORBIDDEN = ("uzerg.zerg", "uzerg.processes", "uzerg.serve", "uzerg.sockets", "uzerg.cli",
             "uzerg.protocols")


def error_of(tmp_path: Path, line: str) -> str:
    site = tmp_path / "site.ini"
    site.write_text("[uwsgi]\n" + line + "\n")
    with pytest.raises(ConfigError) as info:
        load_config([str(site)], {}, write=lambda _t: None)
    return str(info.value)


def test_config_fields_mirror_the_option_table() -> None:
    fields = {f.name: f for f in record.fields(Config)}
    for option in options.OPTIONS:
        assert option.attr in fields, option.name
        assert fields[option.attr].default == option.initial, option.name
    # the names uzerg.config.model imports for type checkers only (typing is not loaded at
    # run time: start-up time, issue 13)
    from uzerg.config import ini, log_values, service_values, values

    hints = typing.get_type_hints(Config, localns={
        "Any": typing.Any, "Protocol": typing.Literal["uwsgi", "http"],
        **{name: getattr(module, name) for module, names in (
            (ini, ("Origin",)), (service_values, ("CronSpec", "DaemonSpec", "TlsSocketSpec")),
            (log_values, ("EncoderSpec", "LoggerSpec", "RouteSpec")), (values, ("ZergPoolEntry",)))
           for name in names}})
    assert hints["processes"] is int and hints["master"] is bool
    assert hints["chmod_socket"] == int | None
    assert hints["zergpool"] == tuple[ZergPoolEntry, ...]
    assert typing.get_args(typing.get_args(hints["protocol"])[0]) == ("uwsgi", "http")


def test_every_option_has_a_parser() -> None:
    assert options.BY_NAME["zergpool"].parser("/tmp/p:127.0.0.1:1") == ZergPoolEntry(
        "/tmp/p", ("127.0.0.1:1",))
    assert options.BY_NAME["processes"].parser("4") == 4
    assert options.BY_NAME["master"].parser("off") is False
    assert options.BY_NAME["pidfile"].parser("/run/x.pid") == "/run/x.pid"


def test_typed_values_and_the_check_config_block_as_written(tmp_path: Path) -> None:
    site = tmp_path / "site.ini"
    site.write_text("[uwsgi]\nchmod-socket = 0660\nprotocol = http\n"
                    "zergpool = /tmp/p: 127.0.0.1:1 , /tmp/b.sock\nlisten = 64\n")
    config = load_config([str(site)], {}, write=lambda _t: None)
    assert (config.chmod_socket, config.protocol, config.listen) == (0o660, "http", 64)
    assert config.zergpool == (ZergPoolEntry("/tmp/p", ("127.0.0.1:1", "/tmp/b.sock")),)
    assert format_config(config).splitlines()[2:6] == [
        "chmod-socket = 0660", "protocol = http",
        "zergpool = /tmp/p: 127.0.0.1:1 , /tmp/b.sock", "listen = 64"]


@pytest.mark.parametrize(("line", "message"), [
    ("chmod-socket = rw", "chmod-socket: invalid socket mode (expected octal like 660): rw"),
    ("chmod-socket = 6600", "chmod-socket: invalid socket mode (expected octal like 660): 6600"),
    ("chmod-socket = 668", "chmod-socket: invalid socket mode (expected octal like 660): 668"),
    ("protocol = fastcgi", "protocol: unsupported protocol (uzerg speaks uwsgi and http): fastcgi"),
    ("socket-protocol = HTTP",
     "socket-protocol: unsupported protocol (uzerg speaks uwsgi and http): HTTP"),
    ("zergpool = /tmp/p", "zergpool: invalid zergpool syntax: /tmp/p"),
    ("zergpool = /tmp/p:,", "zergpool: invalid zergpool syntax: /tmp/p:, (no socket listed)"),
    ("env = NOEQUALS", "env: expected NAME=VALUE: NOEQUALS"),
    ("logger = file:logfile=/tmp/x.log,maxsize=10M",
     "logger: file logger: maxsize '10M' is not a number"),
    ("logger = socket:127.0.0.1:x", "logger: socket logger: bad port in '127.0.0.1:x'"),
])
def test_bad_values_are_one_line_errors(tmp_path: Path, line: str, message: str) -> None:
    assert error_of(tmp_path, line) == f"{tmp_path / 'site.ini'}:2: {message}"


def test_logger_arguments_are_parsed_with_the_config() -> None:
    rotated = parse_logger("app file:logfile=/var/log/a.log,maxsize=1000,backupname=/tmp/old")
    assert (rotated.name, rotated.path, rotated.maxsize, rotated.backupname) == (
        "app", "/var/log/a.log", 1000, "/tmp/old")
    assert parse_logger("file:/var/log/b.log").path == "/var/log/b.log"
    assert (parse_logger("syslog:web,local3").ident, parse_logger("syslog:web,local3").facility) \
        == ("web", 19)
    assert parse_logger("socket:127.0.0.1:514,pre").host_port == ("127.0.0.1", 514)
    assert parse_logger("socket:/dev/log2").path == "/dev/log2"
    assert parse_logger("fd:7").fd == 7


def test_parsers_alone() -> None:
    assert parse_int(" 12 ; twelve") == 12 and parse_int("-3") == -3
    assert parse_mode("600") == 0o600 and parse_mode(" 0777 ") == 0o777
    assert parse_protocol("uwsgi") == "uwsgi"
    for text, c_value in (("1.5", 1), ("", 0), ("0x10", 0), ("true", 0), ("30s", 30),
                          ("8M", 8), ("$(UNSET)", 0), ("-2k", -2)):
        with pytest.raises(NotANumber) as info:
            parse_int(text)
        assert info.value.value == c_value, text


def load_warnings(tmp_path: Path, *lines: str) -> tuple[Config, list[str]]:
    site = tmp_path / "site.ini"
    site.write_text("[uwsgi]\n" + "\n".join(lines) + "\n")
    config = load_config([str(site)], {}, write=lambda _t: None)
    return config, [w.removeprefix(f"{site}:") for w in config.warnings]


def test_numbers_are_read_as_uwsgi_reads_them_with_one_warning_each(tmp_path: Path) -> None:
    """uWSGI 2.0.31 reads option numbers with C strtol: `post-buffering = true` is 0 there,
    `harakiri = 30s` turns harakiri on with 30. uzerg applies the same value and warns once."""
    config, warnings = load_warnings(
        tmp_path, "post-buffering = true", "harakiri = 30s", "buffer-size = 8M",
        "max-requests = 1000 ; a comment", "threads = yes", "listen = true")
    assert (config.post_buffering, config.harakiri, config.buffer_size) == (0, 30, 8)
    assert config.max_requests == 1000  # a number and a comment: that number, silently
    assert (config.threads, config.listen) == (1, 1)  # below the minimum: the minimum
    assert warnings == [
        "2: post-buffering: 'true' is not a number; uWSGI reads it as 0, so does uzerg",
        "3: harakiri: '30s' is not a number; uWSGI reads it as 30, so does uzerg",
        "4: buffer-size: '8M' is not a number; uWSGI reads it as 8, so does uzerg",
        "6: threads: 'yes' is not a number; uWSGI reads it as 0, below the minimum 1: "
        "uzerg uses 1",
        "7: listen: 'true' is not a number; uWSGI reads it as 0, below the minimum 1: "
        "uzerg uses 1",
    ]


def test_an_unset_variable_as_a_number(tmp_path: Path) -> None:
    """uWSGI keeps `$(UNSET)` literally and reads 0: with processes it starts a master with no
    workers ("Operational MODE: no-workers"), serving nothing; uzerg runs one and says so."""
    config, warnings = load_warnings(tmp_path, "processes = $(UWSGI_PROCESSES)")
    assert config.processes == 1
    assert warnings[-1] == ("2: processes: '$(UWSGI_PROCESSES)' is not a number; uWSGI reads "
                            "it as 0, below the minimum 1: uzerg uses 1")


def test_lenient_numbers_stay_warnings_under_strict(tmp_path: Path) -> None:
    """uWSGI's strict checks option names, not values: atoi reads '4x' as 4 silently."""
    config, warnings = load_warnings(tmp_path, "strict = true", "processes = 4x")
    assert config.processes == 4
    assert warnings == ["3: processes: '4x' is not a number; uWSGI reads it as 4, so does uzerg"]


def test_booleans_as_uwsgi_reads_them(tmp_path: Path) -> None:
    for word, expected in (("1", True), ("0", False), ("true", True), ("false", False),
                           ("yes", True), ("no", False), ("on", True), ("OFF", False)):
        config, _ = load_warnings(tmp_path, f"master = {word}")
        assert config.master is expected, word


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_config_layer_imports_nothing_from_the_server() -> None:
    files = sorted(CONFIG_DIR.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        bad = sorted(name for name in _imported_modules(path)
                     if name.startswith(FORBIDDEN))
        assert bad == [], f"{path.name} imports {bad}"


def test_tuning_options_keep_a_warning_that_says_what_uzerg_does(tmp_path: Path) -> None:
    _, warnings = load_warnings(tmp_path, "thunder-lock = true", "offload-threads = 4",
                                "cpu-affinity = 1", "buffer-size = 100000",
                                "no-orphans = true", "plugins = python3,logfile")
    assert warnings == [
        "2: thunder-lock: no effect: uzerg's workers block in accept() on the shared socket "
        "and the kernel wakes one of them per connection (no lock needed)",
        "3: offload-threads: uWSGI option not implemented by uzerg, ignored: uzerg's workers "
        "send files themselves with sendfile()",
        "4: cpu-affinity: uWSGI option not implemented by uzerg, ignored: uzerg leaves the "
        "placement of workers on CPUs to the kernel's scheduler",
        "5: buffer-size: 100000 is above the maximum 65535, using 65535",
    ]  # no-orphans is what uzerg's workers do anyway; plugins naming loggers uzerg has


def test_a_tuning_note_does_not_fail_strict_mode(tmp_path: Path) -> None:
    config, warnings = load_warnings(tmp_path, "strict = true", "thunder-lock = true")
    assert config.thunder_lock and warnings[0].startswith("3: thunder-lock: no effect")


LAZY_PROBE = """
import sys
from uzerg.config.load import ConfigError, load_config
config = load_config(sys.argv[1:], {}, write=lambda _t: None)
print(sorted(name for name in ("uzerg.config.service_values", "uzerg.config.serving_values",
                                "uzerg.config.log_values") if name in sys.modules))
print(repr(config.cron), repr(config.add_header), repr(config.logger))
"""


@pytest.mark.parametrize(("argv", "loaded", "values"), [
    ([], [], "() () ()"),
    (["--cron", "0 -1 -1 -1 -1 true"], ["uzerg.config.service_values"], "(CronSpec(minute=0,"),
    (["--add-header", "X-A: b"], ["uzerg.config.serving_values"], "() (('X-A', 'b'),) ()"),
    (["--logger", "fd:7"], ["uzerg.config.log_values"], "() () (LoggerSpec(name=None, "),
])
def test_the_parsers_of_options_a_plain_start_does_not_set_load_with_them(
        argv: list[str], loaded: list[str], values: str) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", LAZY_PROBE, *argv], capture_output=True,
                         text=True, check=True, timeout=30,
                         env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    found, typed = out.stdout.splitlines()
    assert found == repr(loaded)
    assert typed.startswith(values)


def test_a_lazy_parser_gives_the_same_errors() -> None:
    with pytest.raises(ConfigError, match="cron"):
        load_config(["--cron", "not a cron line"], {}, write=lambda _t: None)
    assert "service_values.parse_cron" in repr(options.BY_NAME["cron"].parse)
