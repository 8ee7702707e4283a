"""HTTPS served by the workers themselves (``https``, ``https-socket``), with Python's ssl.

The master builds one server context per socket (certificate, key, ciphers, client CA, the
``ssl-option`` bits) and fails the start-up with one line if it cannot. A worker accepts, then
completes the handshake itself within ``socket-timeout`` seconds in all (a client that sends
its hello a byte at a time cannot hold the worker longer), then serves the connection through
``TlsConnection``, the encrypted counterpart of ``Connection``.

The environ gets what uWSGI's https router sets: ``HTTPS=on`` (so ``wsgi.url_scheme`` is
https), and with a client certificate ``HTTPS_DN`` (its subject, OpenSSL's one-line form),
``HTTPS_CLIENT_CERTIFICATE`` (DER, as a latin-1 string) and with ``https-export-cert``
``HTTPS_CC`` (PEM).
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import time

from uzerg.config.service_values import TlsSocketSpec
from uzerg.serve.connection import Connection, ReadTimeout
from uzerg.serve.wsgi_io import ClientDisconnected

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["TlsConnection", "TlsError", "handshake", "server_context",
           "tls_connection"]

_SEND_CHUNK = 1 << 16


class TlsError(Exception):
    """A context cannot be built (unreadable certificate, bad ciphers...): one line."""


def server_context(spec: TlsSocketSpec, options: tuple[int, ...] = ()) -> ssl.SSLContext:
    where = f"https {spec.address}"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(spec.cert, spec.key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"{where}: cannot load certificate {spec.cert} / key {spec.key}: "
                       f"{_reason(exc)}") from None
    if spec.ciphers:
        try:
            context.set_ciphers(spec.ciphers)
        except ssl.SSLError:
            raise TlsError(f"{where}: unable to set requested ciphers ({spec.ciphers})") from None
    if spec.client_ca:
        try:
            context.load_verify_locations(spec.client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"{where}: cannot load client CA {spec.client_ca}: "
                           f"{_reason(exc)}") from None
        # uWSGI: "!" before the CA file makes the client certificate mandatory
        context.verify_mode = ssl.CERT_REQUIRED if spec.client_cert_required else \
            ssl.CERT_OPTIONAL
    for bits in options:
        context.options |= bits
    return context


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)


def handshake(context: ssl.SSLContext, conn: Any, timeout: float) -> ssl.SSLSocket:
    """Wrap an accepted connection and complete the server handshake within ``timeout``
    seconds in all; raises ClientDisconnected (the caller closes ``conn``)."""
    sock = socket.socket(conn.family, conn.type, conn.proto, fileno=conn.detach())
    try:
        tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    except (OSError, ValueError) as exc:
        sock.close()
        raise ClientDisconnected(0, f"TLS: {exc}") from None
    tls.setblocking(False)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                readable, writable = [tls], []
            except ssl.SSLWantWriteError:
                readable, writable = [], [tls]
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not any(select.select(readable, writable, [], remaining)[:2]):
                raise ClientDisconnected(0, f"TLS handshake timed out after {timeout:g} s")
    except ClientDisconnected:
        tls.close()
        raise
    except (OSError, ssl.SSLError) as exc:
        tls.close()
        raise ClientDisconnected(0, f"TLS handshake failed: {_reason(exc)}") from None
    tls.settimeout(timeout)
    return tls


def tls_connection(context: ssl.SSLContext, conn: Any, timeout: float,
                   export_cert: bool) -> TlsConnection:
    """The handshake (bounded by ``timeout``), then the connection to serve."""
    return TlsConnection(handshake(context, conn, timeout), timeout, export_cert)


def tls_environ(tls: ssl.SSLSocket, export_cert: bool) -> dict[str, str]:
    env = {"HTTPS": "on", "wsgi.url_scheme": "https"}
    der = tls.getpeercert(binary_form=True)
    if der:
        env["HTTPS_CLIENT_CERTIFICATE"] = der.decode("latin-1")
        subject = (tls.getpeercert() or {}).get("subject", ())
        env["HTTPS_DN"] = "".join(f"/{_short(key)}={value}" for rdn in subject
                                  for key, value in rdn)
        if export_cert:
            env["HTTPS_CC"] = ssl.DER_cert_to_PEM_cert(der)
    return env


_SHORT_NAMES = {
    "countryName": "C", "stateOrProvinceName": "ST", "localityName": "L",
    "organizationName": "O", "organizationalUnitName": "OU", "commonName": "CN",
    "emailAddress": "emailAddress",
}


def _short(name: str) -> str:
    return _SHORT_NAMES.get(name, name)


class TlsConnection(Connection):
    """``Connection`` over TLS: the same methods, through the SSLSocket (which has a timeout
    of its own; no MSG_* flags, no sendmsg, no kernel sendfile)."""

    __slots__ = ()  # (tls: Connection's slot)

    def __init__(self, sock: ssl.SSLSocket, timeout: float, export_cert: bool = False) -> None:
        super().__init__(sock, timeout)
        sock.settimeout(timeout)
        self.tls = tls_environ(sock, export_cert)

    def recv(self, size: int) -> bytes:
        try:
            return self.sock.recv(size)
        except TimeoutError:
            raise ReadTimeout(0, f"timeout after {self.timeout:g} s waiting for the client") \
                from None
        except (OSError, ssl.SSLError) as exc:
            raise ClientDisconnected(getattr(exc, "errno", 0) or 0, f"recv(): {exc}") from None

    def recv_nowait(self, size: int) -> bytes | None:
        """Connection.recv_nowait() over TLS: None when the next record is not all there (its
        bytes wait inside the SSL object; the fd becomes readable again with the rest)."""
        sock = self.sock
        sock.setblocking(False)
        try:
            return sock.recv(size)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        except (OSError, ssl.SSLError) as exc:
            raise ClientDisconnected(getattr(exc, "errno", 0) or 0, f"recv(): {exc}") from None
        finally:
            sock.settimeout(self.timeout)

    def recv_soon(self, size: int, wait_ms: int) -> bytes | None:
        data = self.recv_nowait(size)
        if data is None:
            poller = select.poll()
            poller.register(self.fd, select.POLLIN)
            if poller.poll(wait_ms):
                data = self.recv_nowait(size)
        return data

    def buffered(self) -> bool:
        return self.sock.pending() > 0

    def send_nowait(self, data: bytes) -> None:
        sock = self.sock
        sock.setblocking(False)
        try:
            self.tx += sock.send(data)
        except (OSError, ValueError):
            pass
        finally:
            sock.settimeout(self.timeout)

    def set_read_timeout(self, seconds: float) -> None:
        self.timeout = seconds
        self.sock.settimeout(seconds)

    def sendall(self, data: bytes, more: bool = False) -> None:
        try:  # (`more` does not apply: each TLS record is written as it is made)
            self.sock.sendall(data)
        except TimeoutError:
            raise ClientDisconnected(0, "timeout writing the response") from None
        except (OSError, ssl.SSLError) as exc:
            raise ClientDisconnected(getattr(exc, "errno", 0) or 0, f"write: {exc}") from None
        self.tx += len(data)

    def sendall_pair(self, head: bytes, body: bytes) -> None:
        self.sendall(head)
        self.sendall(body)

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        total = 0
        while total < count:
            try:
                chunk = os.pread(fd, min(count - total, _SEND_CHUNK), offset + total)
            except OSError as exc:
                raise ClientDisconnected(exc.errno, f"read: {exc.strerror}") from None
            if not chunk:
                break  # the file shrank under us
            self.sendall(chunk)
            total += len(chunk)
        return total
