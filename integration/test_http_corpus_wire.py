"""The HTTP fixture corpus (tests/fixtures/http) sent over TCP to a running uzerg: each valid
request reaches the app with the environ its fixture names and is answered 200; each invalid
one gets its exact status, and the app (which records its calls in a file) is called only when
the fixture says so. One server serves the whole corpus; every case also checks that the same
worker is still answering."""

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
    def __init__(self, instance: Instance, calls: Path) -> None:
        self.instance = instance
        self.calls = calls
        self.port = int(instance.address().rsplit(":", 1)[1])

    def call_count(self) -> int:
        try:
            return len(self.calls.read_text(encoding="latin-1").splitlines())
        except FileNotFoundError:
            return 0


@pytest.fixture(scope="module")
def corpus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorpusServer]:
    tmp = tmp_path_factory.mktemp("corpus")
    calls = tmp / "calls.txt"
    app = tmp / "corpus_app.py"
    app.write_text(APP.format(tests=str(TESTS), calls=str(calls)))
    starter = InstanceStarter(tmp)
    try:
        # --http11-socket: keep-alive, so that a pipelined case is served whole
        instance = starter.start(["--http11-socket", "127.0.0.1:0", "--wsgi-file", str(app),
                                  "--master", "--processes", "1"])
        yield CorpusServer(instance, calls)
    finally:
        starter.cleanup()


@pytest.mark.parametrize("name,raw,expected", CASES, ids=[c[0] for c in CASES])
def test_corpus_case_over_the_wire(corpus_server: CorpusServer, name: str, raw: bytes,
                                   expected: Any) -> None:
    workers = corpus_server.instance.worker_pids()
    before = corpus_server.call_count()
    responses = parse_responses(send_and_read_to_close(corpus_server.port, raw))
    check_served(expected, responses, corpus_server.call_count() - before)
    if not isinstance(expected, list):
        corpus_server.instance.wait_for_log(expected["message"])
    assert corpus_server.instance.worker_pids() == workers  # nothing crashed
