"""Request and response heads as the engine passes them along: raw bytes, case-insensitive lookups.

Header names keep the spelling they arrived with and values stay bytes (latin-1 on the wire): a
proxy mostly passes them on, so nothing is decoded that nobody reads. Lookups take the lower-case
name as bytes, e.g. ``head.headers.get(b"host")``.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

__all__ = [
    "Headers",
    "RequestHead",
    "ResponseHead",
    "canonical_name",
    "date_value",
    "reason",
    "status_line",
]


class Headers(list[tuple[bytes, bytes]]):
    """Header fields in order; a plain list of ``(name, value)`` pairs with lookups by name.

    Every ``name`` argument is the lower-case field name (``b"x-forwarded-for"``).
    """

    __slots__ = ()

    def get(self, name: bytes) -> bytes | None:
        """The first value of ``name``, or None (Go's ``Header.Get``, but None for absent)."""
        for field, value in self:
            if len(field) == len(name) and field.lower() == name:
                return value
        return None

    def values(self, name: bytes) -> list[bytes]:
        """Every value of ``name``, in order."""
        return [value for field, value in self if len(field) == len(name) and field.lower() == name]

    def remove(self, name: bytes) -> None:  # type: ignore[override]
        """Drop every field called ``name`` (no error when there is none)."""
        size = len(name)
        for field, _ in self:
            if len(field) == size and field.lower() == name:
                break
        else:
            return  # the usual case for a middleware's edit: nothing to drop, no new list
        self[:] = [pair for pair in self if len(pair[0]) != size or pair[0].lower() != name]

    def set(self, name: bytes, value: bytes, spelling: bytes | None = None) -> None:
        """Replace every field called ``name`` by one, appended under ``spelling`` (default: name)."""
        self.remove(name)
        self.append((spelling or name, value))

    def has_token(self, name: bytes, token: bytes) -> bool:
        """Whether a comma-separated value of ``name`` lists ``token`` (case-insensitive)."""
        for value in self.values(name):
            for part in value.split(b","):
                if part.strip().lower() == token:
                    return True
        return False

    def copy(self) -> Headers:
        return Headers(self)


class RequestHead:
    """Request line and header fields of one request; middlewares may change any of them.

    ``target`` is the request-target as sent (``/path?query``, or absolute form). ``version`` is
    ``b"1.1"`` or ``b"1.0"``. ``host`` is the Host header decoded (empty when there is none).
    """

    __slots__ = ("headers", "method", "target", "version")

    def __init__(self, method: bytes, target: bytes, version: bytes, headers: Headers) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers

    @property
    def host(self) -> str:
        value = self.headers.get(b"host")
        return "" if value is None else value.decode("latin-1")

    @property
    def path(self) -> str:
        """The path part of the target, still percent-encoded (absolute-form target reduced)."""
        return split_target(self.target)[0].decode("latin-1")

    @property
    def query(self) -> str:
        """The raw query after ``?`` (empty when there is none)."""
        return split_target(self.target)[1].decode("latin-1")

    @property
    def raw_path(self) -> bytes:
        """The path part of the target as bytes, still percent-encoded."""
        return split_target(self.target)[0]

    @property
    def raw_query(self) -> bytes:
        return split_target(self.target)[1]

    def set_path(self, path: bytes) -> None:
        """Replace the path (percent-encoded bytes), keeping the query; the target becomes
        origin-form."""
        query = split_target(self.target)[1]
        self.target = path + b"?" + query if query or b"?" in self.target else path

    def __repr__(self) -> str:
        return f"RequestHead({self.method!r}, {self.target!r}, {self.version!r})"


class ResponseHead:
    """Status and header fields of a response; the reason phrase is always Go's for the code."""

    __slots__ = ("headers", "status")

    def __init__(self, status: int, headers: Headers) -> None:
        self.status = status
        self.headers = headers

    def __repr__(self) -> str:
        return f"ResponseHead({self.status})"


_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                   b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def canonical_name(name: bytes) -> bytes:
    """A field name as Go's header map spells it (``grpc-status`` -> ``Grpc-Status``): what an
    HTTP/1.1 client of Traefik sees for a name that arrived in lower case over HTTP/2. A name
    with a byte outside the token set stays as it is, as in Go."""
    if not name or not _TOKEN.issuperset(name):
        return name
    return b"-".join(part[:1].upper() + part[1:].lower() for part in name.split(b"-"))


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """``(path, query)`` of a request-target; an absolute-form target loses scheme and authority."""
    if target[:1] != b"/" and b"://" in target[:10]:
        rest = target.partition(b"://")[2]
        slash = rest.find(b"/")
        query_at = rest.find(b"?")
        if slash < 0 or 0 <= query_at < slash:
            target = b"/" + rest[query_at:] if query_at >= 0 else b"/"
        else:
            target = rest[slash:]
    path, _, query = target.partition(b"?")
    return path, query


# Go's http.StatusText where it differs from Python's phrases; Go writes its own phrase on the
# status line whatever the backend sent.
_GO_REASONS = {
    418: "I'm a teapot",
    422: "Unprocessable Entity",
    425: "Too Early",
}


def reason(status: int) -> str:
    """Go's status text for ``status`` (``""`` for a code Go does not know)."""
    if status in _GO_REASONS:
        return _GO_REASONS[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


_STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <code> <text>\\r\\n`` as Go's server writes it (cached per code)."""
    line = _STATUS_LINES.get(status)
    if line is None:
        text = reason(status) or f"status code {status}"
        line = f"HTTP/1.1 {status:03d} {text}\r\n".encode("latin-1")
        if 100 <= status <= 999:
            _STATUS_LINES[status] = line
    return line


_date_cache: list[object] = [0, b""]


def date_value() -> bytes:
    """The current ``Date`` header value (IMF-fixdate), recomputed once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode("ascii")
    value = _date_cache[1]
    assert isinstance(value, bytes)
    return value
