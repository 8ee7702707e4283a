"""What the master loads before the fork for the features configured (start-up time, issue
13): the workers then import nothing before their first answer (an import after the fork costs
every worker), and a zerg serving the uwsgi protocol never loads the HTTP side.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from uzerg.config.model import Config
    from uzerg.sockets import Listener


def serves_files(config: Config) -> bool:
    """Whether the workers serve files (static-map and its family): only then is
    uzerg.serve.static loaded (in the master, load_file_support; start-up time, issue 13)."""
    return bool(config.static_map or config.static_map2 or config.check_static
                or config.check_static_docroot)


def speaks_http(listeners: Iterable[Listener]) -> bool:
    """Whether a connection of `listeners` may speak HTTP (http, http11, https, http-to-https;
    a zerg's received sockets by their final protocol, the server's hint or --protocol: see
    sockets.build_listeners): only then is the HTTP side (uzerg.serve.http_requests and the
    HTTP parsers) loaded, and the workers' handler built with it (start-up time, issue 13)."""
    return any(item.protocol != "uwsgi" for item in listeners)


def load_http_support(listeners: Iterable[Listener]) -> None:
    """In the master, before the fork, when `listeners` speak HTTP: the HTTP side, imported
    once for every worker (an import after the fork costs each worker, before its first
    answer)."""
    if speaks_http(listeners):
        import uzerg.serve.http_requests  # noqa: F401
