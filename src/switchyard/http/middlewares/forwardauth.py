"""`forwardAuth`: asks an authentication server about each request before letting it through.

The auth request is a GET (or the request's method with ``preserveRequestMethod``) to
``address`` carrying the request's header fields and X-Forwarded-Method/-Proto/-Host/-Uri/-For
as Traefik writes them. A 2xx answer lets the request go on, with ``authResponseHeaders`` (and
those matching ``authResponseHeadersRegex``) copied from the answer onto it and the cookies
named in ``addAuthCookiesToResponse`` added to the response. Any other answer goes back to the
client as it came (status, header fields, body), with a relative Location made absolute against
``address`` unless ``preserveLocationHeader``. An auth server that cannot be reached, or answers
nothing within 30 s (Go's client timeout in Traefik), gives the client an empty 500.

The auth request goes out on the engine's own upstream connections (switchyard.http.upstream),
kept alive per middleware instance, through a private Exchange whose response is collected in
memory instead of being written to a client, as the mirroring service does for its copies.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field

from switchyard.config.dynamic import Certificate, StrList, TraefikModel, TransportTLS
from switchyard.gourl import GoURL, parse_url
from switchyard.http.detached import NO_CONNECTION
from switchyard.http.exchange import Exchange
from switchyard.http.forwarded import is_managed_header
from switchyard.http.handler import Handler
from switchyard.http.message import Headers, RequestHead, ResponseHead, split_target
from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap, parse_options
from switchyard.http.middlewares.setcookie import SetCookie, read_set_cookie
from switchyard.http.upstream import Failure, UpstreamConnection, UpstreamPool, UpstreamSettings
from switchyard.rules.goregexp import GoRegexp
from switchyard.tls.backend import BackendTLSError, build_backend_context
from switchyard.tls.certificates import CertificateError

if TYPE_CHECKING:
    from switchyard.http.handler import ResponseWriter

__all__ = ["ForwardAuthOptions", "auth_request_headers", "build", "canonical_header_key"]

log = logging.getLogger("switchyard.http.forwardauth")

#: Go's http.Client timeout in Traefik's forwardAuth: the whole auth exchange.
AUTH_TIMEOUT = 30.0
_GO_USER_AGENT = b"Go-http-client/1.1"
# What Traefik strips from the auth request and from a refusal passed to the client.
_HOP_HEADERS = frozenset({b"connection", b"keep-alive", b"te", b"trailers", b"transfer-encoding",
                          b"upgrade"})
# Go keeps these out of a request's header fields and writes them itself.
_NOT_COPIED = frozenset({b"host", b"content-length", b"trailer"})
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class ForwardAuthTLS(TraefikModel):
    ca: str = ""
    cert: str = ""
    key: str = ""
    insecure_skip_verify: bool = False
    ca_optional: bool | None = None  # deprecated in Traefik, without effect


class ForwardAuthOptions(TraefikModel):
    address: str = ""
    tls: ForwardAuthTLS | None = None
    trust_forward_header: bool | None = None
    auth_response_headers: StrList = Field(default_factory=list)
    auth_response_headers_regex: str = ""
    auth_request_headers: StrList = Field(default_factory=list)
    max_response_body_size: int | None = None
    add_auth_cookies_to_response: StrList = Field(default_factory=list)
    header_field: str = ""
    forward_body: bool = False
    max_body_size: int | None = None
    preserve_location_header: bool = False
    preserve_request_method: bool = False
    auth_signin_url: str = ""


def canonical_header_key(name: bytes) -> bytes:
    """Go's CanonicalMIMEHeaderKey: ``x-auth-user`` -> ``X-Auth-User``; odd bytes leave it as is."""
    if not name or any(byte not in _TOKEN for byte in name):
        return name
    return b"-".join(part[:1].upper() + part[1:].lower() for part in name.split(b"-"))


def auth_request_headers(headers: Headers, *, trust: bool | None, allowed: frozenset[bytes],
                         client_ip: str, method: bytes, tls: bool, host: bytes,
                         uri: bytes) -> Headers:
    """The auth request's header fields, from the request's, as Traefik's writeHeader makes them.

    ``trust`` None is Traefik's legacy behaviour (trustForwardHeader unset): the five
    X-Forwarded fields are always overwritten and the others passed on. ``allowed`` (lower-case
    names, empty: all) is authRequestHeaders.
    """
    named: set[bytes] = set()  # Connection: Upgrade comes back in Traefik, then goes as hop-by-hop
    for name, value in headers:
        if name.lower() == b"connection":
            tokens = {token.strip().lower() for token in value.split(b",")} - {b""}
            named |= tokens
    out = Headers()
    had_agent = False
    for name, value in headers:
        lower = name.lower()
        if lower in _HOP_HEADERS or lower in _NOT_COPIED or lower in named:
            continue
        if trust is False and is_managed_header(lower):
            continue
        if lower == b"user-agent":
            had_agent = True
        out.append((name, value))
    if trust is not None and not had_agent:
        out.append((b"User-Agent", b""))  # no Go default User-Agent, unless filtered out below
    if allowed:
        out = Headers(pair for pair in out if pair[0].lower() in allowed)
    ip = client_ip.encode("latin-1")
    if trust is None:
        out.set(b"x-forwarded-for", ip, b"X-Forwarded-For")
        out.set(b"x-forwarded-proto", b"https" if tls else b"http", b"X-Forwarded-Proto")
        out.set(b"x-forwarded-method", method, b"X-Forwarded-Method")
        out.set(b"x-forwarded-host", host, b"X-Forwarded-Host")
        out.set(b"x-forwarded-uri", uri, b"X-Forwarded-Uri")
        return out
    prior = out.values(b"x-forwarded-for")
    out.set(b"x-forwarded-for", b", ".join([*prior, ip]), b"X-Forwarded-For")
    _set_absent(out, b"X-Forwarded-Method", method)
    _set_absent(out, b"X-Forwarded-Proto", b"https" if tls else b"http")
    _set_absent(out, b"X-Forwarded-Port", _forwarded_port(host, out.get(b"x-forwarded-proto"), tls))
    _set_absent(out, b"X-Forwarded-Host", host)
    _set_absent(out, b"X-Forwarded-Uri", uri)
    return out


def _set_absent(headers: Headers, spelling: bytes, value: bytes) -> None:
    if headers.get(spelling.lower()) is None:
        headers.append((spelling, value))


def _forwarded_port(host: bytes, proto: bytes | None, tls: bool) -> bytes:
    if host[:1] == b"[":
        end = host.find(b"]")
        if end > 0 and host[end + 1:end + 2] == b":" and host[end + 2:]:
            return host[end + 2:]
    elif host.count(b":") == 1 and host.rpartition(b":")[2]:
        return host.rpartition(b":")[2]
    return b"443" if proto in (b"https", b"wss") or tls else b"80"


class _AuthServer:
    """Where auth requests go: the parsed address and a keep-alive pool, or why it cannot be."""

    __slots__ = ("authority", "pool", "problem", "target", "url")

    def __init__(self, address: str, settings: UpstreamSettings) -> None:
        self.problem = ""
        self.url: GoURL | None = None
        self.pool: UpstreamPool | None = None
        self.authority = self.target = b""
        try:
            url = parse_url(address.encode("utf-8", "surrogateescape"))
        except ValueError as exc:
            self.problem = f'parse "{address}": {exc}'
            return
        self.url = url
        if url.scheme not in (b"http", b"https"):
            self.problem = f"unsupported protocol scheme \"{url.scheme.decode('latin-1')}\""
            return
        host = url.host
        if not host:
            self.problem = "no Host in request URL"
            return
        self.authority = host.removesuffix(b":")
        name, port = host, b""
        if host[:1] == b"[":
            name, _, rest = host[1:].partition(b"]")
            port = rest.removeprefix(b":")
        elif b":" in host:
            name, _, port = host.rpartition(b":")
        default = 443 if url.scheme == b"https" else 80
        self.target = url.request_uri()
        self.pool = UpstreamPool(name.decode("latin-1"), int(port) if port else default, settings,
                                 tls=url.scheme == b"https")


class ForwardAuth:
    __slots__ = ("_cookie_names", "_regex", "_response_headers", "allowed", "forward_body",
                 "header_field", "max_body",
                 "max_response_body", "next", "preserve_location", "preserve_method", "server",
                 "signin_url", "trust")

    def __init__(self, config: ForwardAuthOptions, server: _AuthServer, regex: GoRegexp | None,
                 next_handler: Handler) -> None:
        self.server = server
        self.trust = config.trust_forward_header
        allowed = [name.lower().encode("latin-1") for name in config.auth_request_headers]
        if allowed and self.trust:
            allowed += [b"x-forwarded-proto", b"x-forwarded-scheme", b"x-forwarded-for",
                        b"x-forwarded-host", b"x-forwarded-port", b"x-forwarded-server",
                        b"x-forwarded-uri", b"x-forwarded-method", b"x-forwarded-prefix",
                        b"x-forwarded-tls-client-cert", b"x-forwarded-tls-client-cert-info",
                        b"x-scheme", b"x-real-ip"]
        self.allowed = frozenset(allowed)
        self._response_headers = [canonical_header_key(name.encode("latin-1"))
                                  for name in config.auth_response_headers]
        self._regex = regex
        self._cookie_names = frozenset(name.encode("latin-1")
                                       for name in config.add_auth_cookies_to_response)
        self.max_body = -1 if config.max_body_size is None else config.max_body_size
        self.max_response_body = (-1 if config.max_response_body_size is None
                                  else config.max_response_body_size)
        self.preserve_location = config.preserve_location_header
        self.preserve_method = config.preserve_request_method
        self.signin_url = config.auth_signin_url.encode("utf-8")
        self.forward_body = config.forward_body
        self.header_field = config.header_field.lower().encode("latin-1")
        self.next = next_handler

    def handle(self, exchange: Exchange) -> None:
        if self.forward_body and exchange.has_body and not (
                exchange.request.method == b"CONNECT" and exchange.body_chunked):
            exchange.read_body(_BodyCollector(exchange, self.max_body, self._ask))
        else:
            self._ask(exchange, None)

    def _ask(self, exchange: Exchange, body: bytes | None) -> None:
        server = self.server
        if server.pool is None:
            log.debug("forwardAuth: error calling the auth server: %s", server.problem)
            exchange.respond(500)
            return
        request = exchange.request
        path, query = split_target(request.target)
        uri = (path or b"/") + (b"?" + query if b"?" in request.target else b"")
        fields = auth_request_headers(
            request.headers, trust=self.trust, allowed=self.allowed,
            client_ip=exchange.info.client_ip, method=request.method, tls=exchange.info.tls,
            host=request.headers.get(b"host") or b"", uri=uri)
        method = request.method if self.preserve_method else b"GET"
        _AuthCall(self, exchange, server, method, fields, body).begin()

    # -- the auth server's answer -----------------------------------------------------------

    def answered(self, exchange: Exchange, status: int, headers: Headers, body: bytes) -> None:
        if self.header_field:
            # The access log's ClientUsername: the auth server's answer names the user.
            user = headers.get(self.header_field)
            if user is not None:
                exchange.client_username = user.decode("utf-8", "replace")
        if self.signin_url and status == 401:
            _redirect(exchange, self.signin_url)
            return
        if not 200 <= status < 300:
            self._refuse(exchange, status, headers, body)
            return
        request_headers = exchange.request.headers
        for key in self._response_headers:
            request_headers.remove(key.lower())
            for value in headers.values(key.lower()):
                request_headers.append((key, value))
        regex = self._regex
        if regex is not None:
            request_headers[:] = [pair for pair in request_headers
                                  if not regex.matches(canonical_header_key(pair[0]))]
            request_headers += [(canonical_header_key(name), value) for name, value in headers
                                if regex.matches(canonical_header_key(name))]
        cookies = [cookie for cookie in map(read_set_cookie, headers.values(b"set-cookie"))
                   if cookie is not None]
        if cookies:
            exchange.writer = _AuthCookies(exchange.writer, cookies, self._cookie_names)
        self.next.handle(exchange)

    def _refuse(self, exchange: Exchange, status: int, headers: Headers, body: bytes) -> None:
        fields = Headers(pair for pair in headers if pair[0].lower() not in _HOP_HEADERS)
        location = headers.get(b"location")
        if location:
            try:
                parsed = parse_url(location)
                if not self.preserve_location:
                    assert self.server.url is not None
                    parsed = _resolve(self.server.url, parsed, location)
            except ValueError:
                exchange.respond(500)
                return
            fields.set(b"location", parsed.string(), b"Location")
        exchange.respond(status, fields, body)


def _resolve(base: GoURL, reference: GoURL, raw: bytes) -> GoURL:
    """url.URL.ResolveReference for the Location of an auth answer (RFC 3986 section 5.2)."""
    if reference.scheme:
        return reference
    if raw.startswith(b"//"):
        reference.scheme = base.scheme
        return reference
    resolved = GoURL(scheme=base.scheme, user=base.user, host=base.host)
    ref_path = reference.escaped_path()
    if not ref_path and not reference.opaque:
        resolved.path = base.path
        resolved.raw_query = reference.raw_query if (reference.raw_query or
                                                     reference.force_query) else base.raw_query
        resolved.force_query = reference.force_query
    else:
        joined = ref_path if ref_path.startswith(b"/") else (
            base.escaped_path().rpartition(b"/")[0] + b"/" + ref_path)
        resolved.path = parse_url(_remove_dot_segments(joined) or b"/").path
        resolved.raw_query = reference.raw_query
        resolved.force_query = reference.force_query
    resolved.fragment, resolved.raw_fragment = reference.fragment, reference.raw_fragment
    return resolved


def _remove_dot_segments(path: bytes) -> bytes:
    out: list[bytes] = []
    segments = path.split(b"/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == b".":
            if last:
                out.append(b"")
            continue
        if segment == b"..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append(b"")
            continue
        out.append(segment)
    joined = b"/".join(out)
    return joined if joined.startswith(b"/") else b"/" + joined


def _redirect(exchange: Exchange, url: bytes) -> None:
    """The 302 Traefik 3.7 answers for ``authSigninURL``: the Location and no body."""
    exchange.respond(302, Headers([(b"Location", url)]))


class _BodyCollector:
    """BodyConsumer: the whole request body for the auth server, within ``maxBodySize``."""

    __slots__ = ("_chunks", "_exchange", "_limit", "_size", "_then")

    def __init__(self, exchange: Exchange, limit: int,
                 then: Callable[[Exchange, bytes | None], None]) -> None:
        self._exchange = exchange
        self._limit = limit
        self._then = then
        self._chunks: list[bytes] = []
        self._size = 0

    def body_data(self, chunk: bytes) -> None:
        if self._size < 0:
            return
        self._size += len(chunk)
        if 0 <= self._limit < self._size:
            self._size = -1
            self._chunks = []
            self._exchange.respond(401)  # Traefik: request body too large
            return
        self._chunks.append(chunk)

    def body_end(self) -> None:
        if self._size < 0 or self._exchange.finished:
            return
        chunks = self._chunks
        self._exchange.unread_body(chunks)  # the service gets the body too
        self._then(self._exchange, b"".join(chunks) if self._size else None)

    def body_aborted(self) -> None:
        self._chunks = []


class _AuthCall:
    """One auth request: sent on a pooled connection, its answer collected in memory.

    It is the client exchange's producer while it waits, so a client that goes away cancels it;
    it is also the upstream connection's RequestOwner and the private exchange's writer.
    """

    __slots__ = ("_body", "_exchange", "_fields", "_gzip", "_head", "_headers", "_method",
                 "_middleware", "_over", "_parts", "_retried", "_server", "_shadow", "_size",
                 "_status", "_timer")

    def __init__(self, middleware: ForwardAuth, exchange: Exchange, server: _AuthServer,
                 method: bytes, fields: Headers, body: bytes | None) -> None:
        self._middleware = middleware
        self._exchange = exchange
        self._server = server
        self._method = method
        self._body = body
        self._gzip = fields.get(b"accept-encoding") is None and fields.get(b"range") is None \
            and method != b"HEAD"
        self._head = self._request_head(fields, exchange.body_chunked)
        self._fields = fields
        self._over = False
        self._retried = False
        self._status = 0
        self._headers = Headers()
        self._parts: list[bytes] = []
        self._size = 0
        self._shadow: Exchange | None = None
        self._timer: asyncio.TimerHandle | None = None

    def _request_head(self, fields: Headers, chunked: bool) -> bytes:
        server = self._server
        parts = [self._method, b" ", server.target, b" HTTP/1.1\r\nHost: ", server.authority,
                 b"\r\n"]
        agent = fields.get(b"user-agent")
        if agent is None:
            parts.append(b"User-Agent: " + _GO_USER_AGENT + b"\r\n")
        for name, value in fields:
            if name.lower() == b"user-agent" and not value:
                continue
            parts += (name, b": ", value, b"\r\n")
        body = self._body
        if body is not None:
            parts.append(b"Transfer-Encoding: chunked\r\n" if chunked
                         else b"Content-Length: %d\r\n" % len(body))
        elif self._method in (b"POST", b"PUT", b"PATCH"):
            parts.append(b"Content-Length: 0\r\n")  # Go's client says so for these methods
        if self._gzip:
            parts.append(b"Accept-Encoding: gzip\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def begin(self) -> None:
        pool = self._server.pool
        assert pool is not None
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(AUTH_TIMEOUT, self._timed_out)
        self._exchange.set_producer(self)
        conn = pool.acquire()
        if conn is not None:
            self._send(conn)
        else:
            pool.dial(self._dialed)

    def _dialed(self, conn: UpstreamConnection | None, failure: Failure | None) -> None:
        if self._over:
            if conn is not None and self._server.pool is not None:
                self._server.pool.release(conn)
            return
        if conn is None:
            self._fail(failure.reason if failure is not None else "dial failed")
        else:
            self._send(conn)

    def _send(self, conn: UpstreamConnection) -> None:
        body = self._body
        shadow = Exchange(NO_CONNECTION, RequestHead(self._method, self._server.target, b"1.1",
                                                   Headers()),
                          self._exchange.info, has_body=body is not None, keep_alive=True,
                          expect_continue=False, started_at=time.monotonic(),
                          body_chunked=self._exchange.body_chunked)
        shadow.writer = self
        if body is not None:
            shadow.body_received(body)
            shadow.body_received_all()
        self._shadow = shadow
        chunked = body is not None and self._exchange.body_chunked
        conn.send(shadow, self, self._head, chunked_body=chunked)

    # -- RequestOwner -------------------------------------------------------------------------

    def upstream_done(self) -> None:
        pass

    def upstream_failed(self, exchange: Exchange, failure: Failure) -> None:
        if self._over:
            return
        if failure.retriable and not self._retried and self._server.pool is not None:
            self._retried = True  # a kept-alive connection the server had closed
            self._server.pool.dial(self._dialed)
            return
        self._fail(failure.reason)

    # -- ResponseWriter of the private exchange ----------------------------------------------

    def start(self, head: ResponseHead) -> None:
        self._status = head.status
        self._headers = head.headers

    def write(self, chunk: bytes) -> None:
        if self._over:
            return
        self._size += len(chunk)
        limit = self._middleware.max_response_body
        if 0 <= limit < self._size and not self._compressed:
            self._finish()
            self._exchange.respond(401)  # Traefik: response body too large
            return
        self._parts.append(chunk)

    def end(self) -> None:
        if self._over:
            return
        self._finish()
        body = b"".join(self._parts)
        headers = self._headers
        if self._compressed:
            try:
                body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
            except zlib.error as exc:
                self._exchange_failed(f"reading the auth answer: {exc}")
                return
            headers = Headers(pair for pair in headers
                              if pair[0].lower() not in (b"content-encoding", b"content-length"))
            limit = self._middleware.max_response_body
            if 0 <= limit < len(body):
                self._exchange.respond(401)
                return
        self._middleware.answered(self._exchange, self._status, headers, body)

    def abort(self) -> None:
        if not self._over:
            self._finish()
            self._exchange_failed("the auth server broke off its answer")

    @property
    def _compressed(self) -> bool:
        return self._gzip and (self._headers.get(b"content-encoding") or b"").lower() == b"gzip"

    # -- Producer of the client exchange --------------------------------------------------------

    def pause_producing(self) -> None:
        pass

    def resume_producing(self) -> None:
        pass

    def stop_producing(self) -> None:
        """The client went away: give up on the auth request."""
        self._cancel()

    # -- endings ----------------------------------------------------------------------------------

    def _timed_out(self) -> None:
        if not self._over:
            self._cancel()
            self._exchange_failed(f"no answer within {AUTH_TIMEOUT:g}s")

    def _cancel(self) -> None:
        self._finish()
        shadow = self._shadow
        if shadow is not None:
            shadow.client_lost()  # the upstream connection drops the request and closes

    def _fail(self, reason: str) -> None:
        self._finish()
        self._exchange_failed(reason)

    def _finish(self) -> None:
        self._over = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._exchange.finished:
            self._exchange.set_producer(None)

    def _exchange_failed(self, reason: str) -> None:
        log.debug("forwardAuth: error calling the auth server: %s", reason)
        if not self._exchange.finished:
            self._exchange.respond(500)


class _AuthCookies:
    """ResponseWriter: the service's cookies but those named, then the auth server's named ones,
    all rewritten in Go's form (Traefik parses and re-serializes them whenever the auth server
    sets any cookie)."""

    __slots__ = ("_cookies", "_names", "_next")

    def __init__(self, next_writer: ResponseWriter, cookies: list[SetCookie],
                 names: frozenset[bytes]) -> None:
        self._next = next_writer
        self._cookies = [cookie.string() for cookie in cookies if cookie.name in names]
        self._names = names

    def start(self, head: ResponseHead) -> None:
        kept = [cookie.string() for cookie in map(read_set_cookie, head.headers.values(b"set-cookie"))
                if cookie is not None and cookie.name not in self._names]
        head.headers.remove(b"set-cookie")
        head.headers += [(b"Set-Cookie", value) for value in (*kept, *self._cookies)]
        self._next.start(head)

    def write(self, chunk: bytes) -> None:
        self._next.write(chunk)

    def end(self) -> None:
        self._next.end()

    def abort(self) -> None:
        self._next.abort()


def _transport(config: ForwardAuthOptions, host: str) -> UpstreamSettings:
    tls_config = config.tls
    tls = None
    if tls_config is not None:
        if bool(tls_config.cert) != bool(tls_config.key):
            raise MiddlewareError("unable to create client TLS configuration: both TLS cert and "
                                  "key must be defined (tls.cert and tls.key)")
        tls = TransportTLS(
            insecure_skip_verify=tls_config.insecure_skip_verify,
            root_cas=[tls_config.ca] if tls_config.ca else [],
            certificates=([Certificate(cert_file=tls_config.cert, key_file=tls_config.key)]
                          if tls_config.cert else []))
        try:
            build_backend_context(tls, host)
        except (BackendTLSError, CertificateError, OSError, ValueError) as exc:
            raise MiddlewareError(f"unable to create client TLS configuration: {exc}") from None
    # Go's default transport keeps two idle connections per host.
    return UpstreamSettings(name="forwardAuth", max_idle_conns_per_host=2, tls=tls)


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    config = parse_options(ForwardAuthOptions, options)
    regex = None
    if config.auth_response_headers_regex:
        try:
            regex = GoRegexp(config.auth_response_headers_regex)
        except ValueError as exc:
            raise MiddlewareError(f"authResponseHeadersRegex: error compiling regular expression "
                                  f"{config.auth_response_headers_regex}: {exc}") from None
    probe = _AuthServer(config.address, UpstreamSettings())
    host = probe.pool.host if probe.pool is not None else ""
    settings = _transport(config, host)
    if probe.problem:
        log.warning('forwardAuth "%s": every request will get a 500: %s', context.name,
                    probe.problem)

    def wrap(next_handler: Handler) -> Handler:
        return ForwardAuth(config, _AuthServer(config.address, settings), regex, next_handler)

    return wrap
