"""Run a uzerg ZergServer alone, for interop tests: ``python support/zerg_server.py ADDR N``.

Binds N TCP listeners on 127.0.0.1 (free ports), serves them on ADDR, prints one JSON line
``{"ports": [...]}`` once ready, and runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import json
import selectors
import signal
import socket
import sys

from uzerg.addresses import bind_listener, parse_address
from uzerg.logs import configure_logging
from uzerg.zerg import ZergServer


def main(argv: list[str]) -> int:
    address, count = argv[0], int(argv[1])
    protocol = argv[2] if len(argv) > 2 else None
    configure_logging()
    listeners: list[socket.socket] = [
        bind_listener(parse_address("127.0.0.1:0"), 64) for _ in range(count)
    ]
    server = ZergServer(address, listeners, [protocol] * count if protocol else None)
    server.start()
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(json.dumps({"ports": [s.getsockname()[1] for s in listeners]}), flush=True)
    with selectors.DefaultSelector() as selector:
        selector.register(server, selectors.EVENT_READ)
        while not stopping:
            for _ in selector.select(0.1):
                server.handle_readable()
    server.close(vacuum=True)
    for sock in listeners:
        sock.close()
    print(json.dumps({"attached": server.attach_count}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
