"""The HTTP side of the request handler: the requests of an HTTP connection (one, or kept
alive, pipelined, with bodies), http-to-https redirects, and the error responses of bad heads.

`HttpRequestHandler` is the `RequestHandler` (uzerg.serve.request) that also serves HTTP:
`RequestHandler(...)` makes one unless given `http=False` (a worker whose sockets all speak
uwsgi). This module and the HTTP parsers are loaded only then: by the master, before the fork,
when a socket speaks HTTP (preload.load_http_support; start-up time, issue 13).
"""

from __future__ import annotations

from uzerg.logs import get_logger
from uzerg.protocols.http import (
    NEED_DATA,
    HttpError,
    parse_request_head,
)
from uzerg.protocols.http_stream import HttpRequestParser
from uzerg.protocols.https_redirect import https_redirect
from uzerg.serve.body import DRAIN_LIMIT, drain_before_close, send_error_response
from uzerg.serve.connection import (
    DONTWAIT,
    FIRST_BYTES_WAIT_MS,
    Connection,
    peer_text,
    server_port_of,
)
from uzerg.serve.environ import HttpEnvirons
from uzerg.serve.http_body import HttpBody
from uzerg.serve.request import RequestHandler
from uzerg.serve.response import Response
from uzerg.serve.wsgi_io import NO_BODY, ClientDisconnected, InputStream

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from uzerg.config.model import Config
    from uzerg.serve.pending import PendingHead

log = get_logger()
_new_object = object.__new__
# heads up to this size are kept with their environ (see _serve_http)
MAX_CACHED_HEAD = 1024


class HttpRequestHandler(RequestHandler):
    """RequestHandler with the HTTP methods and their state."""

    def __init__(
        self, app: Callable[..., Any], config: Config, worker_id: int, *,
        total_requests: Callable[[], int] | None = None, total_view: memoryview | None = None,
        http: bool = True,
    ) -> None:
        super().__init__(app, config, worker_id, total_requests=total_requests,
                         total_view=total_view)
        # the CGI variable count/size of the log line are only worth computing when a request
        # line can be written at all (logging on, or log-4xx/5xx, log-zero/slow/big/...)
        self.environs = HttpEnvirons(self._base, self._hostname, self.logger is not None)
        self._http_environ = self.environs.build  # bound once: one attribute load per call
        # whole heads without a body, as they came -> (head, environ but wsgi.input, CGI var
        # count, their uwsgi size but REMOTE_ADDR's (0 when not counted), server port):
        # a client repeating a request (the same URI and headers) skips the parse and the
        # environ's making; bounded: 256 heads of up to MAX_CACHED_HEAD bytes
        self._heads: dict[bytes, tuple[Any, dict[str, Any], int, int, str]] = {}

    def _serve_redirect(
        self, conn: Connection, peer: Any, counts: Any, redirect_port: str, data: bytes,
        deadline: float,
    ) -> PendingHead | None:
        """http-to-https: the request gets a 301 to the same URI over https (serve/tls.py);
        an incomplete head is returned to be parked, like any other."""
        if not data:
            data = conn.recv_soon(self.buffer_size, FIRST_BYTES_WAIT_MS)
            if data is None:
                return self._park(conn, peer, "https-redirect", None, b"", deadline,
                                  redirect_port=redirect_port)
            if not data:
                return None
        parser = HttpRequestParser(self.buffer_size)
        parser.feed(data)
        try:
            head = parser.next_event()
        except HttpError as exc:
            self._http_error(conn, exc, peer, counts)
            return None
        if head is NEED_DATA:
            return self._park(conn, peer, "https-redirect", None, bytes(parser.buffer),
                              deadline, redirect_port=redirect_port)
        conn.sendall(https_redirect(head, self._hostname, redirect_port))
        counts.requests, counts.status = 1, 301
        return None

    def _serve_http(
        self, conn: Connection, peer: Any, counts: Any, core: int, keep_alive: bool,
        server_port: str | None, protocol: str, data: bytes, deadline: float,
    ) -> PendingHead | None:
        """Serve the connection's requests; `data`: bytes read so far (b"": none yet). When a
        head is not complete, the connection is returned to be parked."""
        if not data:
            if conn.tls is None:
                try:  # (conn.recv_soon()'s first attempt inlined)
                    data = conn.sock.recv(self.buffer_size, DONTWAIT)
                except BlockingIOError:
                    data = conn.recv_soon(self.buffer_size, FIRST_BYTES_WAIT_MS)
                except OSError as exc:
                    raise ClientDisconnected(exc.errno, f"recv(): {exc.strerror}") from None
            else:
                data = conn.recv_soon(self.buffer_size, FIRST_BYTES_WAIT_MS)
            if data is None:
                return self._park(conn, peer, protocol, server_port, b"", deadline)
            if not data:
                return None
        if server_port is None:
            server_port = server_port_of(conn.sock)
        # the common case: a whole head with no body, alone in the bytes read (one request
        # per connection, or keep-alive without pipelining), served without the parser's
        # buffering and state machine; a head seen before (the same bytes, on this port) comes
        # with its finished environ
        known = self._heads.get(data)
        if known is not None and known[4] == server_port and type(peer) is tuple \
                and conn.tls is None:
            head, env, var_count, var_size = known[0], known[1].copy(), known[2], known[3]
            env["REMOTE_ADDR"] = addr = peer[0]
            env["REMOTE_PORT"] = f"{peer[1]}"  # (an int: its str, without a type call)
            if var_count:
                var_size += len(addr)
        else:
            if data[:2] == b"\r\n":  # blank lines first: the parser skips them
                return self._serve_http_parsed(conn, peer, counts, core, keep_alive,
                                               server_port, protocol, data, deadline, None)
            try:
                head = parse_request_head(data, self.buffer_size)
            except HttpError as exc:
                self._http_error(conn, exc, peer, counts)
                return None
            if head is None:
                return self._park(conn, peer, protocol, server_port, data, deadline)
            if head.has_body or (keep_alive and head.head_size != len(data)):
                # a body, or pipelined requests: the general path
                return self._serve_http_parsed(conn, peer, counts, core, keep_alive,
                                               server_port, protocol, data, deadline, head)
            env, var_count, var_size = self._http_environ(head, peer, server_port, conn.tls)
            if head.head_size == len(data) <= MAX_CACHED_HEAD and type(peer) is tuple \
                    and conn.tls is None:
                heads = self._heads
                if len(heads) >= 256:
                    heads.clear()  # bounded, and it follows the traffic
                heads[data] = (head, env.copy(), var_count,
                               var_size - len(env["REMOTE_ADDR"]) if var_count else 0,
                               server_port)
        env["wsgi.input"] = NO_BODY
        # Response(...) without its __init__ frame: the same fields
        response = _new_object(Response)
        response.conn = conn
        response.version = version = head.version
        response.is_head = head.method == "HEAD"
        # an unanswered Expect: 100-continue leaves the stream position unknown: no reuse
        response.keep_alive = (keep_alive and head.keep_alive and not self.shutting_down
                               and not head.expect_continue)
        response.add_close = version == "HTTP/1.1"
        # the class defaults read on the way, in the instance (see request._serve_uwsgi)
        response.status = None
        response.headers_sent = response.chunked = False
        response.quiet_writes = self.disable_write_exception
        if not self._respond(env, response, counts, core, var_count, var_size, 0) \
                or not response.keep_alive or self.shutting_down:
            return None
        # parked at once, not read first: the next request is seldom there yet, and a recv()
        # that would block raises (an exception costs more than the epoll round, and the
        # epoll says at once when it is there)
        return self._park(conn, peer, protocol, server_port, b"", 0.0, idle=True)

    def _serve_http_parsed(
        self, conn: Connection, peer: Any, counts: Any, core: int, keep_alive: bool,
        server_port: str, protocol: str, data: bytes, deadline: float, head: Any,
    ) -> PendingHead | None:
        """The general path: requests with a body, pipelined ones, leading blank lines; `head`:
        the head at the start of `data`, parsed already (None: not yet)."""
        parser = HttpRequestParser(self.buffer_size)
        if head is None:
            parser.feed(data)
        else:
            parser.after_head(head, data[head.head_size:])
        while True:
            if head is None:
                try:
                    head = parser.next_event()
                except HttpError as exc:
                    self._http_error(conn, exc, peer, counts)
                    return None
                if head is NEED_DATA:
                    return self._park(conn, peer, protocol, server_port, bytes(parser.buffer),
                                      deadline)
            env, var_count, var_size = self._http_environ(head, peer, server_port, conn.tls)
            source = None
            if head.has_body:
                source = HttpBody(conn, parser, head.expect_continue)
                env["wsgi.input"] = InputStream(source)
            else:
                env["wsgi.input"] = NO_BODY
            # an unanswered Expect: 100-continue leaves the stream position unknown: no reuse
            wants_more = (keep_alive and head.keep_alive and not self.shutting_down
                          and not head.expect_continue)
            response = Response(conn, head.version, head.method == "HEAD", wants_more,
                                head.version == "HTTP/1.1")
            response.quiet_writes = self.disable_write_exception
            head = None
            ok = self._respond(env, response, counts, core, var_count, var_size, 0)
            if source is None:
                if not ok:
                    return None
            elif source.error is not None or not ok or source.expect_continue:
                # a malformed body (the 400 went out unless a response had started), a failed
                # request, or a body never asked for (no 100 Continue): it may never come
                self._log_body_error(source, peer)
                return None
            if not response.keep_alive or self.shutting_down:
                if not parser.message_complete:
                    drain_before_close(env["wsgi.input"])
                    self._log_body_error(source, peer)
                return None
            if not parser.message_complete and not env["wsgi.input"].drain(DRAIN_LIMIT):
                self._log_body_error(source, peer)
                return None
            parser.start_next_request()
            deadline = 0.0  # the next head has its own
            if not parser.buffer:
                more = conn.recv_nowait(self.buffer_size)
                if more is None:  # an idle keep-alive connection
                    return self._park(conn, peer, protocol, server_port, b"", 0.0, idle=True)
                if not more:
                    return None
                parser.feed(more)

    def _http_error(self, conn: Connection, exc: HttpError, peer: Any, counts: Any) -> None:
        log_http_error(exc, peer)
        send_error_response(conn, exc, self._error_extra)
        counts.requests += 1
        counts.status = exc.status

    @staticmethod
    def _log_body_error(source: Any, peer: Any) -> None:
        """Log the malformed body of `source` (an HttpBody), if it was one."""
        if source is not None and source.error is not None:
            log_http_error(source.error, peer)


def log_http_error(exc: HttpError, peer: Any) -> None:
    log.error(f"invalid HTTP request from {peer_text(peer)}: {exc.message}",
              event_kind="http_protocol_error", status=exc.status)
