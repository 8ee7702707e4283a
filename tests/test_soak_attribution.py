"""The soak's attribution of a failed request to the churn action before it
(integration/support/soak_report.py): only a SIGKILL of a worker that serves the address, sent
while the request was in flight, explains a failure."""

from __future__ import annotations

from support.soak_report import Action, Failure, attribute, classify

SERVED_BY = {"http main": frozenset({"main", "server-zerg"}),
             "uwsgi pool": frozenset({"pool", "pool-zerg"})}


def failure(address: str = "http main", started: float = 10.0, ended: float = 10.5) -> Failure:
    return Failure(address, started, ended, "reset", "ConnectionResetError()")


def test_a_sigkill_of_a_serving_worker_in_flight_explains_it() -> None:
    kill = Action(10.2, "kill-worker", "server-zerg", "zerg3", 4242)
    later = Action(10.3, "reload", "main", "main", 100)
    result = attribute(failure(), [kill, later], SERVED_BY)
    assert result.explained and result.action == kill


def test_a_sigkill_of_a_worker_on_other_sockets_does_not() -> None:
    kill = Action(10.2, "kill-worker", "pool-zerg", "zerg4", 4343)
    result = attribute(failure(), [kill], SERVED_BY)
    assert not result.explained and result.action == kill and result.how == "nearest in time"


def test_a_sigkill_before_the_request_started_does_not() -> None:
    kill = Action(9.9, "kill-worker", "main", "main", 4444)
    assert not attribute(failure(), [kill], SERVED_BY).explained


def test_a_graceful_stop_during_the_request_is_named_and_does_not_explain_it() -> None:
    stop = Action(10.1, "stop-TERM", "pool-zerg", "zerg2", 555)
    far = Action(10.45, "kill-worker", "main", "main", 556)
    result = attribute(failure("uwsgi pool"), [stop, far], SERVED_BY)
    assert not result.explained and result.action == stop


def test_no_action_at_all() -> None:
    result = attribute(failure(), [], SERVED_BY)
    assert result.action is None and not result.explained


def test_causes() -> None:
    assert classify(ConnectionResetError()) == "reset"
    assert classify(ConnectionRefusedError()) == "refused"
    assert classify(TimeoutError()) == "timeout"
    assert classify(ConnectionError("no response from x")) == "closed without response"
    assert classify(AssertionError("status 502 from x: b''")) == "status 502"
    assert classify(ValueError("bad")) == "malformed response"
