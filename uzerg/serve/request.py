"""From an accepted connection to a closed one: parse, build the environ, call the app, respond.

`RequestHandler(app, config, worker_id).handle(conn, peer, protocol)` serves every request of
one connection and closes it. It never raises for a bad request, a client that goes away or
an application error (those end in a log line, a 4xx/500 where a response is still possible,
and a closed connection). One handler per worker process; with `--threads` several threads
may call `handle()` at once on different connections (per-request state is local).
"""

from __future__ import annotations

import _socket  # not socket: ~14M instructions to import (IntEnums of every constant)
import itertools
import sys
import time
from collections.abc import Callable

from uzerg.config.model import Config
from uzerg.logs import get_logger, request_logger
from uzerg.protocols.uwsgi import UwsgiProtocolError, uwsgi_vars_end
from uzerg.serve.body import InvalidBody, LengthBody, drain_before_close, send_error_response
from uzerg.serve.connection import (  # (FIRST_BYTES_WAIT_MS: what worker.py refers to)
    DONTWAIT,
    FIRST_BYTES_WAIT_MS,
    Connection,
    ReadTimeout,
    peer_text,
    preset_timeouts,
    timeval,
)
from uzerg.serve.pending import (
    HandledCounts,
    PendingHead,
    drop_pending,
    read_more,
    serve_blocking,
)
from uzerg.serve.preload import serves_files
from uzerg.serve.response import Response
from uzerg.serve.uwsgi_environ import NO_NEAR_PACKET, UwsgiEnvirons, near_packet
from uzerg.serve.wsgi_io import (
    NO_BODY,
    BodyReadError,
    ClientDisconnected,
    ErrorStream,
    FileWrapper,
    InputStream,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from typing import Any

    from uzerg.serve.requestlog import RequestLogger
    from uzerg.serve.static import StaticMap

log = get_logger()
_new_tuple = tuple.__new__
_new_object = object.__new__
_ERROR_500 = (
    b" 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
    b"Connection: close\r\n\r\nInternal Server Error"
)


class _Counts:
    # one per connection, its fields set by start() (no __init__ frame to run). Slots, not
    # class defaults: CPython 3.11 cannot specialise reading a class attribute through an
    # instance (a generic lookup, ~200 instructions each), and it can a slot
    __slots__ = ("requests", "exceptions", "status", "static_requests", "read_errors")


class RequestHandler:
    # the HTTP side's (HttpRequestHandler): a handler built with http=False has neither, and
    # is given uwsgi connections only
    _serve_http: Callable[..., PendingHead | None]
    _serve_redirect: Callable[..., PendingHead | None]

    def __new__(cls, *args: Any, http: bool = True, **kwargs: Any) -> RequestHandler:
        """`RequestHandler(..., http=False)`: one that serves the uwsgi protocol only, without
        the HTTP side (not loaded); else an HttpRequestHandler (uzerg.serve.http_requests)."""
        if http and cls is RequestHandler:
            from uzerg.serve.http_requests import HttpRequestHandler

            cls = HttpRequestHandler
        return object.__new__(cls)

    def __init__(
        self, app: Callable[..., Any], config: Config, worker_id: int, *,
        total_requests: Callable[[], int] | None = None, total_view: memoryview | None = None,
        http: bool = True,
    ) -> None:
        """`total_requests()`, when given, bumps and returns the instance-wide request count
        (the M of uWSGI's `req: N/M`); `total_view`, when given instead, is that count as a
        memoryview item, bumped here (no call per logged request); without either M is this
        worker's count. `http`: see __new__."""
        # add-header/del-header: the app's start_response() goes through them (none: direct)
        headers = None
        if config.add_header or config.del_header:  # loaded by the master before the fork
            from uzerg.serve.headers import ResponseHeaders

            headers = ResponseHeaders.from_config(config.add_header, config.del_header)
        self.app = app if headers is None else headers.wrap(app)
        self._error_extra = b"" if headers is None else headers.error_lines
        head, _, text = _ERROR_500.partition(b"\r\n\r\n")
        self._error_500 = b"%s\r\n%s\r\n%s" % (head, self._error_extra, text)
        self.worker_id = worker_id
        self.buffer_size = config.buffer_size  # at most 65535: the option's maximum
        self.socket_timeout = float(config.socket_timeout)
        self.https_export_cert = config.https_export_cert
        self._timeval = timeval(self.socket_timeout)
        # the worker set _timeval as SO_RCVTIMEO/SO_SNDTIMEO on every listener it accepts
        # plain connections from, all TCP (connection.preset_timeouts): they start with both
        self.timeouts_preset = False
        self.idle_timeout = float(config.http_timeout)
        # uWSGI's http router: http-headers-timeout, default socket-timeout
        self.headers_timeout = float(config.http_headers_timeout or self.socket_timeout)
        self.http_keepalive = config.http_keepalive
        self.static: StaticMap | None = None
        if serves_files(config):  # uzerg.serve.static: loaded by the master before the fork
            from uzerg.serve.static import StaticMap, serve_static

            self.static = StaticMap.from_config(config, headers)
            self._serve_static = serve_static
        # None when no line can be written: then no clock is read and nothing counted per
        # request for it (the clocks and counts only feed the log line)
        self.logger: RequestLogger | None = request_logger(config, worker_id)
        self.ignore_write_errors = config.ignore_write_errors
        self.disable_write_exception = config.disable_write_exception
        self.total_requests = total_requests
        self._total_view = total_view
        self.shutting_down = False  # set by the worker: finish the current request, then close
        self._requests = itertools.count(1)  # next() is atomic under the GIL
        self._hostname = _socket.gethostname()
        threads = config.threads
        processes = config.processes
        self.errors = ErrorStream()
        self._base = {
            "wsgi.version": (1, 0),
            "wsgi.multithread": threads > 1,
            "wsgi.multiprocess": processes > 1,
            "wsgi.run_once": False,
            "wsgi.errors": self.errors,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
            "wsgi.url_scheme": "http",
            "SCRIPT_NAME": "",
        }
        if config.wsgi_disable_file_wrapper:
            del self._base["wsgi.file_wrapper"]
        uwsgi_environs = UwsgiEnvirons(self._base)
        self._uwsgi_environs = uwsgi_environs
        self._uwsgi_environ = uwsgi_environs.build_new  # (after the cache lookup below)
        self._uwsgi_blocks = uwsgi_environs.cache  # looked up first, without a call
        self._near_packet: tuple[Any, ...] = NO_NEAR_PACKET  # (uwsgi_environ.near_packet)
        self._uwsgi_max_end = self.buffer_size + 4
        # (packet, its end, its entry in _uwsgi_blocks) of the last packet found there whole,
        # without a body byte: a proxy sends the same packet for repeated requests, and
        # comparing it costs less than hashing its vars block for the lookup
        self._last_packet: tuple[bytes | None, int, Any] = (None, 0, None)

    def preset_timeouts(self, listeners: Any) -> None:
        """Set socket-timeout on the TCP listeners the worker accepts from (sockets.Listener),
        so that their connections start with SO_RCVTIMEO/SO_SNDTIMEO set (see
        connection.preset_timeouts)."""
        self.timeouts_preset = preset_timeouts(listeners, self._timeval)

    # -- connection -------------------------------------------------------------------------

    def handle(
        self, conn: _socket.socket, peer: Any, protocol: str, *, core: int = 0,
        server_port: str | None = None, tls: ssl.SSLContext | None = None,
        redirect_port: str = "",
    ) -> HandledCounts:
        """Serve every request of `conn` and close it, waiting here for its heads (tests and
        tools; the worker calls start() and waits in its epoll instead). Never raises."""
        counts = self.start(conn, peer, protocol, core, server_port, tls=tls,
                            redirect_port=redirect_port)
        return serve_blocking(self, counts, core)

    def start(
        self, sock: _socket.socket, peer: Any, protocol: str, core: int = 0,
        server_port: str | None = None, *, tls: ssl.SSLContext | None = None,
        redirect_port: str = "", conn: Connection | None = None, data: bytes = b"",
        deadline: float = 0.0,
    ) -> HandledCounts:
        """Serve a new connection's requests as far as its bytes allow, never waiting for a
        head: then close it, or return it as `counts.pending` to park until readable
        (`resume()`) or its deadline (`expire()`). `protocol`: "uwsgi", "http", "http11"
        (keep-alive) or "https-redirect" (http-to-https: a 301 to `redirect_port`); `core`:
        the thread's number for the log line; `server_port`: the listening port as text;
        `tls`: an HTTPS socket's context (the handshake is done here, bounded by
        socket-timeout). (`conn`, `data`, `deadline`: for resume().) Never raises."""
        counts = _new_object(_Counts)
        counts.requests = counts.exceptions = counts.status = counts.static_requests = 0
        counts.read_errors = 0
        pending = None
        try:
            if conn is None:
                if tls is None:
                    # Connection(sock, ...) without its __init__ frame: the same fields
                    if sock.gettimeout() is not None:
                        sock.setblocking(True)
                    conn = _new_object(Connection)
                    conn.sock = sock
                    conn.fd = sock.fileno()
                    conn.timeout = self.socket_timeout
                    conn._rcv_tv = packed = self._timeval
                    if self.timeouts_preset:
                        # from a TCP listener of ours: accept() copied its timeouts (see
                        # connection.preset_timeouts; never set for a socketpair)
                        conn._rcv_armed = packed
                        conn._snd_armed = True
                    else:
                        conn._rcv_armed = b""
                        conn._snd_armed = False
                    conn.tx = 0
                    conn.tls = None
                else:
                    conn = _tls_connection(tls, sock, self.socket_timeout,
                                           self.https_export_cert)
            if protocol == "uwsgi":
                pending = self._serve_uwsgi(conn, peer, counts, core, data, deadline)
            elif protocol == "https-redirect":
                pending = self._serve_redirect(conn, peer, counts, redirect_port, data, deadline)
            else:
                keep = self.http_keepalive or protocol == "http11"
                pending = self._serve_http(conn, peer, counts, core, keep, server_port,
                                           protocol, data, deadline)
        except ReadTimeout as exc:
            log.info(f"{exc.strerror} ({peer_text(peer)}): closing", event_kind="client_timeout")
        except ClientDisconnected as exc:
            log.info(f"client {peer_text(peer)} disconnected: {exc.strerror}",
                     event_kind="client_gone")
        except Exception:  # a bug of ours must not take the worker down
            _log_traceback("uzerg: unexpected error while serving a connection")
        finally:
            if pending is None:
                try:  # (conn.close() inlined)
                    (sock if conn is None else conn.sock).close()
                except OSError:
                    pass
        # (the tuple built directly: HandledCounts(...) runs a Python-level __new__)
        return _new_tuple(HandledCounts, (
            counts.requests, counts.exceptions, conn.tx if conn else 0, counts.status,
            counts.static_requests, counts.read_errors, pending))

    def resume(self, pending: PendingHead, core: int = 0) -> HandledCounts:
        """Go on with a parked connection that became readable."""
        conn = pending.conn
        if pending.idle and conn.tls is None:
            # a keep-alive connection's next request (read_more() inlined: the common case);
            # its head's deadline starts if it has to be parked again
            try:
                data = conn.sock.recv(self.buffer_size + 4, DONTWAIT)
            except BlockingIOError:  # a spurious wake-up: still waiting
                return _new_tuple(HandledCounts, (0, 0, 0, 0, 0, 0, pending))
            except OSError as exc:
                log.info(f"client {peer_text(pending.peer)} disconnected: recv(): "
                         f"{exc.strerror}", event_kind="client_gone")
                data = b""
            if not data:  # closed between two requests: nothing owed, nothing said
                conn.close()
                return _new_tuple(HandledCounts, (0, 0, 0, 0, 0, 0, None))
            conn.tx = 0  # what was sent before is counted already
            return self.start(conn.sock, pending.peer, pending.protocol, core,
                              pending.server_port, conn=conn, data=data)
        more = read_more(pending, self.buffer_size + 4, self.headers_timeout)
        if not more:  # closed, or a spurious wake-up: still waiting
            return HandledCounts(0, 0, 0, 0, pending=None if more is None else pending)
        return self.start(pending.conn.sock, pending.peer, pending.protocol, core,
                          pending.server_port, redirect_port=pending.redirect_port,
                          conn=pending.conn, data=pending.data, deadline=pending.deadline)

    def expire(self, pending: PendingHead, why: str = "timeout") -> HandledCounts:
        """Drop a parked connection whose head did not come in time (or that makes room for
        a newer one): a 408 to an HTTP client that sent part of a head, a log line, close."""
        return drop_pending(pending, why, self.headers_timeout)

    def _park(
        self, conn: Connection, peer: Any, protocol: str, server_port: str | None, data: bytes,
        deadline: float, idle: bool = False, redirect_port: str = "",
    ) -> PendingHead:
        if idle:
            deadline = time.monotonic() + self.idle_timeout
        elif not deadline:
            deadline = time.monotonic() + self.headers_timeout
        # PendingHead(conn, peer, ...) without its __init__ frame: the same fields
        pending = _new_object(PendingHead)
        pending.conn = conn
        pending.peer = peer
        pending.protocol = protocol
        pending.redirect_port = redirect_port
        pending.server_port = server_port
        pending.data = data
        pending.deadline = deadline
        pending.idle = idle
        return pending

    def _serve_uwsgi(
        self, conn: Connection, peer: Any, counts: _Counts, core: int, data: bytes,
        deadline: float,
    ) -> PendingHead | None:
        """Serve the request; `data`: its bytes read so far (b"": none yet). A packet whose
        header and vars are not all there yet is returned to be parked."""
        if not data:
            if conn.tls is None:
                try:  # (conn.recv_soon()'s first attempt inlined)
                    data = conn.sock.recv(self.buffer_size + 4, DONTWAIT)
                except BlockingIOError:
                    data = conn.recv_soon(self.buffer_size + 4, FIRST_BYTES_WAIT_MS)
                except OSError as exc:
                    raise ClientDisconnected(exc.errno, f"recv(): {exc.strerror}") from None
            else:
                data = conn.recv_soon(self.buffer_size + 4, FIRST_BYTES_WAIT_MS)
            if data is None:
                return self._park(conn, peer, "uwsgi", None, b"", deadline)
            if not data:
                return None
        try:
            last = self._last_packet
            near = self._near_packet
            if data == last[0]:  # the packet of the last request again (a memcmp, no hash)
                end, known = last[1], last[2]
            elif len(data) == near[0] and data.startswith(near[1]) and data.endswith(near[2]) \
                    and (port := data[near[3]:near[4]].decode("latin-1")) != near[5]:
                end, known, template = near[0], None, near[6]  # (see near_packet)
                env = template[0].copy()
                env["REMOTE_PORT"] = port
                _, var_count, length, protocol, is_head = template
            else:
                # all the bytes so far (a parked connection keeps them); buffer-size is at
                # most 65535. A whole packet with modifier1 0 is seen here; anything else, an
                # error or an incomplete packet, by uwsgi_vars_end()
                size = len(data)
                if size < 4 or data[0] != 0 or size < (end := 4 + (data[1] | (data[2] << 8))) \
                        or end > self._uwsgi_max_end:
                    end = uwsgi_vars_end(data, self.buffer_size)
                    if end < 0:
                        return self._park(conn, peer, "uwsgi", None, data, deadline)
                block = data[4:end]
                known = self._uwsgi_blocks.get(block)  # UwsgiEnvirons.build(), inlined
                if known is None:
                    env, var_count, length, protocol, is_head = self._uwsgi_environ(block, peer)
                    recent = self._uwsgi_environs.recent
                    if recent is not near[7] and recent is not None:
                        self._near_packet = near_packet(data[:4], recent)
                elif end == size:
                    self._last_packet = (data, end, known)
            if known is not None:
                env = known[0].copy()
                if "REMOTE_ADDR" not in env and type(peer) is tuple:
                    env["REMOTE_ADDR"], env["REMOTE_PORT"] = peer[0], f"{peer[1]}"
                _, var_count, length, protocol, is_head = known
        except UwsgiProtocolError as exc:
            log.error(str(exc), event_kind="uwsgi_protocol_error")
            return None
        if length:
            env["wsgi.input"] = InputStream(LengthBody(conn, data[end:], length))
        else:
            env["wsgi.input"] = NO_BODY
        # Response(conn, protocol, is_head, False, False) without its __init__ frame
        response = _new_object(Response)
        response.conn = conn
        response.version = protocol
        response.is_head = is_head
        # the class defaults read on the way stored in the instance: reading a class
        # attribute through an instance is a generic lookup in CPython 3.11 (Response)
        response.status = None
        response.headers_sent = response.chunked = response.keep_alive = False
        response.add_close = False
        response.quiet_writes = self.disable_write_exception
        if self._respond(env, response, counts, core, var_count * 2, end - 4, data[3]) \
                and length:
            drain_before_close(env["wsgi.input"])
        return None

    # -- one request ------------------------------------------------------------------------

    def _respond(
        self, env: dict[str, Any], response: Response, counts: _Counts, core: int,
        var_count: int, var_size: int, modifier2: int,
    ) -> bool:
        """Run the app (or a static file) and write the response; False: close the connection."""
        logger = self.logger
        if logger is not None:
            start = time.time()
            started = time.perf_counter_ns()  # (µs by an integer division at the end)
        else:  # logging off: nothing reads them
            start = 0.0
            started = 0
        ok = True
        body = env["wsgi.input"]  # ours: the application may replace it in the environ
        try:
            if self.static and self._serve_static(self.static, env, response):
                if response.status_code != 304:  # uWSGI counts the files it sends
                    counts.static_requests += 1
            else:  # the app (a call per request saved: no _call_app())
                # (quiet_writes: disable-write-exception, set where the Response is made)
                app = self.app  # (a load, not a method lookup that fails every time)
                result = app(env, response.start_response)
                try:
                    # the commonest body, one bytes in a list: send_iterable()'s first case
                    # (a call saved), sent with the headers in one send()
                    if type(result) is list and len(result) == 1 \
                            and type(chunk := result[0]) is bytes and not response.headers_sent:
                        response.send_head(chunk, len(chunk))
                        declared = response.declared_length
                        if declared is not None and response.body_size < declared:
                            response.finish_body()  # a declared length the body falls short of
                    else:
                        response.send_iterable(result)
                finally:
                    if type(result) is not list:  # (a list has no close())
                        close = getattr(result, "close", None)
                        if close is not None:
                            close()
        except InvalidBody as exc:
            # a malformed chunked body, the app let the failed read through: the client's
            # fault, so no traceback, and a 400 when no response has started
            ok = False
            if not response.headers_sent:
                response.status_code = exc.http_error.status
                try:
                    send_error_response(response.conn, exc.http_error, self._error_extra)
                except ClientDisconnected:
                    pass
        except BodyReadError:
            # the app let the failed read of its body through: as uWSGI, a traceback and a
            # 500 in the log, and no response (the client is gone or stalled)
            ok = _app_failed(counts, response, None)
        except ClientDisconnected as exc:
            if not self.ignore_write_errors:
                log.info(f"uwsgi_response_write_body_do(): {exc.strerror} during "
                         f"{env.get('REQUEST_METHOD', '')} {env.get('REQUEST_URI', '')} "
                         f"({env.get('REMOTE_ADDR', '')})", event_kind="client_gone")
            ok = False
        except Exception:
            ok = _app_failed(counts, response, self._error_500)
        counts.requests += 1
        read_errors = body.read_errors
        if read_errors:
            counts.read_errors += read_errors
        status = counts.status = response.status_code
        if logger is not None:
            worker_requests = next(self._requests)
            if not logger.logs_all and not logger.wants(status):
                return ok
            view = self._total_view
            if view is not None:  # the scoreboard's instance-wide count, bumped here
                total_requests = view[0] + 1  # (a rare lost update only skews a log line)
                view[0] = total_requests
            else:
                total = self.total_requests
                total_requests = total() if total is not None else worker_requests
            logger.log_request(
                env, start, (time.perf_counter_ns() - started) // 1000, status, response,
                worker_requests, total_requests, core, var_count, var_size, modifier2,
                0 if ok or counts.exceptions else 1, read_errors,
            )
        return ok


def _app_failed(counts: _Counts, response: Response, reply: bytes | None) -> bool:
    """The app raised: count it, log the traceback and, before any header went out, make
    the status 500 and send `reply` (if any) after the status line's version. False."""
    counts.exceptions += 1
    _log_traceback()
    if not response.headers_sent:
        response.status_code = 500
        if reply is not None:
            try:
                response.conn.sendall(response.version.encode("latin-1") + reply)
            except ClientDisconnected:
                pass  # the request line still says 500
    return False


def _log_traceback(headline: str | None = None) -> None:
    if headline:
        log.error(headline)
    import traceback  # the error path only: not at start-up

    text = traceback.format_exception(*sys.exc_info())
    for line in "".join(text).rstrip("\n").split("\n"):
        log.error(line, event_kind="traceback")


def _tls_connection(context: ssl.SSLContext, sock: _socket.socket, timeout: float,
                    export_cert: bool) -> Connection:
    """An HTTPS connection, handshake done. uzerg.serve.tls (and ssl, ~10 ms) is loaded here,
    not at start-up: a server with an HTTPS socket loaded it in the master (its context)."""
    from uzerg.serve.tls import tls_connection

    return tls_connection(context, sock, timeout, export_cert)
