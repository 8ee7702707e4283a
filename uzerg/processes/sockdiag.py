"""The listen queue of a unix socket, read through sock_diag netlink (``UNIX_DIAG_RQLEN``).

TCP sockets report their accept queue in ``TCP_INFO``; unix sockets have no such option, but
the kernel's unix_diag answers a query by inode with ``rqlen`` = connections waiting to be
accepted and ``wqlen`` = the listen backlog (Linux >= 3.3, ``CONFIG_UNIX_DIAG``).
"""

from __future__ import annotations

import os
import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
UDIAG_SHOW_RQLEN = 0x10
UNIX_DIAG_RQLEN = 4
_NO_COOKIE = 0xFFFFFFFF
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
# unix_diag_req: family, protocol, pad, states, ino, show, cookie[2]
_REQUEST = struct.Struct("=BBHIIIII")
_MESSAGE_SIZE = 16  # unix_diag_msg: family, type, state, pad, ino, cookie[2]
_ATTR = struct.Struct("=HH")
_RQLEN = struct.Struct("=II")


def unix_listen_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(connections waiting, backlog) of a listening unix socket; None when unknown."""
    try:
        inode = os.fstat(sock.fileno()).st_ino
        request = _REQUEST.pack(socket.AF_UNIX, 0, 0, 0xFFFFFFFF, inode, UDIAG_SHOW_RQLEN,
                                _NO_COOKIE, _NO_COOKIE)
        header = _HEADER.pack(_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST,
                              1, 0)
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as link:
            link.settimeout(1.0)
            link.send(header + request)
            reply = link.recv(8192)
    except OSError:
        return None
    return parse_rqlen_reply(reply)


def parse_rqlen_reply(reply: bytes) -> tuple[int, int] | None:
    """The (rqlen, wqlen) of a sock_diag reply, or None (error reply, no attribute)."""
    if len(reply) < _HEADER.size + _MESSAGE_SIZE:
        return None
    length, kind, _flags, _seq, _pid = _HEADER.unpack_from(reply)
    if kind != SOCK_DIAG_BY_FAMILY:
        return None
    end = min(length, len(reply))
    offset = _HEADER.size + _MESSAGE_SIZE
    while offset + _ATTR.size <= end:
        size, attr = _ATTR.unpack_from(reply, offset)
        if size < _ATTR.size:
            return None
        if attr == UNIX_DIAG_RQLEN and offset + _ATTR.size + _RQLEN.size <= end:
            waiting, backlog = _RQLEN.unpack_from(reply, offset + _ATTR.size)
            return waiting, backlog
        offset += (size + 3) & ~3
    return None
