"""What HTTP rules see of a request, derived from its fields the way Traefik and Go's net/http do."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from switchyard.gourl import ALNUM, HEX, HEX_DIGITS, UNRESERVED, URLPath, join_path, unescape

__all__ = [
    "Headers",
    "RequestMeta",
    "canonical_header_key",
    "canonical_host",
    "entrypoint_path",
    "go_trim_space",
    "is_header_token",
    "parse_query",
    "routing_path",
    "split_host_port",
]

_UNSET = object()
# Go's url.ParseQuery gives up (an empty result) at this many '&' (urlmaxqueryparams).
MAX_QUERY_SEPARATORS = 10_000

# Traefik's muxer keeps these %XX forms encoded in the routing path (reserved characters and
# '%' itself); only the upper-case spelling, as the entry point has upper-cased them already.
_KEPT_ENCODED = frozenset(
    b"%" + bytes([HEX[c >> 4], HEX[c & 15]]) for c in b":/?#[]@!$&'()*+,;=%"
)
# Go's token characters (RFC 7230): a header name made of anything else is left as it is by
# CanonicalHeaderKey, and Go's server refuses such a header, so no request carries it.
_TOKEN = ALNUM | frozenset(b"!#$%&'*+-.^_`|~")
# unicode.IsSpace, which Go's strings.TrimSpace trims.
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
_GO_SPACE += "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
# The few runes Go's ToLower maps into ASCII where Python's lower() does not.
_GO_LOWER = str.maketrans({"\u0130": "i", "\u212a": "k"})


def _to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _to_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def go_lower(text: str) -> str:
    """Go's strings.ToLower for the texts rules compare (rune by rune, never longer)."""
    if text.isascii():
        return text.lower()
    return "".join(c if len(low := c.lower()) != 1 else low for c in text.translate(_GO_LOWER))


def go_trim_space(text: str) -> str:
    """Go's strings.TrimSpace (white space as unicode.IsSpace has it)."""
    return text.strip(_GO_SPACE)


def split_host_port(hostport: str) -> tuple[str, str]:
    """Go's net.SplitHostPort; ValueError with Go's reason when ``hostport`` has no port."""
    colon = hostport.rfind(":")
    if colon < 0:
        raise ValueError("missing port in address")
    start, end = 0, 0
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise ValueError("missing ']' in address")
        if close + 1 == len(hostport):
            raise ValueError("missing port in address")
        if close + 1 != colon:
            if hostport[close + 1] == ":":
                raise ValueError("too many colons in address")
            raise ValueError("missing port in address")
        host = hostport[1:close]
        start, end = 1, close + 1
    else:
        host = hostport[:colon]
        if ":" in host:
            raise ValueError("too many colons in address")
    if "[" in hostport[start:]:
        raise ValueError("unexpected '[' in address")
    if "]" in hostport[end:]:
        raise ValueError("unexpected ']' in address")
    return host, hostport[colon + 1 :]


def canonical_host(host: str) -> str:
    """The host Traefik matches ``Host`` rules against: port and IPv6 brackets dropped,
    surrounding white space trimmed, lower-cased (its request decorator's canonical host)."""
    if ":" in host:
        try:
            host = split_host_port(host)[0]
        except ValueError:
            if host.startswith("[") and host.endswith("]"):
                host = host[1:-1]
    return go_lower(host.strip(_GO_SPACE))


def is_header_token(name: str) -> bool:
    """Whether ``name`` can name a header field (an HTTP token); Go's server refuses others."""
    data = _to_bytes(name)
    return bool(data) and all(byte in _TOKEN for byte in data)


def canonical_header_key(name: str) -> str:
    """Go's http.CanonicalHeaderKey: ``content-type`` is ``Content-Type``; a name that is not
    an HTTP token comes back unchanged."""
    if not is_header_token(name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


class Headers:
    """A request's header fields: several values per name, names compared without case.

    Built from (name, value) pairs in the order received. As in Go's server, ``Host`` is not
    a header field for rules: it is the request's host (``RequestMeta.host``).
    """

    __slots__ = ("_index", "_pairs")

    def __init__(self, pairs: Iterable[tuple[str, str]] | Mapping[str, str] = ()) -> None:
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        self._pairs = tuple((str(name), str(value)) for name, value in items)
        self._index: dict[str, tuple[str, ...]] | None = None

    def values(self, name: str) -> tuple[str, ...]:
        """Every value of ``name``, in order; empty when the request has none."""
        index = self._index
        if index is None:
            grouped: dict[str, list[str]] = {}
            for key, value in self._pairs:
                grouped.setdefault(key.lower(), []).append(value)
            index = self._index = {key: tuple(found) for key, found in grouped.items()}
        return index.get(name.lower(), ())

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __repr__(self) -> str:
        return f"Headers({list(self._pairs)!r})"


def _normalized_raw(raw: bytes) -> bytes:
    """Traefik's normalizePath on a RawPath: %XX upper-cased, unreserved ones decoded."""
    out = bytearray()
    index = 0
    while index < len(raw):
        byte = raw[index]
        if byte != 0x25:
            out.append(byte)
            index += 1
            continue
        encoded = raw[index : index + 3].upper()
        value = int(encoded[1:], 16)
        if value in UNRESERVED:
            out.append(value)
        else:
            out += encoded
        index += 3
    return bytes(out)


# A path made of these alone, with no empty, '.' or '..' segment, is its own entry point path
# (nothing to unescape, escape or clean): the common case, answered without the general steps.
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9\-._~$&+,/:;=@]*")


def entrypoint_path(target: str, *, sanitize: bool = True) -> str:
    """The escaped path a Traefik entry point hands to its router, from the request target's
    path (without the query): %XX normalized (upper case, unreserved characters decoded) and,
    with ``sanitize`` (entry point ``http.sanitizePath``, on by default), '.', '..' and empty
    segments removed. ValueError for a path Go refuses (a bad %XX escape): answer 400.
    """
    if _PLAIN_PATH.fullmatch(target) and (not sanitize or (
            "//" not in target and "/./" not in target and "/../" not in target
            and not target.endswith(("/.", "/..")))):
        return target
    return general_entrypoint_path(target, sanitize=sanitize)


def general_entrypoint_path(target: str, *, sanitize: bool = True) -> str:
    """entrypoint_path without its shortcut for plain paths (which must give the same text)."""
    url = URLPath.parse(_to_bytes(target))
    if url.raw:
        url.raw = _normalized_raw(url.raw)
    if not sanitize:
        return _to_text(url.escaped())
    # url.URL.JoinPath() with no elements, as Traefik's sanitizePath calls it.
    return _to_text(join_path(url).escaped())


def routing_path(path: str) -> str | None:
    """The path Traefik's HTTP muxer matches ``Path``/``PathPrefix``/``PathRegexp`` against:
    ``path`` (escaped) with %XX decoded except for reserved characters and '%'.

    ``PathPrefix(`/foo bar`)`` matches ``/foo%20bar`` but ``Path(`/a/b`)`` does not match
    ``/a%2Fb``. None for a malformed escape (Traefik answers 400 before routing).
    """
    if "%" not in path:
        return path
    data = _to_bytes(path)
    out = bytearray()
    index = 0
    size = len(data)
    while index < size:
        byte = data[index]
        if byte != 0x25:
            out.append(byte)
            index += 1
            continue
        if index + 2 >= size:
            return None
        encoded = data[index : index + 3]
        if encoded in _KEPT_ENCODED:
            out += encoded
        elif encoded[1] in HEX_DIGITS and encoded[2] in HEX_DIGITS:
            out.append(int(encoded[1:], 16))
        else:
            return None
        index += 3
    return _to_text(bytes(out))


def parse_query(query: str) -> dict[str, tuple[str, ...]]:
    """Go's url.ParseQuery, keeping what it parses: pairs split on '&', then on the first
    '=', '+' and %XX decoded; a pair with ';' or a bad escape is skipped, as are empty ones.

    Traefik's entry point turns ';' into '&' before routing unless ``encodeQuerySemicolons``
    is set; that is the caller's business. At 10,000 separators Go returns nothing at all.
    """
    if query.count("&") >= MAX_QUERY_SEPARATORS:
        return {}
    found: dict[str, list[str]] = {}
    for pair in query.split("&"):
        if not pair or ";" in pair:
            continue
        key, _, value = pair.partition("=")
        try:
            key = _to_text(unescape(_to_bytes(key), plus_is_space=True))
            value = _to_text(unescape(_to_bytes(value), plus_is_space=True))
        except ValueError:
            continue
        found.setdefault(key, []).append(value)
    return {key: tuple(values) for key, values in found.items()}


@dataclass(slots=True, eq=False)
class RequestMeta:
    """What HTTP rules see of one request (Go's http.Request as Traefik's muxer gets it).

    Rules only read it. It is not a frozen dataclass: one is made per request, and a frozen
    dataclass's __init__ pays a call for every field it sets.

    ``host`` is the Host header or HTTP/2 ``:authority`` as received, port included (for an
    absolute-form target, its authority). ``path`` is the escaped path as the entry point hands
    it on (see ``entrypoint_path``), ``query`` the raw query string without '?'. ``method`` is
    as sent (case-sensitive). ``client_ip`` is the peer address as seen, without port (the
    forwarded-headers logic does not apply to rules). Derived fields are computed on first use.
    """

    host: str
    path: str
    method: str = "GET"
    headers: Headers = field(default_factory=Headers)
    query: str = ""
    client_ip: str = ""
    tls: bool = False
    # Caches of the derived fields; a miss is _UNSET (routing_path may be None).
    _host: object = field(default=_UNSET, init=False, repr=False)
    _routing_path: object = field(default=_UNSET, init=False, repr=False)
    _query_params: object = field(default=_UNSET, init=False, repr=False)

    @property
    def canonical_host(self) -> str:
        """``host`` as ``Host`` rules compare it (see ``canonical_host``)."""
        found = self._host
        if found is _UNSET:
            found = canonical_host(self.host)
            self._host = found
        assert isinstance(found, str)
        return found

    @property
    def routing_path(self) -> str | None:
        """``path`` as path rules compare it (see ``routing_path``)."""
        found = self._routing_path
        if found is _UNSET:
            found = routing_path(self.path)
            self._routing_path = found
        assert found is None or isinstance(found, str)
        return found

    @property
    def query_params(self) -> dict[str, tuple[str, ...]]:
        """``query`` as ``Query`` rules see it (see ``parse_query``)."""
        found = self._query_params
        if found is _UNSET:
            found = parse_query(self.query)
            self._query_params = found
        assert isinstance(found, dict)
        return found
