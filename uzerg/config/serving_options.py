"""The option records of the response headers and the static-file family (uWSGI's
``add-header``, ``del-header``, ``static-gzip*``, ``static-expires*``, ``static-index``, ...),
spliced into the option table (``uzerg.config.options``) after ``static-map``."""

from __future__ import annotations

from uzerg.config.option import LazyParser, Option
from uzerg.config.values import pair_parser

V = "serving"
# parsed by uzerg.config.serving_values, imported when one of these options is first set
# (issue 13)
parse_add_header = LazyParser("serving_values", "parse_add_header")
parse_expires_regexp = LazyParser("serving_values", "parse_expires_regexp")
parse_expires_type = LazyParser("serving_values", "parse_expires_type")
parse_header_name = LazyParser("serving_values", "parse_header_name")
parse_regexp = LazyParser("serving_values", "parse_regexp")


def _expires(suffix: str, what: str) -> tuple[Option, Option]:
    """static-expires{suffix} and its -mtime twin: REGEXP SECONDS on `what`."""
    return (
        Option(f"static-expires{suffix}", "list", f"static files whose {what} matches REGEXP "
               "get Expires: now + SECONDS", V, metavar="REGEXP SECONDS",
               parse=parse_expires_regexp),
        Option(f"static-expires{suffix}-mtime", "list", f"static files whose {what} matches "
               "REGEXP get Expires: their mtime + SECONDS", V, metavar="REGEXP SECONDS",
               parse=parse_expires_regexp),
    )


SERVING_OPTIONS: tuple[Option, ...] = (
    Option("add-header", "list", "add this header to every response (app, static file, "
           "error); `Connection: close` also closes keep-alive connections", V,
           metavar="NAME: VALUE", parse=parse_add_header),
    Option("del-header", "list", "remove this header (any case) from the responses of the app "
           "and of static files", V, aliases=("rem-header",), metavar="NAME",
           parse=parse_header_name),
    Option("static-map2", "list", "like static-map, but DIR + the whole PATH_INFO (the URL "
           "prefix included) is served", V, metavar="/URL=/DIR", parse=pair_parser("/URL=/DIR")),
    Option("check-static-docroot", "flag", "serve the file DOCUMENT_ROOT + PATH_INFO when it "
           "exists (DOCUMENT_ROOT: the request's variable, e.g. from nginx)", V),
    Option("static-index", "list", "a directory is served as this file in it when it exists "
           "(e.g. index.html; repeatable, tried in order)", V, metavar="NAME"),
    Option("static-skip-ext", "list", "never serve files whose name ends so (the app "
           "answers)", V, metavar="SUFFIX"),
    Option("static-safe", "list", "files under this path may be served even when a mapped "
           "directory's symlink leads there", V, metavar="DIR"),
    Option("mimefile", "list", "read content types from this mime.types file (before "
           "Python's table)", V, aliases=("mime-file",), metavar="FILE"),
    Option("static-gzip-all", "flag", "serve FILE.gz (FILE.br) instead of FILE to clients "
           "that accept gzip (br) when it exists, for every static file", V),
    Option("static-gzip-dir", "list", "as static-gzip-all, for files whose path starts with "
           "this (a relative one: from the working directory)", V,
           aliases=("static-gzip-prefix",), metavar="DIR"),
    Option("static-gzip-ext", "list", "as static-gzip-all, for files whose name ends so", V,
           aliases=("static-gzip-suffix",), metavar="SUFFIX"),
    Option("static-gzip", "list", "as static-gzip-all, for files whose path matches this "
           "regular expression", V, metavar="REGEXP", parse=parse_regexp),
    Option("static-expires-type", "list", "static files of this content type get Expires: "
           "now + SECONDS", V, metavar="TYPE=SECONDS", parse=parse_expires_type),
    Option("static-expires-type-mtime", "list", "static files of this content type get "
           "Expires: their mtime + SECONDS", V, metavar="TYPE=SECONDS",
           parse=parse_expires_type),
    *_expires("", "file path"),
    *_expires("-uri", "REQUEST_URI"),
    *_expires("-path-info", "PATH_INFO"),
)
