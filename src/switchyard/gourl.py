"""Go's net/url as Traefik's HTTP code relies on it: escaping, the Path/RawPath pair, Parse, String.

Traefik's path and redirect middlewares work on a request's ``url.URL`` and its RequestURI;
what reaches a backend or a client's Location header is what these functions compute. Every
text here is bytes (Go strings are bytes); errors are ValueError with Go's wording.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "GoURL",
    "URLPath",
    "clean_path",
    "escape_path",
    "join_path",
    "parse_url",
    "unescape",
]

HEX = b"0123456789ABCDEF"
HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
ALNUM = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
# RFC 3986 unreserved characters.
UNRESERVED = frozenset(b"-._~") | ALNUM
# shouldEscape(c, encodePath) is false for these.
_PATH_SAFE = UNRESERVED | frozenset(b"$&+,/:;=@")
# validEncoded(s, encodePath) also lets these sub-delimiters stand unescaped.
_PATH_VALID = _PATH_SAFE | frozenset(b"!'()*[]%")
# shouldEscape(c, encodeFragment) is false for these.
_FRAGMENT_SAFE = UNRESERVED | frozenset(b"$&+,/:;=?@!()*")
_FRAGMENT_VALID = _FRAGMENT_SAFE | frozenset(b"'[]%")
# shouldEscape(c, encodeHost) is false for these; a host made of anything else ASCII is refused.
_HOST_SAFE = UNRESERVED | frozenset(b"!$&'()*+,;=:[]<>\"")
# shouldEscape(c, encodeUserPassword) is false for these.
_USER_SAFE = UNRESERVED | frozenset(b"$&+,;=")
# What url.Parse accepts unescaped in userinfo (validUserinfo).
_USERINFO_VALID = UNRESERVED | frozenset(b"$&'()*+,;=:!@%")
_SCHEME_FIRST = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_SCHEME_REST = frozenset(b"0123456789+-.")


def _quote(data: bytes) -> str:
    """Go's strconv.Quote of a short text, for error messages."""
    text = data.decode("utf-8", "replace").replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def unescape(data: bytes, *, plus_is_space: bool = False, host: bool = False) -> bytes:
    """Go's url unescape: ``%XX`` decoded; ``plus_is_space`` for query components; ``host``
    refuses the ASCII characters a host cannot carry, as url.Parse does."""
    if b"%" not in data and not (plus_is_space and b"+" in data) and not host:
        return data
    out = bytearray()
    index = 0
    size = len(data)
    while index < size:
        byte = data[index]
        if byte == 0x25:  # '%'
            if (index + 2 >= size or data[index + 1] not in HEX_DIGITS
                    or data[index + 2] not in HEX_DIGITS):
                raise ValueError(f"invalid URL escape {_quote(data[index:index + 3])}")
            if host and int(data[index + 1:index + 2], 16) < 8 and data[index:index + 3] != b"%25":
                raise ValueError(f"invalid URL escape {_quote(data[index:index + 3])}")
            out.append(int(data[index + 1:index + 3], 16))
            index += 3
            continue
        if host and byte < 0x80 and byte not in _HOST_SAFE:
            raise ValueError(f"invalid character {_quote(bytes([byte]))} in host name")
        out.append(0x20 if plus_is_space and byte == 0x2B else byte)
        index += 1
    return bytes(out)


def _escape(data: bytes, safe: frozenset[int]) -> bytes:
    if all(byte in safe for byte in data):
        return data
    out = bytearray()
    for byte in data:
        if byte in safe:
            out.append(byte)
        else:
            out += b"%" + bytes((HEX[byte >> 4], HEX[byte & 15]))
    return bytes(out)


def escape_path(data: bytes) -> bytes:
    """Go's url escape in path mode: upper-case %XX for every byte a path cannot carry."""
    return _escape(data, _PATH_SAFE)


def _escaped_form(decoded: bytes, raw: bytes, safe: frozenset[int], valid: frozenset[int], *,
                  star: bool = False) -> bytes:
    """EscapedPath/EscapedFragment: the raw form when it is a valid spelling of the decoded one
    (``star``: a decoded ``*`` otherwise stays ``*``, as paths do)."""
    if raw and all(byte in valid for byte in raw):
        try:
            if unescape(raw) == decoded:
                return raw
        except ValueError:
            pass
    if star and decoded == b"*":
        return b"*"
    return _escape(decoded, safe)


@dataclass(slots=True)
class URLPath:
    """The (Path, RawPath) pair of a Go url.URL, which decides its EscapedPath()."""

    path: bytes
    raw: bytes = b""

    @classmethod
    def parse(cls, escaped: bytes) -> URLPath:
        """url.URL.setPath: RawPath is kept only when it differs from the default encoding.
        ValueError for a bad %XX escape."""
        path = unescape(escaped)
        return cls(path, b"" if escape_path(path) == escaped else escaped)

    def escaped(self) -> bytes:
        """url.URL.EscapedPath()."""
        return _escaped_form(self.path, self.raw, _PATH_SAFE, _PATH_VALID, star=True)


def clean_path(path: bytes) -> bytes:
    """Go's path.Clean for a rooted path: no empty, '.' or '..' segments, no trailing '/'."""
    kept: list[bytes] = []
    for segment in path.split(b"/"):
        if segment in (b"", b"."):
            continue
        if segment == b"..":
            if kept:
                kept.pop()
            continue
        kept.append(segment)
    return b"/" + b"/".join(kept)


def join_path(url: URLPath) -> URLPath:
    """``url.JoinPath()`` with no elements: the escaped path cleaned (one trailing '/' kept)."""
    escaped = url.escaped()
    if escaped.startswith(b"/"):
        cleaned = clean_path(escaped)
    else:
        cleaned = clean_path(b"/" + escaped)[1:]
    if escaped.endswith(b"/") and not cleaned.endswith(b"/"):
        cleaned += b"/"
    return URLPath.parse(cleaned)


@dataclass(slots=True)
class GoURL:
    """The parts of a url.URL that url.Parse fills and String() writes back."""

    scheme: bytes = b""
    opaque: bytes = b""
    user: bytes | None = None  # userinfo as written (escaped), None when absent
    host: bytes = b""
    path: URLPath | None = None
    force_query: bool = False
    raw_query: bytes = b""
    fragment: bytes = b""
    raw_fragment: bytes = b""
    omit_host: bool = False

    def escaped_path(self) -> bytes:
        return b"" if self.path is None else self.path.escaped()

    def request_uri(self) -> bytes:
        """url.URL.RequestURI(): the escaped path (``/`` when empty) and the query."""
        result = self.opaque
        if not result:
            result = self.escaped_path() or b"/"
        elif result.startswith(b"//"):
            result = self.scheme + b":" + result
        if self.force_query or self.raw_query:
            result += b"?" + self.raw_query
        return result

    def string(self) -> bytes:
        """url.URL.String()."""
        out = bytearray()
        if self.scheme:
            out += self.scheme + b":"
        if self.opaque:
            out += self.opaque
        else:
            has_authority = bool(self.scheme or self.host) or self.user is not None
            if has_authority and not (self.omit_host and not self.host and self.user is None):
                if self.host or self.path is not None and self.path.path or self.user is not None:
                    out += b"//"
                if self.user is not None:
                    out += self.user + b"@"
                if self.host:
                    out += _escape(self.host, _HOST_SAFE)
            path = self.escaped_path()
            if path and path[:1] != b"/" and self.host:
                out += b"/"
            if not out and b":" in path.partition(b"/")[0]:
                out += b"./"
            out += path
        if self.force_query or self.raw_query:
            out += b"?" + self.raw_query
        if self.fragment:
            out += b"#" + _escaped_form(self.fragment, self.raw_fragment, _FRAGMENT_SAFE,
                                        _FRAGMENT_VALID)
        return bytes(out)


def parse_url(raw: bytes) -> GoURL:
    """Go's url.Parse; ValueError with Go's reason (without its ``parse "..."`` prefix)."""
    rest, hashed, fragment = raw.partition(b"#")
    url = _parse(rest)
    if hashed:
        decoded = unescape(fragment)
        url.fragment = decoded
        url.raw_fragment = b"" if _escape(decoded, _FRAGMENT_SAFE) == fragment else fragment
    return url


def _parse(raw: bytes) -> GoURL:
    if any(byte < 0x20 or byte == 0x7F for byte in raw):
        raise ValueError("net/url: invalid control character in URL")
    url = GoURL()
    if raw == b"*":
        url.path = URLPath(b"*")
        return url
    scheme, rest = _scheme(raw)
    url.scheme = scheme.lower()
    if rest.endswith(b"?") and rest.count(b"?") == 1:
        url.force_query = True
        rest = rest[:-1]
    else:
        rest, _, url.raw_query = rest.partition(b"?")
    if not rest.startswith(b"/"):
        if url.scheme:
            url.opaque = rest
            return url
        if b":" in rest.partition(b"/")[0]:
            raise ValueError("first path segment in URL cannot contain colon")
    if (url.scheme or not rest.startswith(b"///")) and rest.startswith(b"//"):
        authority, slash, path = rest[2:].partition(b"/")
        rest = slash + path
        url.user, url.host = _authority(authority)
    elif url.scheme and rest.startswith(b"/"):
        url.omit_host = True
    url.path = URLPath.parse(rest)
    return url


def _scheme(raw: bytes) -> tuple[bytes, bytes]:
    for index, byte in enumerate(raw):
        if byte in _SCHEME_FIRST:
            continue
        if byte in _SCHEME_REST:
            if index == 0:
                return b"", raw
            continue
        if byte == 0x3A:  # ':'
            if index == 0:
                raise ValueError("missing protocol scheme")
            return raw[:index], raw[index + 1:]
        return b"", raw
    return b"", raw


def _authority(authority: bytes) -> tuple[bytes | None, bytes]:
    at = authority.rfind(b"@")
    host = _host(authority[at + 1:])
    if at < 0:
        return None, host
    userinfo = authority[:at]
    if not all(byte in _USERINFO_VALID for byte in userinfo):
        raise ValueError("net/url: invalid userinfo")
    name, colon, password = userinfo.partition(b":")
    spelled = _escape(unescape(name), _USER_SAFE)
    if colon:
        spelled += b":" + _escape(unescape(password), _USER_SAFE)
    return spelled, host


def _valid_port(colon_port: bytes) -> bool:
    """validOptionalPort: nothing, or ':' and digits (possibly none)."""
    if not colon_port:
        return True
    return colon_port[:1] == b":" and all(0x30 <= byte <= 0x39 for byte in colon_port[1:])


def _host(host: bytes) -> bytes:
    if host.startswith(b"["):
        close = host.rfind(b"]")
        if close < 0:
            raise ValueError("missing ']' in host")
        colon_port = host[close + 1:]
        if not _valid_port(colon_port):
            raise ValueError(f"invalid port {_quote(colon_port)} after host")
        return unescape(host, host=True)
    colon = host.rfind(b":")
    if colon >= 0:
        colon_port = host[colon:]
        if not _valid_port(colon_port):
            raise ValueError(f"invalid port {_quote(colon_port)} after host")
        if b":" in host[:colon]:
            # Recent Go refuses an IPv6 address outside brackets ("::1:8080").
            raise ValueError(f"invalid host {_quote(host)}: IPv6 addresses need brackets")
    return unescape(host, host=True)
