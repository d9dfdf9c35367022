"""Set-Cookie values read and written back as Go's net/http does (forwardAuth rewrites them).

Go drops a cookie it cannot read and writes the ones it keeps in its own form: attributes in a
fixed order and spelling (``Path``, ``Domain``, ``Expires``, ``Max-Age``, ``HttpOnly``,
``Secure``, ``SameSite``, ``Partitioned``), unknown attributes left out.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["SetCookie", "read_set_cookie"]

_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_VALUE_BYTES = frozenset(range(0x20, 0x7F)) - frozenset(b'";\\')
_PATH_BYTES = frozenset(range(0x20, 0x7F)) - frozenset(b";")
_DOMAIN = re.compile(rb"\.?([A-Za-z0-9_-]+\.)*[A-Za-z0-9_-]+\.?")
_TIME_FORMATS = ("%a, %d %b %Y %H:%M:%S %Z", "%a, %d-%b-%Y %H:%M:%S %Z")
_SAME_SITE = {b"lax": b"Lax", b"strict": b"Strict", b"none": b"None"}


@dataclass
class SetCookie:
    name: bytes
    value: bytes
    quoted: bool = False
    path: bytes = b""
    domain: bytes = b""
    expires: datetime | None = None
    max_age: int = 0
    http_only: bool = False
    secure: bool = False
    same_site: bytes = b""
    partitioned: bool = False

    def string(self) -> bytes:
        """Go's Cookie.String()."""
        value = self.value
        if self.quoted or b" " in value or b"," in value:
            value = b'"' + value + b'"'
        out = [self.name, b"=", value]
        if self.path:
            out += (b"; Path=", bytes(byte for byte in self.path if byte in _PATH_BYTES))
        if self.domain and _valid_domain(self.domain):
            out += (b"; Domain=", self.domain.removeprefix(b"."))
        if self.expires is not None and self.expires.year >= 1601:
            out += (b"; Expires=", self.expires.strftime("%a, %d %b %Y %H:%M:%S GMT").encode())
        if self.max_age > 0:
            out.append(b"; Max-Age=%d" % self.max_age)
        elif self.max_age < 0:
            out.append(b"; Max-Age=0")
        if self.http_only:
            out.append(b"; HttpOnly")
        if self.secure:
            out.append(b"; Secure")
        if self.same_site:
            out += (b"; SameSite=", self.same_site)
        if self.partitioned:
            out.append(b"; Partitioned")
        return b"".join(out)


def _valid_domain(domain: bytes) -> bool:
    try:
        ipaddress.ip_address(domain.decode("latin-1"))
        return True
    except ValueError:
        pass
    return len(domain) <= 255 and _DOMAIN.fullmatch(domain) is not None


def _cookie_value(raw: bytes, *, allow_quotes: bool) -> tuple[bytes, bool] | None:
    quoted = False
    if allow_quotes and len(raw) > 1 and raw[:1] == b'"' and raw[-1:] == b'"':
        raw, quoted = raw[1:-1], True
    if any(byte not in _VALUE_BYTES for byte in raw):
        return None
    return raw, quoted


def read_set_cookie(line: bytes) -> SetCookie | None:
    """One Set-Cookie value as Go's readSetCookies reads it; None when Go drops it."""
    parts = line.strip(b" \t").split(b";")
    name, equals, raw = parts[0].strip(b" \t").partition(b"=")
    name = name.strip(b" \t")
    if not equals or not name or any(byte not in _TOKEN for byte in name):
        return None
    parsed = _cookie_value(raw, allow_quotes=True)
    if parsed is None:
        return None
    cookie = SetCookie(name, parsed[0], parsed[1])
    for part in parts[1:]:
        part = part.strip(b" \t")
        if not part:
            continue
        attribute, _, raw_value = part.partition(b"=")
        if not attribute.isascii():
            continue
        attribute = attribute.lower()
        value_read = _cookie_value(raw_value, allow_quotes=False)
        if value_read is None:
            continue
        value = value_read[0]
        if attribute == b"samesite":
            cookie.same_site = _SAME_SITE.get(value.lower(), b"")
        elif attribute == b"secure":
            cookie.secure = True
        elif attribute == b"httponly":
            cookie.http_only = True
        elif attribute == b"domain":
            cookie.domain = value
        elif attribute == b"max-age":
            if value.lstrip(b"-").isdigit() and not (value[:1] == b"0" and value.strip(b"0")):
                seconds = int(value)
                cookie.max_age = seconds if seconds > 0 else -1
        elif attribute == b"expires":
            cookie.expires = _expires(value)
        elif attribute == b"path":
            cookie.path = value
        elif attribute == b"partitioned":
            cookie.partitioned = True
    return cookie


def _expires(value: bytes) -> datetime | None:
    text = value.decode("latin-1")
    for layout in _TIME_FORMATS:
        try:
            return datetime.strptime(text, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None
