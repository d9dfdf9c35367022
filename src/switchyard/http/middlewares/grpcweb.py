"""`grpcWeb`: gRPC-Web requests from browsers become gRPC requests to the backend, and back.

What Traefik does (it wraps the handler with improbable-eng's grpc-web and rs/cors):

* A ``POST`` whose Content-Type starts with ``application/grpc-web`` is a gRPC-Web call: the
  type becomes ``application/grpc`` (``+proto`` and the like stay), Content-Length goes, and
  for ``application/grpc-web-text`` the body is base64-decoded on the way. The answer keeps its
  status and fields (names in Go's spelling), its Content-Type goes back to the web form, and
  ``Access-Control-Expose-Headers`` lists every field name of the answer plus ``grpc-status,
  grpc-message``. The gRPC trailers follow the messages in the body as one frame (flag 0x80, a
  length, ``name: value`` lines in lower case, sorted), base64 in the text form, each write
  its own padded part. Trailer names already sent as header fields are left out of that frame.
* CORS as rs/cors does it with ``allowOrigins`` deciding (``*`` allows any): every call gets
  ``Vary: Origin``; an allowed ``Origin`` gets ``Access-Control-Allow-Origin`` (that origin)
  and ``Access-Control-Allow-Credentials: true``. An ``OPTIONS`` asking for ``x-grpc-web`` with
  ``Access-Control-Request-Method`` is a preflight answered here: 200, three Vary fields, and
  for an allowed origin and method (GET, POST, HEAD) the origin, credentials, that method, the
  requested header names and a ten-minute Max-Age.
* Anything else passes through untouched (plain gRPC on the same router works too).

Unlike Traefik, the gRPC request carries ``TE: trailers`` (browsers cannot send it, and gRPC
servers such as grpcio's refuse a call without it, which through Traefik is a 500).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from switchyard.config.dynamic import StrList, TraefikModel
from switchyard.http.message import Headers, RequestHead, ResponseHead, canonical_name
from switchyard.http.middlewares.base import MiddlewareContext, Wrap, parse_options
from switchyard.http.middlewares.subexchange import SubExchange

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange
    from switchyard.http.handler import BodyConsumer, Handler, ResponseWriter

__all__ = ["GrpcWeb", "build"]

_GRPC = b"application/grpc"
_WEB = b"application/grpc-web"
_TEXT = b"application/grpc-web-text"
# rs/cors' default allowed methods; a preflight for another one gets no Access-Control-Allow-*.
_CORS_METHODS = frozenset({b"GET", b"POST", b"HEAD"})
_PREFLIGHT_VARY = (b"Origin", b"Access-Control-Request-Method", b"Access-Control-Request-Headers")
_EXPOSED_ALWAYS = (b"grpc-status", b"grpc-message")


class GrpcWebOptions(TraefikModel):
    allow_origins: StrList = []  # noqa: RUF012  (a pydantic field, copied per instance)


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    parsed = parse_options(GrpcWebOptions, options)
    origins = frozenset(origin.encode("latin-1") for origin in parsed.allow_origins)
    return lambda next_handler: GrpcWeb(next_handler, origins)


class GrpcWeb:
    """Handler: translates gRPC-Web calls and answers their CORS preflights."""

    __slots__ = ("_any_origin", "_origins", "next")

    def __init__(self, next_handler: Handler, origins: frozenset[bytes]) -> None:
        self.next = next_handler
        self._origins = origins
        self._any_origin = b"*" in origins

    def handle(self, exchange: Exchange) -> None:
        request = exchange.request
        headers = request.headers
        if request.method == b"POST":
            content_type = headers.get(b"content-type") or b""
            if content_type.startswith(_WEB):
                self._call(exchange, content_type)
                return
        elif request.method == b"OPTIONS":
            asked = headers.get(b"access-control-request-headers")
            if asked is not None and b"x-grpc-web" in asked.lower():
                if headers.get(b"access-control-request-method"):
                    self._preflight(exchange, asked)
                else:  # not a preflight to rs/cors, so translated like a call
                    self._call(exchange, headers.get(b"content-type") or b"")
                return
        self.next.handle(exchange)

    def _allowed(self, origin: bytes | None) -> bool:
        return bool(origin) and (self._any_origin or origin in self._origins)

    def _preflight(self, exchange: Exchange, asked: bytes) -> None:
        headers = exchange.request.headers
        origin = headers.get(b"origin")
        method = (headers.get(b"access-control-request-method") or b"").upper()
        fields = Headers()
        if self._allowed(origin) and method in _CORS_METHODS:
            assert origin is not None
            names = [canonical_name(name.strip()) for name in asked.split(b",") if name.strip()]
            fields.append((b"Access-Control-Allow-Credentials", b"true"))
            if names:
                fields.append((b"Access-Control-Allow-Headers", b", ".join(names)))
            fields += ((b"Access-Control-Allow-Methods", method),
                       (b"Access-Control-Allow-Origin", origin),
                       (b"Access-Control-Max-Age", b"600"))
        fields += ((b"Vary", value) for value in _PREFLIGHT_VARY)
        exchange.respond(200, fields)

    def _call(self, exchange: Exchange, content_type: bytes) -> None:
        request = exchange.request
        text = content_type.startswith(_TEXT)
        headers = request.headers
        headers.set(b"content-type", content_type.replace(_TEXT if text else _WEB, _GRPC, 1),
                    b"Content-Type")
        headers.remove(b"content-length")  # the gRPC body is framed by HTTP/2, not by length
        if not headers.has_token(b"te", b"trailers"):
            headers.append((b"TE", b"trailers"))
        origin = headers.get(b"origin")
        cors = [(b"Vary", b"Origin")]
        if origin is not None and self._allowed(origin):
            cors += ((b"Access-Control-Allow-Origin", origin),
                     (b"Access-Control-Allow-Credentials", b"true"))
        target: Exchange = exchange
        if text and exchange.has_body:
            # The decoded body is what the backend gets: the request goes on as an exchange of
            # its own whose body is the client's, base64-decoded as it arrives.
            target = SubExchange(exchange, RequestHead(request.method, request.target,
                                                       request.version, headers),
                                 _Base64Body(exchange))
            target.body_chunked = True
            target.forward_client = exchange.forward_client
        elif exchange.has_body:
            exchange.body_chunked = True
        target.writer = _GrpcWebWriter(exchange.writer, target, cors,
                                       _TEXT if text else _WEB, text=text)
        self.next.handle(target)
        if isinstance(target, SubExchange):
            target.report_to_outer()


class _GrpcWebWriter:
    """ResponseWriter: the gRPC answer as gRPC-Web (see the module docstring)."""

    __slots__ = ("_cors", "_exchange", "_inner", "_sent_names", "_text", "_web_type")

    def __init__(self, inner: ResponseWriter, exchange: Exchange,
                 cors: list[tuple[bytes, bytes]], web_type: bytes, *, text: bool) -> None:
        self._inner = inner
        self._exchange = exchange  # where the reverse proxy leaves the trailers
        self._cors = cors
        self._web_type = web_type
        self._text = text
        self._sent_names: set[bytes] = set()

    def start(self, head: ResponseHead) -> None:
        fields = Headers()
        names: list[bytes] = []
        for name, value in head.headers:
            lower = name.lower()
            if lower == b"trailer" or lower == b"content-length":
                continue  # the body grows by the trailer frame
            if lower == b"content-type":
                value = value.replace(_GRPC, self._web_type, 1)
            fields.append((canonical_name(name), value))
        fields += self._cors
        for name, _ in fields:
            if name.lower() not in self._sent_names:
                self._sent_names.add(name.lower())
                names.append(name)
        fields.append((b"Access-Control-Expose-Headers", b", ".join((*names, *_EXPOSED_ALWAYS))))
        self._inner.start(ResponseHead(head.status, fields))

    def write(self, chunk: bytes) -> None:
        if chunk:
            self._inner.write(base64.b64encode(chunk) if self._text else chunk)

    def end(self) -> None:
        exchange = self._exchange
        trailers, exchange.response_trailers = exchange.response_trailers, None
        lines = sorted(((name.lower(), value) for name, value in trailers or ()
                        if name.lower() not in self._sent_names and name.lower() != b"trailer"),
                       key=lambda pair: pair[0])
        block = b"".join(b"%b: %b\r\n" % pair for pair in lines)
        self.write(b"\x80" + len(block).to_bytes(4, "big") + block)
        self._inner.end()

    def abort(self) -> None:
        self._inner.abort()


class _Base64Body:
    """BodySource: the client's gRPC-Web text body, decoded as it arrives.

    Several padded parts one after another decode as their concatenation. A body that is not
    base64 ends where the valid part ends (the backend then sees a cut message)."""

    __slots__ = ("_consumer", "_ended", "_outer", "_rest")

    def __init__(self, outer: Exchange) -> None:
        self._outer = outer
        self._consumer: BodyConsumer | None = None
        self._rest = b""
        self._ended = False

    def replay(self, consumer: BodyConsumer) -> None:
        self._consumer = consumer
        self._outer.read_body(self)

    def pause(self) -> None:
        self._outer.pause_body()

    def resume(self) -> None:
        self._outer.resume_body()

    # -- BodyConsumer, for the client's exchange ------------------------------------------------

    def body_data(self, chunk: bytes) -> None:
        if self._ended or self._consumer is None:
            return
        data = self._rest + chunk.replace(b"\r", b"").replace(b"\n", b"")
        whole = len(data) - len(data) % 4
        self._rest = data[whole:]
        decoded = _decode(data[:whole])
        if decoded is None:
            self._end()
        elif decoded:
            self._consumer.body_data(decoded)

    def body_end(self) -> None:
        self._end()

    def body_aborted(self) -> None:
        self._ended = True
        if self._consumer is not None:
            self._consumer.body_aborted()

    def _end(self) -> None:
        if not self._ended and self._consumer is not None:
            self._ended = True
            self._consumer.body_end()


def _decode(data: bytes) -> bytes | None:
    """Whole base64 quanta, possibly several padded parts; None when not base64."""
    parts = []
    while data:
        pad = data.find(b"=")
        end = len(data) if pad < 0 else min(len(data), (pad // 4 + 1) * 4)  # its quantum
        try:
            parts.append(base64.b64decode(data[:end], validate=True))
        except binascii.Error:
            return None
        data = data[end:]
    return b"".join(parts)
