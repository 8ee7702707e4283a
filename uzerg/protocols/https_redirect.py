"""http-to-https: the 301 a plain-HTTP socket answers with (sans-I/O, without ``ssl``: the
workers serving such a socket need not load it)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def https_redirect(head: Any, hostname: str, port: str) -> bytes:
    """http-to-https: uWSGI's answer, a 301 to the same host (``:port`` if given) and URI over
    https, with no body."""
    host = next((value for name, value in head.headers if name.lower() == "host"), hostname)
    if host.startswith("[") and "]" in host:
        host = host[:host.index("]") + 1]
    else:
        host = host.partition(":")[0]
    location = f"https://{host}{':' + port if port else ''}{head.target}"
    return f"HTTP/1.1 301 Moved Permanently\r\nLocation: {location}\r\n\r\n".encode("latin-1")
