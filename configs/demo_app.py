"""A hello-world WSGI app that names the worker serving it (try it behind a zerg server)."""

import os


def application(environ, start_response):
    body = f"Hello from uzerg! worker pid {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
