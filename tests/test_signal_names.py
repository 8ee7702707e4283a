"""uzerg names signals without the signal module (its IntEnums cost ~3M instructions at start,
issue 13): the names must be the enum's, aliases and unknown numbers included."""

from __future__ import annotations

import signal

import pytest

from uzerg.processes.master import SIGNALS, Master
from uzerg.processes.wakeup import signal_name


@pytest.mark.parametrize("signum", range(-1, signal.NSIG + 2))
def test_signal_name_is_the_enums(signum: int) -> None:
    try:
        expected = signal.Signals(signum).name
    except ValueError as exc:  # real-time signals past SIGRTMIN have no member
        with pytest.raises(ValueError, match=str(exc)):
            signal_name(signum)
    else:
        assert signal_name(signum) == expected


def test_aliases_get_the_enums_canonical_name() -> None:
    assert signal_name(signal.SIGCHLD) == "SIGCHLD"  # not SIGCLD
    assert signal_name(signal.SIGABRT) == "SIGABRT"  # not SIGIOT
    assert signal_name(signal.SIGIO) == "SIGIO"  # not SIGPOLL


def test_every_signal_of_the_master_has_its_handler() -> None:
    for name in SIGNALS:
        handler = signal_name(getattr(signal, "SIG" + name))[3:].lower()
        assert callable(getattr(Master, "handle_" + handler))
