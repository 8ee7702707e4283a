"""https / https2 values and the http-to-https answer (pure)."""

from __future__ import annotations

import pytest

from uzerg.config.service_values import parse_https, parse_https2
from uzerg.protocols.http import RequestHead
from uzerg.protocols.https_redirect import https_redirect


def test_https_values_as_uwsgi_splits_them() -> None:
    spec = parse_https("=1,/c.crt,/c.key,ECDH+AESGCM:!aNULL,!/ca.pem")
    assert (spec.address, spec.cert, spec.key, spec.ciphers, spec.client_ca,
            spec.client_cert_required) == ("=1", "/c.crt", "/c.key", "ECDH+AESGCM:!aNULL",
                                           "/ca.pem", True)
    assert str(spec) == "=1,/c.crt,/c.key,ECDH+AESGCM:!aNULL,!/ca.pem"
    assert parse_https(":443,c,k").ciphers == ""
    with pytest.raises(ValueError, match="ADDR,CERT,KEY"):
        parse_https(":443,only-cert")
    with pytest.raises(ValueError, match="needs addr, cert and key"):
        parse_https2("addr=:443,cert=c")
    with pytest.raises(ValueError, match="SPDY"):
        parse_https2("addr=:443,cert=c,key=k,spdy=1")


@pytest.mark.parametrize("headers, port, location", [
    ([("Host", "example.org:8080")], "", "https://example.org/p?q=1"),
    ([("host", "example.org")], "8443", "https://example.org:8443/p?q=1"),
    ([("Host", "[::1]:8080")], "443", "https://[::1]:443/p?q=1"),
    ([], "", "https://myhost/p?q=1"),
])
def test_redirect_to_https(headers: list[tuple[str, str]], port: str, location: str) -> None:
    head = RequestHead("GET", "/p?q=1", "HTTP/1.1", headers)
    assert https_redirect(head, "myhost", port) == \
        f"HTTP/1.1 301 Moved Permanently\r\nLocation: {location}\r\n\r\n".encode()
