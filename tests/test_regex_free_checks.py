"""The response's header and status checks, the wsgi-file module name, the log-format
variables and the common case of reading a number are plain string operations (compiling
regular expressions cost every start, issue 13): they decide exactly as the regular
expressions they replaced, kept here, on every character and on many strings."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uzerg.config.values import NotANumber, parse_int
from uzerg.serve.apps import wsgi_file_module_name
from uzerg.serve.requestlog import format_variables
from uzerg.serve.response import ResponseError, _header_entry, _status_entry

OLD_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
OLD_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
OLD_BAD_STATUS = re.compile(r"[\x00-\x1f\x7f]")
OLD_NAME = re.compile(r"[^0-9A-Za-z_]")

# every latin-1 character, the first non-latin-1 ones, and some far beyond (surrogates too)
CHARS = [chr(code) for code in (*range(0x180), 0x2028, 0x212A, 0x130, 0x131, 0xFF10, 0xD800,
                                0x10FFFF, 0x1D7CE)]
SAMPLES = ["", "a", "X-Foo", "Content-Length", "a b", "a\tb", "\tx", "x\r\n", "a:b", "é",
           "Set-Cookie", "x\x00", "\x7f", "-", "~!", "K", "\u212a", "ab\nc", "a\x0bb"]
texts = st.text(alphabet=st.sampled_from(CHARS), max_size=12) | st.text(max_size=12)


def name_refused(name: str) -> bool:
    try:
        _header_entry((name, "v"))
    except ResponseError as exc:
        return str(exc).startswith("invalid header name")
    return False


def value_refused(value: str) -> bool:
    try:
        _header_entry(("X-A", value))
    except ResponseError as exc:
        return str(exc).startswith("control character")
    return False


def status_refused(reason: str) -> bool:
    try:
        _status_entry(f"200 {reason}")
    except ResponseError as exc:
        return str(exc).startswith("control character")
    return False


def check_all(text: str) -> None:
    assert name_refused(text) == (OLD_TOKEN.fullmatch(text) is None), repr(text)
    assert value_refused(text) == (OLD_BAD_VALUE.search(text) is not None), repr(text)
    assert status_refused(text) == (OLD_BAD_STATUS.search(f"200 {text}") is not None), \
        repr(text)
    path = f"/{text}"
    assert wsgi_file_module_name(path) == \
        "uwsgi_file_" + OLD_NAME.sub("_", path.lstrip("/")), repr(text)


@pytest.mark.parametrize("text", SAMPLES)
def test_samples(text: str) -> None:
    check_all(text)


def test_every_character_alone_and_in_the_middle() -> None:
    for char in CHARS:
        check_all(char)
        check_all(f"ab{char}cd")
        check_all(f"{char}{char}")


@given(texts)
def test_any_string(text: str) -> None:
    check_all(text)


def test_the_checks_can_refuse() -> None:
    assert name_refused("a b") and name_refused("") and not name_refused("X-Ok")
    assert value_refused("a\nb") and not value_refused("a\tb")
    assert status_refused("O\rK") and not status_refused("OK")
    assert wsgi_file_module_name("/srv/my-app.py") == "uwsgi_file_srv_my_app_py"


OLD_FORMAT_VAR = re.compile(r"%\(([^)]+)\)")
FORMATS = ["", "%(addr)", "%(addr) - %(user) [%(ltime)] \"%(method) %(uri)\" %(status)",
           "%()", "%()x)", "%(a%(b)", "%(", "%(a", "100%", "%%(a)", "(%(a))", "%(a\nb)c",
           "%(%())", "%)(a)", "%()%(b)", "a%(b)c%(d", "%(()", "%%()(x)"]


def check_format(fmt: str) -> None:
    old = [(m.start(), m.end(), m[1]) for m in OLD_FORMAT_VAR.finditer(fmt)]
    assert format_variables(fmt) == old, repr(fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_log_format_samples(fmt: str) -> None:
    check_format(fmt)


@given(st.text(alphabet=st.sampled_from("%()ab\n"), max_size=16) | st.text(max_size=16))
def test_any_log_format(fmt: str) -> None:
    check_format(fmt)


def old_parse_int(text: str) -> tuple[str, int]:
    # uzerg.config.values.parse_int before its fast path: the patterns alone decide
    stripped = text.strip()
    if (whole := re.fullmatch(r"[+-]?\d+", stripped)) is not None:
        return "ok", int(whole.group(0))
    if (commented := re.fullmatch(r"([+-]?\d+)\s+[;#].*", stripped)) is not None:
        return "ok", int(commented.group(1))
    leading = re.match(r"[+-]?\d+", stripped)
    return "not a number", int(leading.group(0)) if leading else 0


def new_parse_int(text: str) -> tuple[str, int]:
    try:
        return "ok", parse_int(text)
    except NotANumber as exc:
        return "not a number", exc.value


DIGITS = st.text(alphabet=st.sampled_from([*"0123456789+- ;#x\t", "\u0663", "\uff11", "\u00b2"]),
                 max_size=8)


@pytest.mark.parametrize("text", ["0", "12", "+7", "-3", "007", " 8 ", "+", "-", "", "+-1",
                                  "1 ; x", "\u0663", "1\u0663", "-\u0663", "\uff11", "1_000",
                                  "\u00b2", "1\u00b2"])
def test_parse_int_reads_as_its_patterns(text: str) -> None:
    assert new_parse_int(text) == old_parse_int(text)


@given(DIGITS | texts)
def test_parse_int_reads_as_its_patterns_on_any_text(text: str) -> None:
    assert new_parse_int(text) == old_parse_int(text)
