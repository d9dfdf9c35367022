"""Sticky sessions by cookie, as Traefik's balancers keep them: the cookie value names a target."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from switchyard.http.message import Headers, ResponseHead

if TYPE_CHECKING:
    from switchyard.config.http import Cookie
    from switchyard.http.exchange import Exchange
    from switchyard.http.handler import ResponseWriter

__all__ = ["StickyCookie", "StickyTargets", "cookie_name", "cookie_value"]

T = TypeVar("T")

_NAME_LENGTH = 6  # Traefik's generated names: "_" and five hex digits of a SHA-1
_TOKEN = re.compile(r"[!#$%&'*+\-.^`|~0-9A-Za-z]")
_FNV64_OFFSET = 0xCBF29CE484222325
_FNV64_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1


def cookie_name(configured: str, service: str) -> str:
    """The cookie's name: the configured one with non-token characters as ``_``, else derived
    from the service name (``_`` + the start of a SHA-1), as Traefik names it."""
    if configured:
        return "".join(ch if _TOKEN.fullmatch(ch) else "_" for ch in configured)
    digest = hashlib.sha1(("_TRAEFIK_BACKEND_" + service).encode()).hexdigest()
    return ("_" + digest)[:_NAME_LENGTH]


def cookie_value(target: str) -> str:
    """What the cookie holds for a target: the first 16 hex digits of its name's SHA-256."""
    return hashlib.sha256(target.encode()).hexdigest()[:16]


def _fnv1_64(text: str) -> str:
    value = _FNV64_OFFSET
    for byte in text.encode():
        value = ((value * _FNV64_PRIME) & _MASK64) ^ byte
    return format(value, "x")


@dataclass(frozen=True, slots=True)
class StickyCookie:
    """``sticky.cookie`` with the name resolved (see cookie_name)."""

    name: str
    secure: bool = False
    http_only: bool = False
    same_site: str = ""
    max_age: int = 0
    path: str = "/"
    domain: str = ""

    @classmethod
    def from_config(cls, config: Cookie, service: str) -> StickyCookie:
        return cls(cookie_name(config.name, service), config.secure, config.http_only,
                   config.same_site, config.max_age, config.path, config.domain)

    def set_cookie(self, value: str) -> bytes:
        """The ``Set-Cookie`` value, attributes in the order Go writes them."""
        parts = [f"{self.name}={value}"]
        if self.path:
            parts.append(f"Path={self.path}")
        if self.domain:
            parts.append(f"Domain={self.domain.removeprefix('.')}")
        if self.max_age > 0:
            parts.append(f"Max-Age={self.max_age}")
        elif self.max_age < 0:
            parts.append("Max-Age=0")
        if self.http_only:
            parts.append("HttpOnly")
        if self.secure:
            parts.append("Secure")
        same_site = {"none": "None", "lax": "Lax", "strict": "Strict"}.get(self.same_site.lower())
        if same_site:
            parts.append(f"SameSite={same_site}")
        return "; ".join(parts).encode("latin-1")

    def read(self, headers: Headers) -> str | None:
        """The cookie's value in a request's ``Cookie`` fields (the first one), or None."""
        for field in headers.values(b"cookie"):
            for pair in field.decode("latin-1").split(";"):
                name, eq, value = pair.strip().partition("=")
                if eq and name == self.name:
                    if len(value) > 1 and value[0] == value[-1] == '"':
                        value = value[1:-1]
                    return value
        return None


class StickyTargets(Generic[T]):
    """Targets by cookie value; older Traefik cookie values (the raw name, its FNV-1 hash and
    the hash of that hash) are also recognised, and answered with a current cookie."""

    __slots__ = ("_current", "_legacy", "_values", "cookie")

    def __init__(self, cookie: StickyCookie, targets: Iterable[tuple[str, T]]) -> None:
        self.cookie = cookie
        self._current: dict[str, T] = {}
        self._legacy: dict[str, T] = {}
        self._values: dict[int, str] = {}
        for name, target in targets:
            value = cookie_value(name)
            self._current[value] = target
            self._values[id(target)] = value
            hashed = _fnv1_64(name)
            self._legacy.update({name: target, hashed: target, _fnv1_64(hashed): target})

    def lookup(self, headers: Headers) -> tuple[T | None, bool]:
        """The target the request's cookie names, and whether its cookie must be rewritten."""
        value = self.cookie.read(headers)
        if value is None:
            return None, False
        target = self._current.get(value)
        if target is not None:
            return target, False
        target = self._legacy.get(value)
        return target, target is not None

    def stick(self, exchange: Exchange, target: T) -> None:
        """Make the response set the cookie that names ``target``."""
        value = self.cookie.set_cookie(self._values[id(target)])
        exchange.writer = _SettingCookie(exchange.writer, value)


class _SettingCookie:
    """ResponseWriter: adds one ``Set-Cookie`` field to the response head."""

    __slots__ = ("_next", "_value")

    def __init__(self, next_writer: ResponseWriter, value: bytes) -> None:
        self._next = next_writer
        self._value = value

    def start(self, head: ResponseHead) -> None:
        # Go adds it to the header map before the proxy copies the backend's fields in.
        headers = Headers([(b"Set-Cookie", self._value), *head.headers])
        self._next.start(ResponseHead(head.status, headers))

    def write(self, chunk: bytes) -> None:
        self._next.write(chunk)

    def end(self) -> None:
        self._next.end()

    def abort(self) -> None:
        self._next.abort()
