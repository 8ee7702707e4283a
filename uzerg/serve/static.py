"""Static files: `--static-map /url=/dir` (or `/url=/file`), `static-map2`, `check-static`,
`check-static-docroot`: which file a request names, if any, and serving it.

As uWSGI 2.0.31: a mapped URL whose file does not exist falls through to the application; a
path that resolves (symlinks and `..`/`%2e%2e` included) outside the mapped directory (and
outside every `static-safe` path) is never served: uWSGI's `[uwsgi-fileserve] security error`
line is logged and the request falls through to the application, as the real binary does.
What the other static options decide (types, gzip twins, Expires) is in static_rules.py.
"""

from __future__ import annotations

import os
import stat

from uzerg.config.model import Config
from uzerg.logs import get_logger
from uzerg.serve.headers import ResponseHeaders
from uzerg.serve.preload import serves_files
from uzerg.serve.response import Response, ResponseError, header_block
from uzerg.serve.static_rules import StaticFile, StaticRules

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["StaticFile", "StaticMap", "load_file_support", "serve_static", "serves_files"]

log = get_logger()

# O_NONBLOCK: opening a FIFO must not wait for a writer (only regular files are sent)
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK


def load_file_support() -> None:
    """Import what serving files needs (email.utils, mimetypes and its tables: ~5 ms) before
    privileges are dropped; a server without static files never loads them."""
    import email.utils  # noqa: F401
    import mimetypes

    mimetypes.init()


class StaticMap:
    """The static entries, longest URL prefix first, then DOCUMENT_ROOT (check-static-docroot).
    Each entry: (URL prefix, real root, whether the prefix stays in the path (static-map2))."""

    def __init__(self, entries: tuple[str, ...] | list[str], appended: tuple[str, ...] = (), *,
                 rules: StaticRules | None = None, headers: ResponseHeaders | None = None,
                 docroot: bool = False) -> None:
        self.entries: list[tuple[str, str, bool]] = []
        for entry, keep in [(e, False) for e in entries] + [(e, True) for e in appended]:
            url, sep, target = entry.partition("=")
            if not sep or not url or not target:
                raise ValueError(f"invalid static-map syntax: {entry} (expected /url=/path)")
            self.entries.append((url.rstrip("/") or "/", os.path.realpath(target), keep))
        self.entries.sort(key=lambda item: len(item[0]), reverse=True)
        self.docroot = docroot
        self.rules = rules
        self.headers = headers
        self._types: dict[str, str] = {}  # file name -> content type (see _content_type)
        # the real path of an open file descriptor, resolved by the kernel (Linux)
        self._fd_paths = os.path.isdir("/proc/self/fd")
        # open_fast()'s view of the entries: (prefix, prefix + "/", root + "/" as bytes and
        # as text, whether the prefix stays in the path)
        self._fast = [(prefix, prefix + "/", os.fsencode(root.rstrip("/") + "/"),
                       root.rstrip("/") + "/", keep) for prefix, root, keep in self.entries]
        # PATH_INFO -> the name open_fast() opens and its root (see _target); descriptor ->
        # its /proc/self/fd path
        self._targets: dict[str, tuple[bytes, str]] = {}
        self._fd_links: dict[int, str] = {}
        # (real path, size, mtime) -> the file and its encoded 200 headers (see _file)
        self._files: dict[tuple[str, int, float], tuple[StaticFile, Any]] = {}
        # no static-skip-ext, gzip twin or Expires rule: the file alone decides its response
        self.plain = rules is None or not (rules.skip_ext or rules.gzip or rules.expires)
        self._skip_ext = rules.skip_ext if rules is not None else ()

    @classmethod
    def from_config(cls, config: Config, headers: ResponseHeaders | None) -> StaticMap | None:
        """None when no file is served (the request path then skips static files with one
        test: a map is never empty, and has no __bool__ to call per request); check-static
        DIR is `/=DIR` after the static-map entries."""
        if not serves_files(config):
            return None
        return cls((*config.static_map, *(f"/={d}" for d in config.check_static)),
                   config.static_map2, rules=StaticRules(config), headers=headers,
                   docroot=config.check_static_docroot)

    def lookup(self, path_info: str, document_root: str | None = None) -> StaticFile | None:
        """The file for a PATH_INFO (decoded, latin-1 as in the environ), or None (the
        application answers). As uWSGI, PATH_INFO is what is matched, not REQUEST_URI: behind
        nginx that is `$document_uri`, after its rewrites and `..` normalisation."""
        entries = self.entries
        if self.docroot and document_root:
            entries = [*entries, ("/", os.path.realpath(document_root), False)]
        for prefix, root, keep in entries:
            if prefix == "/":
                rest = path_info
            elif path_info == prefix or path_info.startswith(prefix + "/"):
                rest = path_info if keep else path_info[len(prefix) :]
            else:
                continue
            if os.path.isfile(root):
                if rest not in ("", "/"):
                    continue
                candidate = root
            else:
                try:  # the environ's latin-1 text back to the bytes sent, then a file name
                    relative = os.fsdecode(rest.encode("latin-1")).lstrip("/")
                except UnicodeEncodeError:
                    return None
                if "\0" in relative:
                    return None
                candidate = os.path.realpath(os.path.join(root, relative))
                if not self._within(candidate, root):
                    log.error(
                        f"[uwsgi-fileserve] security error: {candidate} is not under {root} "
                        "or a safe path", event_kind="static_forbidden",
                    )
                    return None
            found = self._stat(candidate, root)
            if found is not None:
                return found
        return None

    def _within(self, candidate: str, root: str) -> bool:
        return (candidate == root or candidate.startswith(root.rstrip("/") + "/")
                or (self.rules is not None and self.rules.is_safe(candidate)))

    def _stat(self, candidate: str, root: str) -> StaticFile | None:
        """The regular file `candidate`, or a static-index file in the directory it names."""
        try:
            st = os.stat(candidate)
        except (OSError, ValueError):
            return None  # missing: the next mapping, then the application
        rules = self.rules
        if stat.S_ISDIR(st.st_mode) and rules is not None:
            for name in rules.index:
                index = os.path.realpath(os.path.join(candidate, name))
                if os.path.isfile(index) and self._within(index, root):
                    candidate, st = index, os.stat(index)
                    break
        if not stat.S_ISREG(st.st_mode):
            return None
        return StaticFile(candidate, st.st_size, st.st_mtime, self._content_type(candidate))

    def _content_type(self, path: str) -> str:
        """The type of a file, remembered per file name (the tables do not change once loaded;
        the type depends on the name's suffixes only)."""
        name = path.rpartition("/")[2]
        types = self._types
        found = types.get(name)
        if found is None:
            rules = self.rules
            if rules is not None:
                found = rules.content_type(path)
            else:
                import mimetypes  # see load_file_support()

                found = mimetypes.guess_type(path)[0] or "application/octet-stream"
            if len(types) >= 4096:
                types.clear()
            types[name] = found
        return found

    def open_fast(self, path_info: str) -> tuple[StaticFile, Any, int] | None:
        """The common case of lookup(), in fewer system calls: the first mapping whose prefix
        matches is a directory and holds a regular file under it. The file is opened first and
        its real path read back from /proc/self/fd (what os.path.realpath finds with an lstat
        per path component). None whenever anything else may apply (no match, a directory, a
        symlink out of the root, an error...): lookup() then decides, as it always did.
        Else the file, its encoded 200 headers (see _file) and the open descriptor."""
        target = self._targets.get(path_info)
        if target is None:
            target = self._target(path_info)
            if target is None:
                return None
        name, root_dir = target
        try:
            fd = os.open(name, _OPEN_FLAGS)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                link = self._fd_links.get(fd)
                if link is None:
                    link = self._fd_link(fd)
                real = os.readlink(link)
                # (a file unlinked meanwhile reads back as "PATH (deleted)": lookup() decides)
                if real.startswith(root_dir) and not real.endswith(" (deleted)"):
                    size = st.st_size
                    entry = self._files.get((real, size, st.st_mtime))  # _file(), inlined
                    if entry is None:
                        entry = self._file(real, size, st.st_mtime)
                    return entry[0], entry[1], fd
        except OSError:
            pass
        os.close(fd)
        return None

    def _target(self, path_info: str) -> tuple[bytes, str] | None:
        """open_fast()'s file name for a PATH_INFO (under the first mapping whose prefix
        matches) and that mapping's root + "/", remembered (the first time a path comes, per
        path); None when lookup() must decide."""
        if not self._fd_paths:
            return None
        for prefix, prefix_dir, root_bytes, root_dir, keep in self._fast:
            if prefix == "/":
                rest = path_info
            elif path_info == prefix or path_info.startswith(prefix_dir):
                rest = path_info if keep else path_info[len(prefix) :]
            else:
                continue
            relative = rest.lstrip("/")
            # ".." could open a file outside the root (a device, a FIFO) before the check
            # in open_fast() rejects it: such paths, and any name holding "..", take lookup()'s
            if not relative or "\0" in relative or ".." in relative:
                return None
            try:  # the environ's latin-1 text back to the bytes sent: the file's name
                target = (root_bytes + relative.encode("latin-1"), root_dir)
            except UnicodeEncodeError:
                return None
            targets = self._targets
            if len(targets) >= 4096:
                targets.clear()
            targets[path_info] = target
            return target
        return None

    def _fd_link(self, fd: int) -> str:
        """/proc/self/fd/N, remembered (a worker reuses the same few descriptor numbers)."""
        links = self._fd_links
        if len(links) >= 1024:
            links.clear()
        link = links[fd] = f"/proc/self/fd/{fd}"
        return link

    def _file(self, path: str, size: int, mtime: float) -> tuple[StaticFile, Any]:
        """The StaticFile of a file and its headers for a 200 (type, length, Last-Modified,
        then add-header/del-header's), encoded (response.header_block(); None when they do
        not declare `size` as the length, or do not encode: then _send_found() makes them),
        remembered per (path, size, mtime): all they are made of."""
        key = (path, size, mtime)
        files = self._files
        entry = files.get(key)
        if entry is None:
            found = StaticFile(path, size, mtime, self._content_type(path))
            head = [("Content-Type", found.content_type), ("Content-Length", str(size)),
                    ("Last-Modified", found.last_modified)]
            headers = self.headers
            try:
                block = header_block(head if headers is None else headers.apply(head))
            except ResponseError:  # an add-header start_response() rejects
                block = None
            if block is not None and block[2] != size:
                block = None
            entry = (found, block)
            if len(files) >= 4096:
                files.clear()
            files[key] = entry
        return entry

    def find_open(self, env: dict[str, Any]) -> tuple[StaticFile | None, Any, int]:
        """The file to send for a request (its gzip twin, when that applies) or None; its
        encoded headers for a 200 when nothing but the file decides them (else None:
        _send_found makes them); the file already open when open_fast() found it (else -1):
        the caller closes it."""
        path_info = env.get("PATH_INFO") or ""
        skip_ext = self._skip_ext
        if skip_ext and path_info.endswith(skip_ext):  # rules.skipped(), inlined
            return None, None, -1
        fast = self.open_fast(path_info)
        if fast is None:
            found = self.lookup(path_info, env.get("DOCUMENT_ROOT"))
            head = None
            fd = -1
        else:
            found, head, fd = fast
            if self.plain:
                return found, head, fd
        rules = self.rules
        if found is None or rules is None:
            return found, None, fd
        if rules.skipped(found.path):
            if fd >= 0:
                os.close(fd)
            return None, None, -1
        sent = rules.variant(found, env.get("HTTP_ACCEPT_ENCODING"),
                             lambda path: self._within_any(path, found.path))
        if sent.path != found.path and fd >= 0:
            os.close(fd)  # its twin goes out instead
            fd = -1
        return sent, None, fd

    def _within_any(self, twin: str, original: str) -> bool:
        """A twin may be served when it is where its file is, or under a safe path."""
        return (os.path.dirname(twin) == os.path.dirname(original)
                or (self.rules is not None and self.rules.is_safe(twin)))

    def file_headers(self, env: dict[str, Any], found: StaticFile) -> list[tuple[str, str]]:
        """The headers besides the type/length/date ones (Content-Encoding, Vary, Expires)."""
        extra = []
        if found.encoding:
            extra.append(("Content-Encoding", found.encoding))
        if found.vary:
            extra.append(("Vary", "Accept-Encoding"))
        rules = self.rules
        if rules is not None and rules.expires:
            expires = rules.expires_header(env, found)
            if expires is not None:
                extra.append(("Expires", expires))
        return extra


def serve_static(static: StaticMap, env: dict[str, Any], response: Response) -> bool:
    """Answer a GET/HEAD for a mapped file; False when the application should answer."""
    if env.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        return False
    if static.plain:  # find_open()'s way when only the file decides, without its call
        path_info = env.get("PATH_INFO") or ""
        fast = static.open_fast(path_info)
        if fast is None:
            found = static.lookup(path_info, env.get("DOCUMENT_ROOT"))
            if found is None:
                return False
            head = None
            fd = -1
        else:
            found, head, fd = fast
    else:
        found, head, fd = static.find_open(env)
        if found is None:
            return False
    try:
        if head is None or env.get("HTTP_IF_MODIFIED_SINCE"):
            return _send_found(static, env, response, found, fd)
        # the common case: the file open, no rule adds a header, not a conditional request
        response.send_whole_file(head, fd, found.size)
        return True
    finally:
        if fd >= 0:
            os.close(fd)


def _send_found(static: StaticMap, env: dict[str, Any], response: Response, found: StaticFile,
                fd: int) -> bool:
    extra = static.file_headers(env, found)
    headers = static.headers
    if found.not_modified_since(env.get("HTTP_IF_MODIFIED_SINCE")):
        head = [("Last-Modified", found.last_modified), *extra]
        response.start_response("304 Not Modified", headers.apply(head) if headers else head)
        response.finish_body()
        return True
    if fd >= 0:
        size = found.size  # the fstat() of this very descriptor
    else:
        try:
            fd = os.open(found.path, _OPEN_FLAGS)
        except OSError:
            return False  # vanished or unreadable since the lookup: let the application answer
        try:
            size = os.fstat(fd).st_size
        except OSError:
            os.close(fd)
            return False
        try:
            return _send_file(static, response, found, fd, size, extra)
        finally:
            os.close(fd)
    return _send_file(static, response, found, fd, size, extra)


def _send_file(static: StaticMap, response: Response, found: StaticFile, fd: int, size: int,
               extra: list[tuple[str, str]]) -> bool:
    head = [
        ("Content-Type", found.content_type),
        ("Content-Length", str(found.size)),
        ("Last-Modified", found.last_modified),
        *extra,
    ]
    headers = static.headers
    response.start_response("200 OK", headers.apply(head) if headers else head)
    response.send_file(fd, 0, size)
    response.finish_body()
    return True
