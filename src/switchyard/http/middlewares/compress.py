"""`compress`: gzip, brotli or zstd response bodies, negotiated from Accept-Encoding as Traefik does.

What a client observes, and why the code reads as it does:

* The encoding is picked from every ``Accept-Encoding`` line: the highest ``q`` wins, ties go to
  the earlier entry of ``encodings`` (``*`` beats all at the same ``q`` and means
  ``defaultEncoding`` or the first encoding; ``identity`` loses every tie). No header at all
  means ``defaultEncoding`` when one is set, else no compression; an empty header means none.
* Once an encoding is picked, ``Vary: Accept-Encoding`` is added whether or not this response
  ends up compressed. HEAD requests and requests whose own Content-Type is excluded (always
  ``application/grpc``) pass untouched.
* A response is compressed unless it has no body (1xx, 204, 304), already has a
  Content-Encoding, has an excluded (or not included) media type, or declares a Content-Length
  below ``minResponseBodyBytes``. A response of unknown length is compressed from its first
  byte: Traefik's proxy flushes such a response after every write, and a flush starts the
  compression whatever the size so far. gzip goes through a different library in Traefik and
  has a few rules of its own (see ``_Plan``).
* Bodies are compressed as they stream: every chunk is compressed and flushed at once, so
  server-sent events arrive promptly and nothing holds the whole body. A compressed body of at
  most 2048 bytes whose input had a known length is sent with a Content-Length, as Go's server
  does for a short handler output; anything else is chunked.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import brotli  # type: ignore[import-untyped]
import zstandard
from pydantic import Field, field_validator

from switchyard.config.dynamic import StrList, TraefikModel
from switchyard.http.handler import Handler, ResponseWriter
from switchyard.http.message import Headers
from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap, parse_options

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange
    from switchyard.http.message import ResponseHead

__all__ = ["IDENTITY", "NOT_ACCEPTABLE", "Compress", "build", "negotiate", "parse_media_type"]

GZIP, BROTLI, ZSTD = "gzip", "br", "zstd"
SUPPORTED = (GZIP, BROTLI, ZSTD)
IDENTITY = "identity"
WILDCARD = "*"
NOT_ACCEPTABLE = "not_acceptable"
DEFAULT_MIN_SIZE = 1024
# Go's server buffers this much handler output before it must choose chunked framing.
_GO_RESPONSE_BUFFER = 2048
_VARY_VALUE = b"Accept-Encoding"
_NO_GZIP = b"no-gzip-compression"  # klauspost's gzhttp: any value turns gzip off, then removed


class CompressOptions(TraefikModel):
    excluded_content_types: StrList = Field(default_factory=list)
    included_content_types: StrList = Field(default_factory=list)
    min_response_body_bytes: int = 0
    encodings: StrList = Field(default_factory=lambda: [GZIP, BROTLI, ZSTD])
    default_encoding: str = ""

    @field_validator("encodings", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any) -> Any:
        return [GZIP, BROTLI, ZSTD] if value is None else value


# -- media types (Go's mime.ParseMediaType, without RFC 2231 continuations) --------------------

_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z|~]+")


def parse_media_type(value: str) -> tuple[str, dict[str, str], str | None]:
    """``(media type, parameters, error)`` as Go parses a Content-Type value.

    The media type is lower-cased. On an error the type is ``""``, except for a bad parameter,
    where Go still returns the type (callers that only read the type use it).
    """
    base = value.split(";", 1)[0]
    media = base.lower().strip()
    error = _check_media_type(media)
    if error:
        return "", {}, error
    params: dict[str, str] = {}
    rest = value[len(base):]
    while rest:
        rest = rest.lstrip()
        if not rest:
            break
        key, param, after = _media_param(rest)
        if not key:
            if rest.strip() == ";":
                break  # a trailing semicolon is ignored
            return media, {}, "mime: invalid media parameter"
        if key in params:
            return "", {}, "mime: duplicate parameter name"
        params[key] = param
        rest = after
    return media, params, None


def _check_media_type(media: str) -> str | None:
    match = _TOKEN.match(media)
    if match is None:
        return "mime: no media type"
    rest = media[match.end():]
    if not rest:
        return None
    if rest[0] != "/":
        return "mime: expected slash after first token"
    sub = _TOKEN.match(rest, 1)
    if sub is None:
        return "mime: expected token after slash"
    if sub.end() != len(rest):
        return "mime: unexpected content after media subtype"
    return None


def _media_param(text: str) -> tuple[str, str, str]:
    rest = text.lstrip()
    if not rest.startswith(";"):
        return "", "", text
    rest = rest[1:].lstrip()
    match = _TOKEN.match(rest)
    if match is None:
        return "", "", text
    key = match.group().lower()
    rest = rest[match.end():].lstrip()
    if not rest.startswith("="):
        return "", "", text
    rest = rest[1:].lstrip()
    if rest.startswith('"'):
        out: list[str] = []
        index = 1
        while index < len(rest):
            char = rest[index]
            if char == '"':
                return key, "".join(out), rest[index + 1:]
            if char == "\\" and index + 1 < len(rest):
                index += 1
                char = rest[index]
            out.append(char)
            index += 1
        return "", "", text  # unterminated quoted string
    match = _TOKEN.match(rest)
    if match is None:
        return "", "", text
    return key, match.group(), rest[match.end():]


# -- Accept-Encoding ----------------------------------------------------------------------------

_GO_FLOAT = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|infinity|nan)",
                       re.IGNORECASE)
_GO_HEX_FLOAT = re.compile(r"[+-]?0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?\d+")


def _go_float(text: str) -> float:
    """Go's ``strconv.ParseFloat(text, 64)`` value, ignoring its error (0 on bad syntax)."""
    if _GO_FLOAT.fullmatch(text):
        return float(text)
    if _GO_HEX_FLOAT.fullmatch(text):
        return float.fromhex(text)
    return 0.0


def negotiate(values: Sequence[str], encodings: Sequence[str], default: str = "") -> str:
    """The coding Traefik picks for these Accept-Encoding lines: one of ``encodings``,
    ``identity`` (the client wants none) or ``not_acceptable`` (nothing offered fits)."""
    if len(values) == 1 and values[0] == "":
        return IDENTITY
    priority = {WILDCARD: -1, IDENTITY: len(encodings)}
    for index, encoding in enumerate(encodings):
        priority[encoding] = index
    best: tuple[tuple[float, int], str] | None = None
    for line in values:
        for item in line.replace(" ", "").split(","):
            name, has_params, params = item.partition(";")
            rank = priority.get(name)
            if rank is None:
                continue
            weight = 1.0
            if has_params and params.startswith("q="):
                weight = _go_float(params[2:])
                if weight == 0:
                    continue
            # Highest weight first (Go sorts NaN below everything), then the lower rank.
            key = (math.inf if math.isnan(weight) else -weight, rank)
            if best is None or key < best[0]:
                best = (key, name)
    if best is None:
        return NOT_ACCEPTABLE
    if best[1] == WILDCARD:
        return default or encodings[0]
    return best[1]


def _gzhttp_accepts_gzip(first_line: str) -> bool:
    """Whether klauspost's gzhttp, which serves Traefik's gzip, finds gzip acceptable in the
    first Accept-Encoding line (its own parse: case-insensitive, q clamped to 0..1)."""
    for item in first_line.strip().split(","):
        name, _, params = item.partition(";")
        if name.strip().lower() != "gzip":
            continue
        weight = 1.0
        for part in params.split(";") if params else ():
            part = part.strip()
            if part.startswith("q="):
                weight = _go_float(part[2:])
        return weight > 0
    return False


# -- encoders -------------------------------------------------------------------------------


class _Encoder:
    """One response's compressor: ``compress`` returns what a chunk adds, flushed."""

    __slots__ = ("_brotli", "_zlib", "_zstd", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._zlib = zlib.compressobj(6, zlib.DEFLATED, 31) if name == GZIP else None
        # Traefik's brotli writer uses quality 6; the library's default (11) is far slower.
        self._brotli = brotli.Compressor(quality=6) if name == BROTLI else None
        self._zstd = (zstandard.ZstdCompressor(level=3).compressobj() if name == ZSTD else None)

    def compress(self, chunk: bytes) -> bytes:
        if self._zlib is not None:
            return self._zlib.compress(chunk) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
        if self._brotli is not None:
            return bytes(self._brotli.process(chunk)) + bytes(self._brotli.flush())
        assert self._zstd is not None
        return bytes(self._zstd.compress(chunk)) + bytes(
            self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))

    def finish(self) -> bytes:
        if self._zlib is not None:
            return self._zlib.flush(zlib.Z_FINISH)
        if self._brotli is not None:
            return bytes(self._brotli.finish())
        assert self._zstd is not None
        return bytes(self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))


# -- the middleware -------------------------------------------------------------------------


class _Plan:
    """What one middleware decides per response, for one encoding.

    Traefik serves gzip through klauspost's gzhttp and brotli/zstd through its own writer,
    which differ: only gzip leaves a 206 with Content-Range alone, drops Accept-Ranges when it
    compresses and obeys (then removes) a ``No-Gzip-Compression`` header; a response without a
    Content-Type is compressed by both, but in ``includedContentTypes`` mode gzip would sniff
    the body, which Switchyard does not (such a response is left uncompressed).
    """

    __slots__ = ("encoding", "excluded", "gzip", "included", "min_size")

    def __init__(self, encoding: str, min_size: int, excluded: frozenset[str],
                 included: frozenset[str]) -> None:
        self.encoding = encoding
        self.gzip = encoding == GZIP
        self.min_size = min_size
        self.excluded = excluded
        self.included = included

    def compresses(self, head: ResponseHead) -> bool:
        status, headers = head.status, head.headers
        if self.gzip:
            if headers.get(_NO_GZIP) is not None:
                headers.remove(_NO_GZIP)
                return False
            if headers.get(b"content-range"):
                return False
        if status < 200 or status in (204, 304):
            return False
        if headers.get(b"content-encoding"):
            return False
        if not self._type_allowed(headers.get(b"content-type")):
            return False
        length = _content_length(headers)
        return length is None or length >= self.min_size

    def _type_allowed(self, value: bytes | None) -> bool:
        if not value:
            return not (self.gzip and self.included)
        media, _, error = parse_media_type(value.decode("latin-1"))
        if error:
            # gzhttp counts an unreadable type as "not listed"; Traefik's own writer refuses it.
            return self.gzip and not self.included
        if self.included:
            return media in self.included
        return media not in self.excluded


def _content_length(headers: Headers) -> int | None:
    value = headers.get(b"content-length")
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length > 0 else None  # gzhttp reads 0 as "not known yet"


def _add_vary(headers: Headers) -> None:
    """``Vary: Accept-Encoding`` ahead of the backend's own Vary values (as Traefik adds it
    before the backend's header fields are copied in)."""
    for index, (name, _) in enumerate(headers):
        if len(name) == 4 and name.lower() == b"vary":
            headers.insert(index, (b"Vary", _VARY_VALUE))
            return
    headers.append((b"Vary", _VARY_VALUE))


class _Varying:
    """ResponseWriter: only adds Vary (gzip was picked, but gzhttp itself declines)."""

    __slots__ = ("_next",)

    def __init__(self, next_writer: ResponseWriter) -> None:
        self._next = next_writer

    def start(self, head: ResponseHead) -> None:
        _add_vary(head.headers)
        head.headers.remove(_NO_GZIP)
        self._next.start(head)

    def write(self, chunk: bytes) -> None:
        self._next.write(chunk)

    def end(self) -> None:
        self._next.end()

    def abort(self) -> None:
        self._next.abort()


class _Compressing:
    """ResponseWriter: compresses the body per chunk once ``start`` has decided to.

    The head waits for the first body bytes (an empty body is sent uncompressed, as Traefik
    does); when the input length was known, compressed output is held up to Go's 2048-byte
    response buffer so that a short result gets a Content-Length.
    """

    __slots__ = ("_encoder", "_exchange", "_head", "_held", "_held_size", "_known_length",
                 "_next", "_plan")

    def __init__(self, next_writer: ResponseWriter, plan: _Plan, exchange: Exchange) -> None:
        self._next = next_writer
        self._plan = plan
        self._exchange = exchange
        self._encoder: _Encoder | None = None
        self._head: ResponseHead | None = None
        self._held: list[bytes] = []
        self._held_size = 0
        self._known_length = False

    def start(self, head: ResponseHead) -> None:
        _add_vary(head.headers)
        if not self._plan.compresses(head):
            self._next.start(head)
            return
        self._known_length = head.headers.get(b"content-length") is not None
        self._head = head
        self._encoder = _Encoder(self._plan.encoding)

    def write(self, chunk: bytes) -> None:
        encoder = self._encoder
        if encoder is None:
            self._next.write(chunk)
            return
        if not chunk:
            return
        out = encoder.compress(chunk)
        if self._head is None:
            if out:
                self._next.write(out)
            return
        if self._known_length and self._held_size + len(out) <= _GO_RESPONSE_BUFFER:
            self._held.append(out)
            self._held_size += len(out)
            return
        self._start_compressed(None)
        self._next.write(out)

    def end(self) -> None:
        encoder = self._encoder
        if encoder is None:
            self._next.end()
            return
        head = self._head
        if head is not None and not self._held:
            self._head = None  # no body came: sent as it is
            self._encoder = None
            self._next.start(head)
            self._next.end()
            return
        tail = encoder.finish()
        if head is not None:
            total = self._held_size + len(tail)
            self._start_compressed(total if self._known_length
                                   and total <= _GO_RESPONSE_BUFFER else None)
        if tail:
            self._next.write(tail)
        self._next.end()

    def abort(self) -> None:
        if self._head is not None:
            self._head = None
            self._held = []
        self._next.abort()

    def _start_compressed(self, length: int | None) -> None:
        head = self._head
        assert head is not None and self._encoder is not None
        self._head = None
        headers = head.headers
        headers.remove(b"content-length")
        if length is not None:
            headers.append((b"Content-Length", str(length).encode("ascii")))
            self._exchange.sized_head = head  # Go's server adds it on the wire, not to the map
        headers.set(b"content-encoding", self._encoder.name.encode("ascii"), b"Content-Encoding")
        if self._plan.gzip:
            headers.remove(b"accept-ranges")
        self._next.start(head)
        held, self._held, self._held_size = self._held, [], 0
        for out in held:
            self._next.write(out)


class Compress:
    """Handler: picks an encoding for the request and wraps the response writer for it."""

    __slots__ = ("default", "encodings", "next", "plans", "request_excluded")

    def __init__(self, options: CompressOptions, next_handler: Handler,
                 excluded: frozenset[str], included: frozenset[str], min_size: int) -> None:
        self.next = next_handler
        self.encodings = tuple(options.encodings)
        self.default = options.default_encoding
        self.request_excluded = excluded
        self.plans = {name: _Plan(name, min_size, excluded, included) for name in SUPPORTED}

    def handle(self, exchange: Exchange) -> None:
        request = exchange.request
        if request.method == b"HEAD":
            self.next.handle(exchange)
            return
        content_type = request.headers.get(b"content-type")
        if content_type is not None:
            media = parse_media_type(content_type.decode("latin-1"))[0]
            if media in self.request_excluded:
                self.next.handle(exchange)
                return
        values = [value.decode("latin-1") for value in request.headers.values(b"accept-encoding")]
        if values:
            encoding = negotiate(values, self.encodings, self.default)
        elif self.default:
            encoding = self.default
        else:
            self.next.handle(exchange)
            return
        plan = self.plans.get(encoding)
        if plan is None:
            self.next.handle(exchange)
            return
        if plan.gzip and not _gzhttp_accepts_gzip(values[0] if values else ""):
            exchange.writer = _Varying(exchange.writer)
        else:
            exchange.writer = _Compressing(exchange.writer, plan, exchange)
        self.next.handle(exchange)


def _media_types(values: Sequence[str], which: str) -> frozenset[str]:
    types = set()
    for value in values:
        media, _, error = parse_media_type(value)
        if error:
            raise MiddlewareError(f"{which}ContentTypes: parsing {which} media type {value!r}: "
                                  f"{error}; give a media type such as text/html")
        types.add(media)
    return frozenset(types)


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    config = parse_options(CompressOptions, options)
    if config.excluded_content_types and config.included_content_types:
        raise MiddlewareError("excludedContentTypes and includedContentTypes options are "
                              "mutually exclusive: keep only one of them")
    excluded = _media_types(["application/grpc", *config.excluded_content_types], "excluded")
    included = _media_types(config.included_content_types, "included")
    if not config.encodings:
        raise MiddlewareError("encodings: at least one encoding must be specified "
                              f"(any of {', '.join(SUPPORTED)})")
    for encoding in config.encodings:
        if encoding not in SUPPORTED:
            raise MiddlewareError(f"encodings: unsupported encoding: {encoding} "
                                  f"(supported: {', '.join(SUPPORTED)})")
    if config.default_encoding and config.default_encoding not in config.encodings:
        raise MiddlewareError(f"defaultEncoding: unsupported default encoding: "
                              f"{config.default_encoding} (it must be one of encodings)")
    min_size = config.min_response_body_bytes
    if min_size <= 0:
        min_size = DEFAULT_MIN_SIZE
    return lambda next_handler: Compress(config, next_handler, excluded, included, min_size)
