"""`headers`: custom request and response fields, CORS (preflights answered here) and security fields.

As in Traefik, one middleware is up to two handlers: the custom/CORS part runs first (a CORS
preflight is answered by it, before anything else sees the request), then the security part
(headers_security: allowed hosts, STS, frame options, CSP, ...), then the next handler. On the
way back the security fields are set first and the custom response fields after them, so a
``customResponseHeaders`` entry with an empty value removes a field either of them set. Every
response that goes through the middleware is edited, error answers of inner middlewares and of
the proxy included; ``1xx`` heads (a WebSocket ``101``) pass untouched, as Go's response
modifier leaves them.

Field names are written in Go's canonical form (``X-Xss-Protection``) and values with surrounding
white space trimmed, as Go's net/http puts them on the wire. The deprecated ``sslRedirect``,
``sslTemporaryRedirect``, ``sslHost``, ``sslForceHost`` and ``featurePolicy`` are accepted and do
nothing, as in Traefik 3.7 (they still count as "something configured").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

from pydantic import BeforeValidator, Field

from switchyard.config.dynamic import StrList, TraefikModel
from switchyard.http.handler import Handler, ResponseWriter
from switchyard.http.message import Headers, ResponseHead
from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap, parse_options
from switchyard.rules.goregexp import GoRegexp

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange
    from switchyard.http.message import RequestHead

__all__ = [
    "EditedHead",
    "FieldEdit",
    "FieldEdits",
    "HeadersOptions",
    "apply_edits",
    "build",
    "canonical_name",
    "field_value",
]

log = logging.getLogger("switchyard.http.middlewares")
T = TypeVar("T")

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DEPRECATED = ("sslRedirect", "sslTemporaryRedirect", "sslHost", "sslForceHost", "featurePolicy")


def _text_map(value: Any) -> Any:
    # Traefik's decoder reads every scalar as text: `X-Count: 1` is "1", `X-On: true` is "true".
    if not isinstance(value, Mapping):
        return value
    out: dict[str, str] = {}
    for key, item in value.items():
        if item is None:
            item = ""
        elif isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, int | float):
            item = str(item)
        out[str(key)] = item
    return out


TextMap = Annotated[dict[str, str], BeforeValidator(_text_map)]


class HeadersOptions(TraefikModel):
    custom_request_headers: TextMap = Field(default_factory=dict)
    custom_response_headers: TextMap = Field(default_factory=dict)

    access_control_allow_credentials: bool = False
    access_control_allow_headers: StrList = Field(default_factory=list)
    access_control_allow_methods: StrList = Field(default_factory=list)
    access_control_allow_origin_list: StrList = Field(default_factory=list)
    access_control_allow_origin_list_regex: StrList = Field(default_factory=list)
    access_control_expose_headers: StrList = Field(default_factory=list)
    access_control_max_age: int | None = None
    add_vary_header: bool = False

    allowed_hosts: StrList = Field(default_factory=list)
    hosts_proxy_headers: StrList = Field(default_factory=list)
    ssl_proxy_headers: TextMap = Field(default_factory=dict)
    sts_seconds: int | None = None
    sts_include_subdomains: bool = False
    sts_preload: bool = False
    force_sts_header: bool = Field(default=False, alias="forceSTSHeader")
    frame_deny: bool = False
    custom_frame_options_value: str = ""
    content_type_nosniff: bool = False
    browser_xss_filter: bool = Field(default=False, alias="browserXssFilter")
    custom_browser_xss_value: str = Field(default="", alias="customBrowserXSSValue")
    content_security_policy: str = ""
    content_security_policy_report_only: str = ""
    public_key: str = ""
    referrer_policy: str = ""
    permissions_policy: str = ""
    is_development: bool = False

    # Deprecated in v3: read, counted as configured, without effect.
    feature_policy: str | None = None
    ssl_redirect: bool | None = None
    ssl_temporary_redirect: bool | None = None
    ssl_host: str | None = None
    ssl_force_host: bool | None = Field(default=None, alias="sslForceHost")

    @property
    def has_custom(self) -> bool:
        return bool(self.custom_request_headers or self.custom_response_headers)

    @property
    def has_cors(self) -> bool:
        return bool(self.access_control_allow_credentials or self.access_control_allow_headers
                     or self.access_control_allow_methods or self.access_control_allow_origin_list
                     or self.access_control_allow_origin_list_regex
                     or self.access_control_expose_headers
                     or self.access_control_max_age is not None or self.add_vary_header)

    @property
    def has_security(self) -> bool:
        return bool(self.allowed_hosts or self.hosts_proxy_headers or self.ssl_redirect
                    or self.ssl_temporary_redirect or self.ssl_force_host or self.ssl_host
                    or self.ssl_proxy_headers or self.sts_seconds is not None
                    or self.sts_include_subdomains or self.sts_preload or self.force_sts_header
                    or self.frame_deny or self.custom_frame_options_value
                    or self.content_type_nosniff or self.browser_xss_filter
                    or self.custom_browser_xss_value or self.content_security_policy
                    or self.content_security_policy_report_only or self.public_key
                    or self.referrer_policy or self.feature_policy or self.permissions_policy
                    or self.is_development)


def canonical_name(name: bytes) -> bytes:
    """Go's CanonicalMIMEHeaderKey: ``x-xss-protection`` -> ``X-Xss-Protection``.

    A name with a byte that is not a token character is left as it is, as Go does.
    """
    if not _TOKEN.fullmatch(name):
        return name
    return b"-".join(part[:1].upper() + part[1:].lower() for part in name.split(b"-"))


def field_value(text: str) -> bytes:
    """A configured value as Go writes it: CR and LF become spaces, outer white space goes."""
    return text.replace("\r", " ").replace("\n", " ").strip(" \t").encode("utf-8")


def _field_name(key: str, where: str) -> bytes:
    name = key.encode("utf-8")
    if not _TOKEN.fullmatch(name):
        raise MiddlewareError(f'{where}: "{key}" is not a valid header field name '
                              "(letters, digits and !#$%&'*+-.^_`|~ only)")
    return name


FieldEdit = tuple[bytes, bytes, bytes | None]  # (lower-case name, canonical name, value or None)


class FieldEdits:
    """Go's ``Header.Set`` (``Del`` for a None value) of several fields, in one pass over a head.

    Of edits naming the same field the last wins, as a Go map key would.
    """

    __slots__ = ("added", "names", "sizes")

    def __init__(self, edits: Iterable[FieldEdit]) -> None:
        last = {lower: (spelling, value) for lower, spelling, value in edits}
        self.names = frozenset(last)
        # Lengths first: most fields of a head are not edited, and len() is cheaper than lower().
        self.sizes = frozenset(map(len, last))
        self.added = [(spelling, value) for spelling, value in last.values() if value is not None]

    def __bool__(self) -> bool:
        return bool(self.names)

    def apply(self, headers: Headers) -> None:
        names, sizes = self.names, self.sizes
        for name, _ in headers:
            if len(name) in sizes and name.lower() in names:
                # A new list only when a field goes: setting a field the head lacks is the rule.
                headers[:] = [pair for pair in headers if pair[0].lower() not in names]
                break
        headers.extend(self.added)


def apply_edits(headers: Headers, edits: FieldEdits) -> None:
    """``edits`` applied to ``headers`` (the shape EditedHead calls)."""
    edits.apply(headers)


# -- request edits --------------------------------------------------------------------------------

def _request_edits(fields: Mapping[str, str]) -> tuple[FieldEdits, bool | None]:
    """Traefik's edits of ``customRequestHeaders``, one after the other, as one FieldEdits, and
    what they leave the proxy's X-Forwarded-For at (None: as it was)."""
    edits: dict[bytes, FieldEdit] = {}
    forward_client: bool | None = None
    for key, text in fields.items():
        name = _field_name(key, "customRequestHeaders")
        lower, value = name.lower(), field_value(text)
        if lower == b"host":
            if not value:
                continue  # Go keeps the Host apart from the fields: deleting it does nothing
            edit: FieldEdit = (lower, b"Host", value)
        elif not text:
            edit = (lower, name, None)
            if key == "X-Forwarded-For":
                # Only the exact spelling means "send no X-Forwarded-For at all" to Go's proxy.
                forward_client = False
        else:
            edit = (lower, canonical_name(name), value)
            if lower == b"x-forwarded-for":
                forward_client = True  # a value again: the proxy appends the client
        # A later edit of the same field undoes an earlier one and is placed where it ran.
        edits.pop(lower, None)
        edits[lower] = edit
    return FieldEdits(edits.values()), forward_client


# -- CORS -----------------------------------------------------------------------------------------


class CORSPolicy:
    """The ``accessControl*`` options, ready to answer a preflight and decorate responses."""

    __slots__ = ("allow_headers", "allow_methods", "credentials", "echo_request_headers",
                 "echo_request_method", "expose_headers", "max_age", "origin_regexes", "origins",
                 "vary")

    def __init__(self, options: HeadersOptions) -> None:
        credentials = self.credentials = options.access_control_allow_credentials
        allow_headers = options.access_control_allow_headers
        allow_methods = options.access_control_allow_methods
        expose = options.access_control_expose_headers
        # With credentials a wildcard is not allowed by browsers: Traefik echoes the request.
        self.echo_request_headers = credentials and "*" in allow_headers
        self.echo_request_method = credentials and "*" in allow_methods
        self.allow_headers = field_value(",".join(allow_headers)) if allow_headers else None
        self.allow_methods = field_value(",".join(allow_methods)) if allow_methods else None
        self.expose_headers = (field_value(",".join(expose))
                               if expose and not (credentials and "*" in expose) else None)
        self.max_age = (str(options.access_control_max_age).encode("ascii")
                        if options.access_control_max_age is not None else None)
        self.origins = [origin.encode("utf-8") for origin in options.access_control_allow_origin_list]
        regexes = []
        for pattern in options.access_control_allow_origin_list_regex:
            try:
                regexes.append(GoRegexp(pattern))
            except ValueError as exc:
                raise MiddlewareError(f"error occurred during origin parsing: {exc}") from None
        self.origin_regexes = regexes
        self.vary = options.add_vary_header

    def allowed_origin(self, origin: bytes) -> bytes | None:
        """The Access-Control-Allow-Origin value for ``origin`` (None: not allowed)."""
        for item in self.origins:
            if item == origin:
                return item
            if item == b"*":
                return origin if self.credentials else item
        for regex in self.origin_regexes:
            if regex.matches(origin):
                return origin
        return None

    def preflight(self, exchange: Exchange) -> bool:
        """Answer ``exchange`` if it is a CORS preflight; whether it was one."""
        request = exchange.request
        if request.method != b"OPTIONS":
            return False
        fields = request.headers
        method, origin = fields.get(b"access-control-request-method"), fields.get(b"origin")
        if not method or not origin:
            return False
        answer = Headers()
        if self.credentials:
            answer.append((b"Access-Control-Allow-Credentials", b"true"))
        if self.echo_request_headers:
            asked = fields.get(b"access-control-request-headers")
            if asked:
                answer.append((b"Access-Control-Allow-Headers", asked))
        elif self.allow_headers is not None:
            answer.append((b"Access-Control-Allow-Headers", self.allow_headers))
        if self.echo_request_method:
            answer.append((b"Access-Control-Allow-Methods", method))
        elif self.allow_methods is not None:
            answer.append((b"Access-Control-Allow-Methods", self.allow_methods))
        allowed = self.allowed_origin(origin)
        if allowed is not None:
            answer.append((b"Access-Control-Allow-Origin", allowed))
        if self.max_age is not None:
            answer.append((b"Access-Control-Max-Age", self.max_age))
        if self.expose_headers is not None:
            answer.append((b"Access-Control-Expose-Headers", self.expose_headers))
        exchange.respond(200, answer, b"")
        return True

    def decorate(self, headers: Headers, request: RequestHead) -> None:
        """The CORS fields of an ordinary response (after the custom response fields)."""
        allowed = self.allowed_origin(request.headers.get(b"origin") or b"")
        if allowed is not None:
            headers.set(b"access-control-allow-origin", allowed, b"Access-Control-Allow-Origin")
        if self.credentials:
            headers.set(b"access-control-allow-credentials", b"true",
                        b"Access-Control-Allow-Credentials")
        if self.expose_headers is not None:
            headers.set(b"access-control-expose-headers", self.expose_headers,
                        b"Access-Control-Expose-Headers")
        if self.vary:
            vary = headers.get(b"vary")
            if vary != b"Origin":
                headers.set(b"vary", vary + b",Origin" if vary else b"Origin", b"Vary")


# -- the handler ----------------------------------------------------------------------------------


class CustomHeaders:
    """Handler: answers CORS preflights, edits the request's fields, then every response's."""

    __slots__ = ("cors", "edits_response", "forward_client", "next", "request_edits",
                 "response_edits")

    def __init__(self, request_edits: FieldEdits, forward_client: bool | None,
                 response_edits: FieldEdits, cors: CORSPolicy | None,
                 next_handler: Handler) -> None:
        self.request_edits = request_edits if request_edits else None
        self.forward_client = forward_client
        self.response_edits = response_edits
        self.edits_response = bool(response_edits) or cors is not None
        self.cors = cors
        self.next = next_handler

    def handle(self, exchange: Exchange) -> None:
        cors = self.cors
        if cors is not None and cors.preflight(exchange):
            return
        request_edits = self.request_edits
        if request_edits is not None:
            request_edits.apply(exchange.request.headers)
            if self.forward_client is not None:
                exchange.forward_client = self.forward_client
        if self.edits_response:
            exchange.writer = EditedHead(exchange.writer, self.edit_response, exchange.request)
        self.next.handle(exchange)

    def edit_response(self, headers: Headers, request: RequestHead) -> None:
        self.response_edits.apply(headers)
        if self.cors is not None:
            self.cors.decorate(headers, request)


class EditedHead(Generic[T]):
    """ResponseWriter: ``edit(fields, argument)`` changes the head's fields (not a 1xx head's);
    the body passes as it is."""

    __slots__ = ("_argument", "_edit", "_next")

    def __init__(self, next_writer: ResponseWriter, edit: Callable[[Headers, T], None],
                 argument: T) -> None:
        self._next = next_writer
        self._edit = edit
        self._argument = argument

    def start(self, head: ResponseHead) -> None:
        if head.status >= 200:
            self._edit(head.headers, self._argument)
        self._next.start(head)

    def write(self, chunk: bytes) -> None:
        self._next.write(chunk)

    def end(self) -> None:
        self._next.end()

    def abort(self) -> None:
        self._next.abort()


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    from switchyard.http.middlewares.headers_security import SecurityPolicy

    config = parse_options(HeadersOptions, options)
    security, custom, cors = config.has_security, config.has_custom, config.has_cors
    if not (security or custom or cors):
        raise MiddlewareError("headers configuration not valid")
    deprecated = [key for key in _DEPRECATED if getattr(config, _attribute(key)) is not None]
    if deprecated:
        log.warning('middleware "%s": %s deprecated in Traefik v3 and ignored (use '
                    "redirectScheme or redirectRegex, and permissionsPolicy)", context.name,
                    ", ".join(deprecated) + (" is" if len(deprecated) == 1 else " are"))
    policy = SecurityPolicy(config) if security else None
    request_edits, forward_client = _request_edits(config.custom_request_headers)
    response_edits = FieldEdits(_response_edits(config.custom_response_headers))
    cors_policy = CORSPolicy(config) if cors else None

    def wrap(next_handler: Handler) -> Handler:
        handler = policy.handler(next_handler) if policy is not None else next_handler
        if custom or cors:
            handler = CustomHeaders(request_edits, forward_client, response_edits, cors_policy,
                                    handler)
        return handler

    return wrap


def _response_edits(fields: Mapping[str, str]) -> Iterator[FieldEdit]:
    for key, text in fields.items():
        name = _field_name(key, "customResponseHeaders")
        yield name.lower(), canonical_name(name), field_value(text) if text else None


def _attribute(alias: str) -> str:
    return re.sub(r"[A-Z]", lambda match: "_" + match.group().lower(), alias)
