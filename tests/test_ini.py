"""The uWSGI INI reader: syntax, magic variables, includes, logic, references."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from uzerg.config.ini import magic_substitute, magic_table, read_ini, split_file_section
from uzerg.config.load import ConfigError, load_config


def write(path: Path, text: str | bytes) -> str:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def load(path: str, *args: str, env: dict[str, str] | None = None) -> Any:
    return load_config(["--ini", path, *args], env or {}, write=lambda _t: None)


def pairs(path: str, section: str | None = None) -> list[tuple[str, str]]:
    return [(line.key, line.value) for line in read_ini(path, section).lines]


def test_basic_rules(tmp_path: Path) -> None:
    f = write(tmp_path / "a.ini", "\n".join([
        "before = ignored",
        "[uwsgi]",
        "; comment",
        "# comment",
        "  socket =  /tmp/a.sock  ",
        "\tmaster\t=\ttrue\t",
        "vacuum",
        "a=b=c",
        "log-format = %(addr) - ; not a comment",
        "[other]",
        "processes = 9",
    ]))
    assert pairs(f) == [("socket", "/tmp/a.sock"), ("master", "true"), ("vacuum", ""),
                        ("a", "b=c"), ("log-format", "%(addr) - ; not a comment")]
    assert pairs(f, "other") == [("processes", "9")]


def test_crlf_no_final_newline_and_tabs(tmp_path: Path) -> None:
    f = write(tmp_path / "a.ini", b"[uwsgi]\r\nmaster = true\r\nprocesses\t=\t4\r\nsocket = :1")
    c = load(f)
    assert (c.master, c.processes, c.socket) == (True, 4, (":1",))


def test_section_text_between_first_and_last_character(tmp_path: Path) -> None:
    f = write(tmp_path / "a.ini", "[uwsgi ]\nprocesses = 2\n[uwsgi]\nprocesses = 3\n")
    assert pairs(f) == [("processes", "3")]


def test_split_file_section() -> None:
    assert split_file_section("a.ini") == ("a.ini", None)
    assert split_file_section("a.ini:prod") == ("a.ini", "prod")
    assert split_file_section("/x:y/a.ini:prod") == ("/x:y/a.ini", "prod")
    assert split_file_section(":base") == ("", "base")
    assert split_file_section("a.ini:") == ("a.ini", None)


def test_file_section_and_missing_section_warning(tmp_path: Path) -> None:
    f = write(tmp_path / "a.ini", "[uwsgi]\nprocesses = 2\n[prod]\nprocesses = 8\n")
    assert load(f + ":prod").processes == 8
    c = load(f + ":nope")
    assert c.processes == 1
    assert any("section [nope] not found" in w for w in c.warnings)
    assert any("section [nope] not found" in w for w in load(f + ":nope", "--strict").warnings)


def test_magic_variables(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    f = write(sub / "site.ini", "[uwsgi]\nchdir = %d|%p|%s|%n|%e|%c|%x|%%|%v|%q|%(x)\n")
    table = magic_table(f, None)
    assert table["d"] == f"{sub}/" and table["p"] == f
    value = load(f).chdir
    assert value == f"{sub}/|{f}|site.ini|site|ini|conf||%|{os.getcwd()}||%(x)"
    assert load(f + ":uwsgi").chdir.split("|")[6] == "uwsgi"  # %x: only an explicit section


def test_magic_host_cpu_ids(tmp_path: Path) -> None:
    f = write(tmp_path / "a.ini", "[uwsgi]\nchdir = %h %k %u %g\n")
    expected = f"{socket.gethostname()} {os.cpu_count()} {os.getuid()} {os.getgid()}"
    assert load(f).chdir == expected


def test_percent_at_line_end_joins_lines_like_uwsgi() -> None:
    assert magic_substitute("a%%b%zc", {"%": "%", "z": "Z"}) == "a%bZc"


def test_percent_at_line_end_joins(tmp_path: Path) -> None:
    f = write(tmp_path / "a.ini", "[uwsgi]\nchdir = /a%\nb\nprocesses = 2\n")
    c = load(f)
    assert c.chdir == "/ab" and c.processes == 2


def test_env_file_and_option_references(tmp_path: Path) -> None:
    data = write(tmp_path / "secret.txt", "s3cret\n")
    f = write(tmp_path / "a.ini", "\n".join([
        "[uwsgi]",
        "base = /srv/app",
        "chdir = %(base)/current",
        "pidfile = $(RUN_DIR)/app.pid",
        f"logto = @({data})",
        "log-format = %(addr) %(uri) %(base)",
        "module = $(UNSET_VARIABLE_X)",
    ]))
    c = load(f, env={"RUN_DIR": "/run"})
    assert c.chdir == "/srv/app/current"
    assert c.pidfile == "/run/app.pid"
    assert c.logto == "s3cret"
    assert c.log_format == "%(addr) %(uri) /srv/app"
    assert c.module == "$(UNSET_VARIABLE_X)"
    assert any("UNSET_VARIABLE_X" in w for w in c.warnings)
    assert not any("base" in w for w in c.warnings)  # a placeholder is silent


def test_references_take_the_first_value_and_do_math(tmp_path: Path) -> None:
    f = write(tmp_path / "a.ini",
              "[uwsgi]\nn = 2\nn = 5\nprocesses = %(n + 3)\nthreads = %(n * 2)\n"
              "listen = %(n n)\n")
    c = load(f)
    assert (c.processes, c.threads, c.listen) == (5, 4, 22)


def test_reference_loop_is_an_error(tmp_path: Path) -> None:
    f = write(tmp_path / "a.ini", "[uwsgi]\na = x%(b)\nb = y%(a)\nchdir = %(a)\n")
    with pytest.raises(ConfigError, match="references loop"):
        load(f)


def test_missing_at_file_is_an_error(tmp_path: Path) -> None:
    f = write(tmp_path / "a.ini", "[uwsgi]\nmaster = 1\nlogto = @(/nonexistent/zz)\n")
    with pytest.raises(ConfigError) as info:
        load(f)
    assert str(info.value) == (f"{f}:3: logto: @(/nonexistent/zz): cannot read "
                               "/nonexistent/zz: No such file or directory")


def test_include_and_ini_in_place(tmp_path: Path) -> None:
    base = write(tmp_path / "base.ini", "[uwsgi]\nprocesses = 2\nsocket = /tmp/base.sock\n")
    f = write(tmp_path / "a.ini",
              f"[uwsgi]\nprocesses = 1\nsocket = /tmp/a.sock\ninclude = {base}\nthreads = 3\n")
    c = load(f)
    assert c.processes == 2 and c.threads == 3
    assert c.socket == ("/tmp/a.sock", "/tmp/base.sock")


def test_ini_colon_section_of_the_same_file(tmp_path: Path) -> None:
    f = write(tmp_path / "a.ini", "[uwsgi]\nini = :base\nprocesses = 4\n"
                                  "[base]\nprocesses = 2\nmaster = true\n")
    c = load(f)
    assert c.processes == 4 and c.master is True


def test_include_loop_is_an_error(tmp_path: Path) -> None:
    a = tmp_path / "a.ini"
    b = write(tmp_path / "b.ini", f"[uwsgi]\nini = {a}\n")
    write(a, f"[uwsgi]\nmaster = true\nini = {b}\n")
    with pytest.raises(ConfigError, match="include loop"):
        load(str(a))
    c = tmp_path / "c.ini"
    write(c, "[uwsgi]\nini = :base\n[base]\nini = :uwsgi\n")
    with pytest.raises(ConfigError, match="include loop"):
        load(str(c))


def test_same_file_twice_is_not_a_loop(tmp_path: Path) -> None:
    b = write(tmp_path / "b.ini", "[uwsgi]\nsocket = :1\n")
    f = write(tmp_path / "a.ini", f"[uwsgi]\nini = {b}\nini = {b}\n")
    assert load(f).socket == (":1", ":1")


def test_if_blocks(tmp_path: Path) -> None:
    f = write(tmp_path / "a.ini", "\n".join([
        "[uwsgi]",
        "if-env = APP_PORT", "http-socket = :%(_)", "endif =",
        "if-not-env = APP_PORT", "socket = :1", "endif =",
        "if-env = MODE=prod", "processes = 8", "endif =",
        f"if-exists = {tmp_path}", "chdir = %(_)", "end =",
        f"if-file = {tmp_path}", "uid = nobody", "endif =",
        f"if-dir = {tmp_path}", "pythonpath = %(_)", "endif",
        "if-opt = chdir", "env = CHDIR=%(_)", "endif =",
        "if-not-opt = daemonize", "logto = /tmp/log", "endif =",
        f"if-hostname = {socket.gethostname()}", "vacuum = true", "endif =",
    ]))
    c = load(f, env={"APP_PORT": "8080", "MODE": "dev"})
    assert c.http_socket == (":8080",) and c.socket == ()
    assert c.processes == 1
    assert c.chdir == str(tmp_path) and c.uid is None
    assert c.pythonpath == (str(tmp_path),)
    assert c.env == (f"CHDIR={tmp_path}",)
    assert c.logto == "/tmp/log" and c.vacuum is True
    assert not c.warnings


def test_for_blocks_read_as_uwsgi_does(tmp_path: Path) -> None:
    """uwsgi 2.0.31 logs a for-readline file it cannot open and skips the block (the file
    still loads); for-times reads its count with atoi."""
    f = write(tmp_path / "a.ini", "\n".join([
        "[uwsgi]",
        f"for-readline = {tmp_path}/.env", "env = %(_)", "pythonpath = /%(_)", "endfor =",
        "for-times = 2x", "env = N%(_)=1", "endfor =",
        "for-times = many", "env = M%(_)=1", "endfor =",
        "processes = 2",
    ]))
    c = load(f)
    assert (c.env, c.pythonpath, c.processes) == (("N1=1", "N2=1"), (), 2)
    assert c.warnings == (
        f"{f}:2: for-readline: cannot read {tmp_path}/.env: No such file or directory; uWSGI "
        "skips the block, so does uzerg",
        f"{f}:6: for-times: '2x' is not a number; uWSGI reads it as 2, so does uzerg",
        f"{f}:9: for-times: 'many' is not a number; uWSGI reads it as 0, so does uzerg",
    )


def test_if_hostname_match_blocks(tmp_path: Path) -> None:
    """uWSGI 2.0's PCRE-only if-hostname-match: a regexp search in the hostname; a regexp that
    does not compile counts as a match (uwsgi_regexp_match_pattern returns 1)."""
    host = socket.gethostname()
    f = write(tmp_path / "a.ini", "\n".join([
        "[uwsgi]",
        f"if-hostname-match = ^{host[0]}", "processes = 3", "env = RE=%(_)", "endif =",
        "if-not-hostname-match = ^no-such-host$", "threads = 5", "endif =",
        "if-hostname-match = ^no-such-host$", "master = true", "endif =",
        "if-hostname-match = (", "vacuum = true", "endif =",
    ]))
    c = load(f)
    assert (c.processes, c.threads, c.master, c.vacuum) == (3, 5, False, True)
    assert c.env == (f"RE=^{host[0]}",)
    assert c.warnings == (f"{f}:12: if-hostname-match: invalid regular expression '('; uWSGI "
                          "counts it as a match, so does uzerg",)


def test_for_blocks(tmp_path: Path) -> None:
    (tmp_path / "x.sock").touch()
    (tmp_path / "y.sock").touch()
    lines = write(tmp_path / "list.txt", "/a\n/b\n")
    f = write(tmp_path / "a.ini", "\n".join([
        "[uwsgi]",
        "for = 3031  3032", "socket = 127.0.0.1:%(_)", "endfor =",
        f"for-glob = {tmp_path}/*.sock", "zerg = %(_)", "endfor =",
        "for-times = 2", "env = N%(_)=%(_)", "endfor =",
        f"for-readline = {lines}", "touch-reload = %(_)", "end-for =",
    ]))
    c = load(f)
    assert c.socket == ("127.0.0.1:3031", "127.0.0.1:3032")
    assert c.zerg == (f"{tmp_path}/x.sock", f"{tmp_path}/y.sock")
    assert c.env == ("N1=1", "N2=2")
    assert c.touch_reload == ("/a", "/b")


def test_else_applies_when_the_condition_failed(tmp_path: Path) -> None:
    f = write(tmp_path / "a.ini", "[uwsgi]\nif-env = NOPE_X\nprocesses = 2\nelse =\n"
                                  "processes = 3\nendif =\n")
    c = load(f)
    assert c.processes == 3
    assert any("uWSGI 2.0 ignores `else`" in w for w in c.warnings)


def test_nested_blocks_are_an_error(tmp_path: Path) -> None:
    f = write(tmp_path / "a.ini", "[uwsgi]\nif-env = HOME\nif-env = PATH\nmaster = 1\n")
    with pytest.raises(ConfigError, match=":3: if-env: nested if/for blocks"):
        load(f, env={"HOME": "/", "PATH": "/"})


def test_print_writes_while_loading(tmp_path: Path) -> None:
    f = write(tmp_path / "a.ini", "[uwsgi]\nprocesses = 4\nprint = running %(processes)\n")
    out: list[str] = []
    load_config(["--ini", f], {}, write=out.append)
    assert out == ["running 4"]


def test_set_and_set_placeholder(tmp_path: Path) -> None:
    f = write(tmp_path / "a.ini", "[uwsgi]\nstrict = true\nset-placeholder = base=/srv\n"
                                  "set = chdir=%(base)/x\n")
    assert load(f).chdir == "/srv/x"


def test_empty_file_and_line_with_only_equals(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.ini", "")
    c = load(empty)
    assert c.processes == 1 and any("section [uwsgi] not found" in w for w in c.warnings)
    f = write(tmp_path / "eq.ini", "[uwsgi]\n=\nprocesses = 2\n")
    c = load(f)
    assert c.processes == 2
    assert c.warnings == (f"{f}:2: line without a key ignored",)


def test_non_utf8_value_is_an_error_but_comment_is_fine(tmp_path: Path) -> None:
    ok = write(tmp_path / "ok.ini", b"[uwsgi]\n; caf\xe9\nprocesses = 2\n")
    assert load(ok).processes == 2
    bad = write(tmp_path / "bad.ini", b"[uwsgi]\nprocesses = 2\nchdir = /caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load(bad)
    assert str(info.value) == f"{bad}:3: chdir: not valid UTF-8"


def test_huge_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.ini"
    big.write_bytes(b"[uwsgi]\n" + b"; padding padding padding padding\n" * 330_000)
    assert big.stat().st_size > 10_000_000
    with pytest.raises(ConfigError, match="larger than"):
        load(str(big))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(str(tmp_path / "nope.ini"))
    assert "cannot read" in str(info.value) and "No such file or directory" in str(info.value)


def test_uwsgi_spellings_of_logic_directives(tmp_path: Path) -> None:
    f = write(tmp_path / "a.ini", f"[uwsgi]\nifenv = NOPE_X\nprocesses = 9\nendif =\n"
                                  f"ifdir = {tmp_path}\nthreads = 2\nendif =\n")
    c = load(f)
    assert (c.processes, c.threads) == (1, 2) and not c.warnings
