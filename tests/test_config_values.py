"""The value parsers of the option table and the typed Config they build: each value is parsed
once, where the config is built, and a bad one is one `file:line: key: message` error."""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import pytest

from uzerg.config import options
from uzerg.config.load import ConfigError, format_config, load_config
from uzerg.config.model import Config
from uzerg.config.values import ZergPoolEntry, parse_int, parse_mode, parse_protocol

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
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for option in options.OPTIONS:
        assert option.attr in fields, option.name
        assert fields[option.attr].default == option.initial, option.name
    hints = typing.get_type_hints(Config)
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
    ("processes = many", "processes: invalid integer: many"),
])
def test_bad_values_are_one_line_errors(tmp_path: Path, line: str, message: str) -> None:
    assert error_of(tmp_path, line) == f"{tmp_path / 'site.ini'}:2: {message}"


def test_parsers_alone() -> None:
    assert parse_int(" 12 ; twelve") == 12 and parse_int("-3") == -3
    assert parse_mode("600") == 0o600 and parse_mode(" 0777 ") == 0o777
    assert parse_protocol("uwsgi") == "uwsgi"
    for bad in ("1.5", "", "0x10"):
        with pytest.raises(ValueError, match="invalid integer"):
            parse_int(bad)


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
