"""A zerg server's (and zergpool entry's) own listener handed over across a re-exec: adopted
instead of bound, carried in the re-exec state, vacuumed only when it is still our file."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from uzerg.addresses import AddressError
from uzerg.config.values import parse_zergpool
from uzerg.processes.reexec import ENV_NAME, export_state, take_state
from uzerg.zerg import ZergServer, build_zergpools


def build_pools(values: Sequence[str], **options: Any) -> list[ZergServer]:
    """build_zergpools on ``zergpool`` values parsed as the config layer parses them."""
    return build_zergpools([parse_zergpool(value) for value in values], **options)


@pytest.fixture
def served() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    try:
        yield sock
    finally:
        sock.close()


def handed_over(server: ZergServer) -> ZergServer:
    """What the next master builds from the handover (same process: a duplicate descriptor)."""
    handover = server.handover()
    assert handover is not None
    return ZergServer(
        server.address_text, server.sockets, listener=socket.socket(fileno=os.dup(
            handover.sock.fileno())), created_inode=handover.created_inode,
    )


def test_an_adopted_listener_is_not_bound_again_and_serves_the_backlog(
    tmp_path: Path, served: socket.socket
) -> None:
    path = str(tmp_path / "zs")
    old = ZergServer(path, [served])
    old.start()
    inode = os.stat(path).st_ino
    new = handed_over(old)
    old.close(vacuum=False)  # the old master's descriptor is gone; `new` holds a duplicate
    # a zerg connecting between the exec and the new master's loop waits in the backlog
    pending = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    pending.connect(path)
    new.start()
    assert os.stat(path).st_ino == inode  # not unlinked, not re-created
    assert new.handle_readable() == 1
    assert pending.recv(14).startswith(b"uwsgi-zerg")
    pending.close()
    new.close(vacuum=True)  # created before the handover: still ours
    assert not os.path.exists(path)


def test_vacuum_spares_a_file_we_did_not_create(tmp_path: Path, served: socket.socket) -> None:
    path = str(tmp_path / "zs")
    old = ZergServer(path, [served])
    old.start()
    new = ZergServer(path, [served], listener=old.handover().sock,  # type: ignore[union-attr]
                     created_inode=None)
    new.start()
    new.close(vacuum=True)
    assert stat.S_ISSOCK(os.lstat(path).st_mode)  # kept: not known as ours
    os.unlink(path)


def test_a_descriptor_that_is_not_listening_is_refused(
    tmp_path: Path, served: socket.socket
) -> None:
    left, right = socket.socketpair()
    server = ZergServer(str(tmp_path / "zs"), [served], listener=left)
    with pytest.raises(AddressError, match="not a listening unix socket"):
        server.start()
    server.close()
    right.close()


def test_reexec_state_carries_the_zerg_listeners(tmp_path: Path, served: socket.socket) -> None:
    path, abstract = str(tmp_path / "zs"), f"@uzerg-handover-{os.getpid()}-{id(tmp_path)}"
    servers = [ZergServer(path, [served]), ZergServer(abstract, [served], label="zergpool")]
    for server in servers:
        server.start()
    handovers = [server.handover() for server in servers]
    text = export_state([], [], [], False, "", [h for h in handovers if h])
    assert all(os.get_inheritable(server.fileno()) for server in servers)
    for server in servers:  # the new program sees the same numbers: simulate with duplicates
        text = text.replace(f'"fd": {server.fileno()},', f'"fd": {os.dup(server.fileno())},')
    state = take_state({ENV_NAME: text})
    assert state is not None
    assert list(state.zerg_listeners) == [("unix", path), ("abstract", abstract[1:])]
    kept = state.zerg_listeners[("unix", path)]
    assert (kept.label, kept.address) == ("zerg server", path)
    assert kept.created_inode == (os.stat(path).st_dev, os.stat(path).st_ino)
    pool = state.zerg_listeners[("abstract", abstract[1:])]
    assert (pool.label, pool.created_inode) == ("zergpool", None)
    assert not os.get_inheritable(kept.sock.fileno())
    kept.close(unlink=False)
    assert os.path.exists(path)
    pool.close(unlink=True)
    for server in servers:
        server.close(vacuum=True)
    assert not os.path.exists(path)


def test_a_pool_entry_adopts_its_inherited_listener(tmp_path: Path) -> None:
    pool_address, unix = str(tmp_path / "p"), str(tmp_path / "u.sock")
    (old,) = build_pools([f"{pool_address}:{unix}"])
    handover = old.handover()
    assert handover is not None
    inherited_listeners = {handover.key: handover}
    (new,) = build_pools(
        [f"{pool_address}:{unix}"],
        inherited={("unix", unix): old.owned_sockets[0]},
        inherited_listeners=inherited_listeners,
    )
    assert inherited_listeners == {}  # claimed
    assert new.fileno() == old.fileno()  # the same socket: not bound again
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(pool_address)
    assert new.handle_readable() == 1
    assert client.recv(14).startswith(b"uwsgi-zerg")
    client.close()
    new.close(vacuum=True)
    assert not os.path.exists(pool_address)


def test_an_adopted_listener_never_started_is_still_vacuumed(
    tmp_path: Path, served: socket.socket
) -> None:
    """A new master that fails before starting it (another pool entry failed) removes the file
    that it created before the reload, as a fresh start would."""
    path = str(tmp_path / "zs")
    old = ZergServer(path, [served])
    old.start()
    new = handed_over(old)
    old.close(vacuum=False)
    new.close(vacuum=True)
    assert not os.path.exists(path)
