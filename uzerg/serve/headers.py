"""`add-header` / `del-header`: headers every response gets, headers no response keeps.

As uWSGI (core/writer.c): a `del-header` name (any case) drops the headers of that name the
application and the static-file server set; the `add-header` lines are appended after them
and are never dropped. They go on every response a worker produces: the application's, static
files' (200 and 304) and uzerg's own 500/4xx replies, over HTTP and the uwsgi protocol.

Unlike uWSGI's http11 sockets ("Connection: close is not honoured"), a response that says
`Connection: close` ends its connection: a keep-alive client is told so, the server must keep
its word.

Built only when one of the options is set: without them the request path is untouched (the
application is called directly, not through `wrap()`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: start-up time (issue 13)
    from typing import Any

    WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


class ResponseHeaders:
    def __init__(self, added: Iterable[tuple[str, str]], removed: Iterable[str]) -> None:
        self.added = list(added)
        self.removed = frozenset(name.lower() for name in removed)
        # for uzerg's own replies, which say `Connection: close` already
        self.error_lines = b"".join(
            f"{name}: {value}\r\n".encode("latin-1") for name, value in self.added
            if name.lower() != "connection"
        )

    @classmethod
    def from_config(cls, added: Iterable[tuple[str, str]],
                    removed: Iterable[str]) -> ResponseHeaders | None:
        """The rules, or None when neither option is set (then nothing changes)."""
        added, removed = list(added), list(removed)
        return cls(added, removed) if added or removed else None

    def apply(self, headers: Any) -> Any:
        """The header list a response goes out with. Anything that is not a list of
        (name, value) is passed through as is: the response writer rejects it as usual."""
        if type(headers) is not list:
            return headers
        removed = self.removed
        if removed:
            headers = [item for item in headers
                       if not (type(item) is tuple and len(item) == 2 and type(item[0]) is str
                               and item[0].lower() in removed)]
        else:
            headers = list(headers)  # never the application's own list
        headers.extend(self.added)
        return headers

    def wrap(self, app: WsgiApp) -> WsgiApp:
        """`app` with its start_response() headers passed through apply()."""
        apply = self.apply

        def with_headers(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            def start(status: Any, headers: Any, exc_info: Any = None) -> Any:
                return start_response(status, apply(headers), exc_info)

            return app(environ, start)

        return with_headers
