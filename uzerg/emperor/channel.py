"""The Emperor ↔ vassal channel, uWSGI's own: a unix socketpair whose vassal end is passed as
the fd number in ``UWSGI_EMPEROR_FD``, carrying one-byte commands both ways. Keeping it wire
compatible lets a real uWSGI vassal run under uzerg's Emperor (``emperor-wrapper``) and a
uzerg vassal under uWSGI's Emperor.
"""

from __future__ import annotations

import socket

ENV_FD = "UWSGI_EMPEROR_FD"
ENV_BROODLORD_NUM = "UWSGI_BROODLORD_NUM"
# uzerg's own: start a zerg with its workers paused (a warm standby); uWSGI vassals ignore it
ENV_STANDBY = "UZERG_BROODLORD_STANDBY"

# Emperor → vassal
STOP = 0  # stop now
RELOAD = 1  # graceful reload
GRACEFUL_STOP = 2  # stop gracefully

# vassal → Emperor
SPAWNED = 1  # the workers are up
CONFIG_REQUEST = 2  # (config pipes: not used by uzerg)
ACCEPTING = 5
LOYAL = 17  # served its first request: no throttling any more if it dies
STOP_ME = 22  # die-on-idle: "please stop me"
HEARTBEAT = 26
SOS = 30  # broodlord: "send reinforcements"

VASSAL_MESSAGES = {
    SPAWNED: "spawned", CONFIG_REQUEST: "config request", ACCEPTING: "accepting",
    LOYAL: "loyal", STOP_ME: "stop me", HEARTBEAT: "heartbeat", SOS: "sos",
}


def receive(sock: socket.socket) -> bytes | None:
    """The command bytes waiting on a non-blocking channel end: None when there are none yet,
    b"" when the peer is gone."""
    try:
        return sock.recv(64)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""
