"""Parsers of the response-header and static-file options (``add-header``, ``del-header``,
``static-expires*``, ``static-gzip``): one written value → its typed value, ValueError with a
one-line message when it is invalid."""

from __future__ import annotations

import re

__all__ = [
    "parse_add_header",
    "parse_expires_regexp",
    "parse_expires_type",
    "parse_header_name",
    "parse_regexp",
]

# patterns as text: compiled by re (and cached) when an option first needs one, not at
# every start-up (issue 13)
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_BAD_VALUE = r"[\x00-\x08\x0a-\x1f\x7f]"
# headers uzerg frames the body with: added to every response they would break it
_FRAMING = ("content-length", "transfer-encoding")


def parse_header_name(value: str) -> str:
    """``del-header NAME``: the name as written (matched without regard to case)."""
    name = value.strip()
    if not re.fullmatch(_TOKEN, name):
        raise ValueError(f"invalid header name {value!r} (expected e.g. X-Powered-By)")
    return name


def parse_add_header(value: str) -> tuple[str, str]:
    """``add-header NAME: VALUE`` → (name, value)."""
    name, sep, text = value.partition(":")
    name, text = name.strip(), text.strip()
    if not sep or not re.fullmatch(_TOKEN, name):
        raise ValueError(f"expected NAME: VALUE (e.g. X-Frame-Options: DENY): {value!r}")
    if re.search(_BAD_VALUE, text):
        raise ValueError(f"control character in the value of header {name!r}")
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"the value of header {name!r} is not latin-1 text") from None
    if name.lower() in _FRAMING:
        raise ValueError(f"{name} would break the framing of every response; uzerg sets it "
                         "itself")
    return name, text


def parse_regexp(value: str) -> str:
    """A regular expression (Python ``re``, searched, as uWSGI's PCRE match is unanchored)."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


def _seconds(text: str, value: str) -> int:
    text = text.strip()
    if not text.lstrip("-").isdigit() or not text.isascii():
        raise ValueError(f"expected a number of seconds after the pattern: {value!r}")
    return int(text)


def parse_expires_type(value: str) -> tuple[str, int]:
    """``static-expires-type[-mtime] TYPE=SECONDS`` → (content type, seconds)."""
    ctype, sep, seconds = value.partition("=")
    if not sep or not ctype.strip():
        raise ValueError(f"expected CONTENT-TYPE=SECONDS (e.g. text/css=86400): {value!r}")
    return ctype.strip(), _seconds(seconds, value)


def parse_expires_regexp(value: str) -> tuple[str, int]:
    """``static-expires[-uri|-path-info][-mtime] REGEXP SECONDS`` → (regexp, seconds)."""
    pattern, sep, seconds = value.strip().partition(" ")
    if not sep or not pattern:
        raise ValueError(f"expected REGEXP SECONDS (e.g. \\.css$ 86400): {value!r}")
    return parse_regexp(pattern), _seconds(seconds, value)
