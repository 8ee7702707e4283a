"""`--static-map /url=/dir` (or `/url=/file`): which file a request names, if any.

As uWSGI 2.0.31: a mapped URL whose file does not exist falls through to the application; a
path that resolves (symlinks and `..`/`%2e%2e` included) outside the mapped directory is never
served: uWSGI's `[uwsgi-fileserve] security error` line is logged and the request falls through
to the application, as the real binary does. Serving itself (headers, sendfile) is done by the
request handler.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

from uzerg.logs import get_logger
from uzerg.serve.response import Response
from uzerg.serve.wsgi_io import FileWrapper

log = get_logger()

@dataclass(frozen=True, slots=True)
class StaticFile:
    path: str
    size: int
    mtime: float
    content_type: str

    @property
    def last_modified(self) -> str:
        from email.utils import formatdate  # see load_file_support()

        return formatdate(self.mtime, usegmt=True)

    def not_modified_since(self, header: str | None) -> bool:
        if not header:
            return False
        try:
            from email.utils import parsedate_to_datetime

            since = parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
        return int(self.mtime) <= since


def load_file_support() -> None:
    """Import what serving files needs (email.utils, mimetypes and its tables: ~5 ms) before
    privileges are dropped; a server without static-map never loads them."""
    import email.utils  # noqa: F401
    import mimetypes

    mimetypes.init()


class StaticMap:
    """The static-map entries, longest URL prefix first."""

    def __init__(self, entries: tuple[str, ...] | list[str]) -> None:
        self.entries: list[tuple[str, str]] = []
        for entry in entries:
            url, sep, target = entry.partition("=")
            if not sep or not url or not target:
                raise ValueError(f"invalid static-map syntax: {entry} (expected /url=/path)")
            self.entries.append((url.rstrip("/") or "/", os.path.realpath(target)))
        self.entries.sort(key=lambda item: len(item[0]), reverse=True)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def lookup(self, path_info: str) -> StaticFile | None:
        """The file for a PATH_INFO (decoded, latin-1 as in the environ), or None (the
        application answers). As uWSGI, PATH_INFO is what is matched, not REQUEST_URI: behind
        nginx that is `$document_uri`, after its rewrites and `..` normalisation."""
        for prefix, root in self.entries:
            if prefix == "/":
                rest = path_info
            elif path_info == prefix or path_info.startswith(prefix + "/"):
                rest = path_info[len(prefix) :]
            else:
                continue
            if os.path.isfile(root):
                candidate = root if rest in ("", "/") else None
                if candidate is None:
                    continue
            else:
                try:  # the environ's latin-1 text back to the bytes sent, then a file name
                    relative = os.fsdecode(rest.encode("latin-1")).lstrip("/")
                except UnicodeEncodeError:
                    return None
                if "\0" in relative:
                    return None
                candidate = os.path.realpath(os.path.join(root, relative))
                if candidate != root and not candidate.startswith(root.rstrip("/") + "/"):
                    log.error(
                        f"[uwsgi-fileserve] security error: {candidate} is not under {root} "
                        "or a safe path", event_kind="static_forbidden",
                    )
                    return None
            try:
                st = os.stat(candidate)
            except (OSError, ValueError):
                continue  # missing: the next mapping, then the application
            if not stat.S_ISREG(st.st_mode):
                continue
            import mimetypes  # see load_file_support()

            ctype = mimetypes.guess_type(candidate)[0] or "application/octet-stream"
            return StaticFile(candidate, st.st_size, st.st_mtime, ctype)
        return None


def serve_static(static: StaticMap, env: dict[str, Any], response: Response) -> bool:
    """Answer a GET/HEAD for a mapped file; False when the application should answer."""
    if env.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        return False
    found = static.lookup(env.get("PATH_INFO") or "")
    if found is None:
        return False
    if found.not_modified_since(env.get("HTTP_IF_MODIFIED_SINCE")):
        response.start_response("304 Not Modified", [("Last-Modified", found.last_modified)])
        response.finish_body()
        return True
    try:
        f = open(found.path, "rb")
    except OSError:
        return False  # vanished or unreadable since the lookup: let the application answer
    with f:
        response.start_response("200 OK", [
            ("Content-Type", found.content_type),
            ("Content-Length", str(found.size)),
            ("Last-Modified", found.last_modified),
        ])
        response.send_iterable(FileWrapper(f))
    return True
