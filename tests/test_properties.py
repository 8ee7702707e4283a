"""Property-based tests of the readers that take bytes from outside (see tests/fuzz_targets.py
for the invariants): near-valid inputs from tests/property_strategies.py, and plain random
bytes. A few seconds in all; tools/fuzz.py runs the same targets for longer."""

from __future__ import annotations

from fuzz_targets import http_reader, ini_reader, uwsgi_reader, zerg_receiver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from property_strategies import http_streams, ini_files, uwsgi_streams, zerg_handshakes

QUICK = settings(max_examples=200, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])


@QUICK
@given(http_streams() | st.binary(max_size=300))
def test_http_reader_parses_or_raises_http_error(data: bytes) -> None:
    http_reader(data)


@QUICK
@given(uwsgi_streams() | st.binary(max_size=300))
def test_uwsgi_reader_parses_or_raises_its_error(data: bytes) -> None:
    uwsgi_reader(data)


@settings(QUICK, max_examples=100)
@given(ini_files() | st.binary(max_size=200))
def test_ini_reader_reads_or_raises_config_error(data: bytes) -> None:
    ini_reader(data)


@settings(QUICK, max_examples=60)
@given(zerg_handshakes() | st.binary(max_size=64))
def test_zerg_receiver_accepts_or_raises_handshake_error_and_leaks_nothing(data: bytes) -> None:
    zerg_receiver(data)


@QUICK
@given(st.lists(st.sampled_from([b"%", b"%2f", b"%2F", b"%e9", b"%zz", b"%4", b"a", b"/", b"\xe9",
                                 b"%%", b"%25", b"%00"]) | st.binary(max_size=8), max_size=12)
       .map(b"".join))
def test_the_path_unquoting_is_urllib_s(data: bytes) -> None:
    # uzerg's own copy (urllib.parse, with the ipaddress it imports, is start-up time: issue 13)
    from urllib.parse import unquote_to_bytes as urllib_unquote

    from uzerg.serve.environ import unquote_to_bytes

    assert unquote_to_bytes(data) == urllib_unquote(data)
