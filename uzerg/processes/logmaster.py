"""The log master (uWSGI's ``log-master``): workers write their lines into a pipe, and the
master alone writes them out, to the configured loggers (uzerg.logsinks).

As uWSGI on Linux: the pipes are SOCK_SEQPACKET socket pairs, so every write() of a worker
arrives whole, as one message (at most ``log-master-bufsize`` bytes, longer ones are cut): lines
of two workers never interleave. A worker's fds 1 and 2 are the general pipe (its server lines,
the app's prints and tracebacks); with ``req-logger`` its request lines use a second pipe. The
master's own lines skip the pipe and go straight to the loggers. The pipes' read ends survive a
re-exec reload, so that the old generation's last lines are not lost.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping

from uzerg.config.model import Config
from uzerg.logs import configure_logging, set_request_fd
from uzerg.logsinks import FdSink, FileSink, LogRouter, Sink, build_router
from uzerg.processes.process import StartupError
from uzerg.processes.services import Kept, MasterService, OnReadable


class _RouterStream:
    """A text stream for structlog in the master: each line goes to the router."""

    def __init__(self, router: LogRouter) -> None:
        self.router = router

    def write(self, text: str) -> int:
        self.router.dispatch(text.encode("utf-8", "surrogateescape"))
        return len(text)

    def flush(self) -> None:
        pass


class _Pipe:
    def __init__(self, inherited: tuple[int, int] | None) -> None:
        if inherited is not None:
            self.read = socket.socket(fileno=inherited[0])
            self.write = socket.socket(fileno=inherited[1])
            for sock in (self.read, self.write):
                sock.set_inheritable(False)
        else:
            self.read, self.write = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.read.setblocking(False)

    def fds(self) -> tuple[int, int]:
        return self.read.fileno(), self.write.fileno()


class LogMaster(MasterService):
    label = "log master"

    def __init__(self, config: Config, logfile: str | None,
                 inherited: list[int] | None = None) -> None:
        self.config = config
        self.bufsize = config.log_master_bufsize
        self.logfile = logfile
        # the original target (terminal, logto/daemonize file) is the stdio logger: fd 2 now
        fallback: Sink
        try:
            if logfile:
                fallback = FileSink(logfile, config.log_maxsize, config.log_backupname)
            else:
                fallback = FdSink(os.dup(2), owned=True)
            self.router = build_router(config.logger, config.log_route, config.log_encoder,
                                       fallback, fallback.fd)  # type: ignore[attr-defined]
            self.req_router: LogRouter | None = None
            if config.req_logger:
                self.req_router = build_router(config.req_logger, config.log_req_route,
                                               config.log_req_encoder, fallback,
                                               fallback.fd)  # type: ignore[attr-defined]
        except (OSError, ValueError) as exc:
            raise StartupError(f"unable to open logger: {exc}") from None
        self.fallback = fallback
        old = inherited or []
        self.pipe = _Pipe((old[0], old[1]) if len(old) >= 2 else None)
        self.req_pipe = (_Pipe((old[2], old[3]) if len(old) >= 4 else None)
                         if self.req_router else None)
        configure_logging(json=config.log_json, stream=_RouterStream(self.router),  # type: ignore[arg-type]
                          date_format=config.log_date)

    # -- the master's side ----------------------------------------------------------------------

    def watches(self) -> Mapping[int, OnReadable]:
        watched: dict[int, OnReadable] = {self.pipe.read.fileno(): self.drain}
        if self.req_pipe is not None:
            watched[self.req_pipe.read.fileno()] = self.drain_requests
        return watched

    def drain(self) -> None:
        self._drain(self.pipe, self.router)

    def drain_requests(self) -> None:
        if self.req_pipe is not None and self.req_router is not None:
            self._drain(self.req_pipe, self.req_router)

    def _drain(self, pipe: _Pipe, router: LogRouter) -> None:
        while True:
            try:
                message = pipe.read.recv(self.bufsize)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not message:
                return
            for line in message.splitlines(keepends=True):
                router.dispatch(line)

    def reopen_logs(self) -> None:
        """Fifo ``l``/SIGHUP with log-reopen: reopen every file logger by its name."""
        self.router.reopen()
        if self.req_router is not None:
            self.req_router.reopen()
        self._point_stdio_at_file()

    def tick(self) -> None:
        self._point_stdio_at_file()

    def _point_stdio_at_file(self) -> None:
        # a rotation reopened the stdio file: the master's own fds 1/2 follow it
        if isinstance(self.fallback, FileSink):
            fd = self.fallback.fd
            for target in (1, 2):
                if os.fstat(target).st_ino != os.fstat(fd).st_ino:
                    os.dup2(fd, target)

    def handover(self) -> Kept:
        fds = [*self.pipe.fds(), *(self.req_pipe.fds() if self.req_pipe else ())]
        return Kept(tuple(fds), {"log_pipes": fds})

    def shutdown(self, vacuum: bool) -> None:
        self.drain()
        self.drain_requests()
        configure_logging(json=self.config.log_json, stream=sys.stderr,
                          date_format=self.config.log_date)
        self.router.close()
        if self.req_router is not None:
            self.req_router.close()
        self.fallback.close()

    # -- a fresh worker ------------------------------------------------------------------------

    def close_in_worker(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        write_fd = self.pipe.write.fileno()
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        self.pipe.read.close()
        if self.req_pipe is not None:
            self.req_pipe.read.close()
            set_request_fd(self.req_pipe.write.fileno())
        for router in (self.router, self.req_router):
            if router is not None:
                router.close()  # the master's files and sockets: a worker writes to the pipe
        self.fallback.close()
        configure_logging(json=self.config.log_json, stream=sys.stderr,
                          date_format=self.config.log_date)
