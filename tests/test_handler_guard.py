"""The master loop's guard (uzerg.processes.guard, Watches.dispatch): a handler that raises
costs its own call, is logged in one line, and its descriptor rests a moment; what ends the
instance on purpose goes through. A real epoll and socket pairs."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Mapping

import pytest
from structlog.testing import capture_logs

from uzerg.processes.guard import Guard, InstanceExit, one_line
from uzerg.processes.hooks import HookExit
from uzerg.processes.prometheus import render
from uzerg.processes.services import COOL_DOWN, MasterService, OnReadable, Watches


class Failing(MasterService):
    """A socket whose handler raises ``error`` (once read) until told otherwise."""

    label = "failing service"

    def __init__(self, error: BaseException | None) -> None:
        self.mine, self.peer = socket.socketpair()
        self.mine.setblocking(False)
        self.error = error
        self.calls = 0

    def on_readable(self) -> None:
        self.calls += 1
        self.mine.recv(16)
        if self.error is not None:
            raise self.error

    def watches(self) -> Mapping[int, OnReadable]:
        return {self.mine.fileno(): self.on_readable}

    def close_in_worker(self) -> None:
        self.mine.close()

    def shutdown(self, vacuum: bool) -> None:
        self.mine.close()
        self.peer.close()


@pytest.fixture
def watches() -> Iterator[Watches]:
    item = Watches()
    yield item
    item.close()


def test_a_failing_handler_is_one_line_and_the_others_are_served(watches: Watches) -> None:
    bad, good = Failing(ValueError("invalid literal for int() with base 10: '²'")), Failing(None)
    watches.sync([bad, good])
    bad.peer.send(b"x")
    good.peer.send(b"y")
    with capture_logs() as logs:
        watches.dispatch(1.0)
    assert (bad.calls, good.calls) == (1, 1)
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert [entry["event"] for entry in errors] == [
        "failing service: ValueError: invalid literal for int() with base 10: '²'; "
        "the master goes on"]
    assert not [entry for entry in logs if entry["log_level"] == "debug"]  # no UZERG_DEBUG
    # the failed descriptor rests: not watched, and the loop wakes up when it is again
    watches.sync([bad, good])
    assert set(watches.callbacks) == {good.mine.fileno()}
    assert watches.timeout([bad, good], 10.0) <= COOL_DOWN
    watches.cooling[bad.mine.fileno()] = time.monotonic()  # its rest is over
    watches.sync([bad, good])
    assert bad.mine.fileno() in watches.callbacks
    for item in (bad, good):
        item.shutdown(vacuum=False)


@pytest.mark.parametrize("error", [InstanceExit(), HookExit(3), SystemExit(2),
                                   KeyboardInterrupt()])
def test_what_ends_the_instance_goes_through(watches: Watches, error: BaseException) -> None:
    service = Failing(error)
    watches.sync([service])
    service.peer.send(b"x")
    with pytest.raises(type(error)):
        watches.dispatch(1.0)
    service.peer.send(b"x")
    with pytest.raises(type(error)):
        Guard().call("here", service.on_readable)
    service.shutdown(vacuum=False)


def test_failing_watches_and_wake_at_are_logged_not_raised(watches: Watches) -> None:
    class Broken(Failing):
        def watches(self) -> Mapping[int, OnReadable]:
            raise RuntimeError("watches")

        def wake_at(self) -> float | None:
            raise RuntimeError("wake_at")

    broken, good = Broken(None), Failing(None)
    with capture_logs() as logs:
        watches.sync([broken, good])
        assert watches.timeout([broken, good], 2.0) == 2.0
    assert set(watches.callbacks) == {good.mine.fileno()}
    assert [entry["event"] for entry in logs] == [
        "failing service: RuntimeError: watches; the master goes on",
        "failing service: RuntimeError: wake_at; the master goes on"]
    for item in (broken, good):
        item.shutdown(vacuum=False)


def test_a_repeated_failure_is_counted_not_repeated() -> None:
    guard = Guard()

    def fail() -> None:
        raise OSError(22, "Invalid argument")

    with capture_logs() as logs:
        for _ in range(5):
            assert guard.call("cron", fail) is None
    assert [entry["event"] for entry in logs] == [
        "cron: OSError: [Errno 22] Invalid argument; the master goes on"]
    line, (when, repeats) = next(iter(guard._recent.items()))
    assert repeats == 4
    guard._recent[line] = (when - 60, repeats)  # the quiet period is over
    with capture_logs() as logs:
        guard.call("cron", fail)
    assert logs[0]["event"].endswith("the master goes on (and 4 more times in 10 s)")


def test_the_traceback_only_with_uzerg_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UZERG_DEBUG", "1")

    def fail() -> None:
        raise KeyError("x")

    with capture_logs() as logs:
        Guard().failed("stats server 127.0.0.1:0", _raised(fail), "127.0.0.1:4242",
                       "connection closed")
    assert logs[0]["event"] == ("stats server 127.0.0.1:0 (127.0.0.1:4242): KeyError: 'x'; "
                                "connection closed")
    debug = [entry["event"] for entry in logs if entry["log_level"] == "debug"]
    assert debug[0] == "Traceback (most recent call last):" and debug[-1] == "KeyError: 'x'"


def _raised(function: object) -> Exception:
    try:
        function()  # type: ignore[operator]
    except Exception as exc:
        return exc
    raise AssertionError("did not raise")


def test_one_line_is_one_line_and_bounded() -> None:
    assert one_line(ValueError("a\nb\r\n  c")) == "ValueError: a b c"
    assert one_line(RuntimeError()) == "RuntimeError"
    assert len(one_line(ValueError("x" * 10_000))) < 400


def test_prometheus_labels_of_undecodable_paths_are_valid_utf8() -> None:
    """A socket passed by systemd at a path that is not UTF-8 (Python's str holds the byte
    as a lone surrogate): the scrape used to raise UnicodeEncodeError in the master."""
    document = {"sockets": [{"name": "/run/app/\udcff.sock", "proto": "uwsgi", "queue": 0},
                            {"name": "odd\ud800", "proto": "uwsgi", "queue": 0}],
                "workers": []}
    text = render(document).encode()  # strict UTF-8
    assert b'uwsgi_socket_queue_length{name="/run/app/\\\\xff.sock",proto="uwsgi"} 0' in text
    assert b'name="odd\\\\ud800"' in text
