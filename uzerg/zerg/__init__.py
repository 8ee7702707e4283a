"""Zerg mode: the handshake, the server (zerg server and zergpool listeners) and the client."""

from uzerg.config.values import ZergPoolEntry
from uzerg.zerg.client import ReceivedSocket, attach_to_zerg_servers
from uzerg.zerg.handshake import HandshakeError, Received, fetch_sockets
from uzerg.zerg.pool import build_zergpools
from uzerg.zerg.server import Attachment, ListenerHandover, ZergServer, dedupe_sockets

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
