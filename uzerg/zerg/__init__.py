"""Zerg mode: the handshake, the server (zerg server and zergpool listeners) and the client."""

from __future__ import annotations

from uzerg.config.values import ZergPoolEntry
from uzerg.zerg.client import ReceivedSocket, attach_to_zerg_servers
from uzerg.zerg.handshake import HandshakeError, Received, fetch_sockets

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from uzerg.zerg.pool import build_zergpools
    from uzerg.zerg.server import Attachment, ListenerHandover, ZergServer, dedupe_sockets

# the server side loads when first asked for: a zerg (a client) does not need it (start-up)
_SERVER_SIDE = {"build_zergpools": "pool", "Attachment": "server", "ListenerHandover": "server",
                "ZergServer": "server", "dedupe_sockets": "server"}


def __getattr__(name: str) -> Any:
    module = _SERVER_SIDE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)

__all__ = [
    "Attachment",
    "HandshakeError",
    "ListenerHandover",
    "Received",
    "ReceivedSocket",
    "ZergPoolEntry",
    "ZergServer",
    "attach_to_zerg_servers",
    "build_zergpools",
    "dedupe_sockets",
    "fetch_sockets",
]
