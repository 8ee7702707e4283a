"""The HTTP fixture corpus (tests/fixtures/http) sent over TCP to a running uzerg: each valid
request reaches the app with the environ its fixture names and is answered 200; each invalid
one gets its exact status, and the app (which records its calls in a file) is called only when
the fixture says so, and the log line names the fixture's reason. One server per socket kind
(--http11-socket, --http-socket) serves the whole corpus; every case also checks that the
worker did not die."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.clients import send_and_read_to_close
from support.processes import Instance, InstanceStarter

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))
from fixture_corpus import check_served, corpus, parse_responses  # noqa: E402

CASES = corpus("http", "valid", ".http") + corpus("http", "invalid", ".http")

APP = """
import sys
sys.path.insert(0, {tests!r})
from fixture_corpus import make_corpus_app


def _record(uri):
    with open({calls!r}, "a", encoding="latin-1") as calls:
        calls.write(uri.encode("unicode_escape").decode("ascii") + "\\n")


application = make_corpus_app(_record)
"""


class CorpusServer:
    def __init__(self, instance: Instance, calls: Path, keep_alive: bool) -> None:
        self.instance = instance
        self.calls = calls
        self.keep_alive = keep_alive
        self.port = int(instance.address().rsplit(":", 1)[1])

    def call_count(self) -> int:
        try:
            return len(self.calls.read_text(encoding="latin-1").splitlines())
        except FileNotFoundError:
            return 0


@pytest.fixture(scope="module", params=["--http11-socket", "--http-socket"])
def corpus_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CorpusServer]:
    """A uzerg serving the corpus app: with keep-alive (so that a pipelined case is served
    whole), and as a plain --http-socket (one request per connection, its own fast path)."""
    tmp = tmp_path_factory.mktemp("corpus")
    calls = tmp / "calls.txt"
    app = tmp / "corpus_app.py"
    app.write_text(APP.format(tests=str(TESTS), calls=str(calls)))
    starter = InstanceStarter(tmp)
    try:
        instance = starter.start([request.param, "127.0.0.1:0", "--wsgi-file", str(app),
                                  "--master", "--processes", "1"])
        yield CorpusServer(instance, calls, request.param == "--http11-socket")
    finally:
        starter.cleanup()


@pytest.mark.parametrize("name,raw,expected", CASES, ids=[c[0] for c in CASES])
def test_corpus_case_over_the_wire(corpus_server: CorpusServer, name: str, raw: bytes,
                                   expected: Any) -> None:
    if isinstance(expected, list) and len(expected) > 1 and not corpus_server.keep_alive:
        pytest.skip("several requests need keep-alive")
    workers = corpus_server.instance.worker_pids()
    before = corpus_server.call_count()
    mark = corpus_server.instance.mark()
    responses = parse_responses(send_and_read_to_close(corpus_server.port, raw))
    check_served(expected, responses, corpus_server.call_count() - before)
    if not isinstance(expected, list):
        line = corpus_server.instance.wait_for_log("invalid HTTP request from", since=mark)
        assert expected["message"] in line
    assert corpus_server.instance.worker_pids() == workers  # nothing crashed
