"""`digestAuth`: RFC 2617 Digest authentication (MD5, qop=auth), as Traefik's library does it.

Users are htdigest lines, ``name:realm:md5(name:realm:password)``; only those of the
middleware's realm can log in. Each middleware instance (one per router) has its own opaque
value and remembers the nonces it handed out with the last nonce count seen: an unknown nonce
fails, a repeated count is a replay and fails, a lower count gets a fresh challenge marked
``stale``. Beyond 1100 nonces the 200 least recently used are forgotten, as in Traefik.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from switchyard.gourl import parse_url, unescape
from switchyard.http.handler import Handler
from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap, parse_options
from switchyard.http.middlewares.basicauth import (
    DEFAULT_REALM,
    AuthUsersOptions,
    authenticated,
    unauthorized,
    user_lines,
)
from switchyard.http.middlewares.htpasswd import UserLineError, parse_digest_users
from switchyard.http.responder import http_error

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

__all__ = ["DigestAuth", "MalformedParams", "build", "digest_params", "url_path"]

CLIENT_CACHE_SIZE = 1000
CLIENT_CACHE_TOLERANCE = 100
_HEX = re.compile(r"[0-9a-fA-F]+")


class MalformedParams(ValueError):
    """Parameters Traefik's parser fails on (a value that is one double quote)."""


def _split_list(value: str) -> list[str]:
    """Comma-separated items; commas inside double quotes do not split, ``\\`` escapes in quotes."""
    items: list[str] = []
    current: list[str] = []
    escaped = quoted = False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif quoted:
            if char == "\\":
                escaped = True
            else:
                quoted = char != '"'
                current.append(char)
        elif char == ",":
            items.append("".join(current).strip())
            current = []
        else:
            quoted = char == '"'
            current.append(char)
    last = "".join(current)
    if last:
        items.append(last.strip())
    return items


def digest_params(authorization: str) -> dict[str, str] | None:
    """The parameters of a ``Digest ...`` Authorization value; None for another scheme.

    Quoted values lose their quotes; an item without ``=`` is a key with an empty value. Raises
    MalformedParams where Traefik's parser gives up (its handler then fails the request).
    """
    scheme, space, rest = authorization.partition(" ")
    if not space or scheme != "Digest":
        return None
    params: dict[str, str] = {}
    for item in _split_list(rest.strip()):
        key, equals, value = item.partition("=")
        if not equals:
            params[item] = ""
            continue
        if value == '"':
            raise MalformedParams(f"digest parameter {key!r} is a lone quote")
        if value[:1] == '"' and value[-1:] == '"':
            value = value[1:-1]
        params[key] = value
    return params


def url_path(reference: str) -> bytes | None:
    """The decoded path of a URI reference as Go's url.Parse gives it; None where it fails."""
    try:
        url = parse_url(reference.encode("utf-8", "surrogateescape"))
    except ValueError:
        return None
    return b"" if url.path is None else url.path.path


def _md5_hex(*parts: str) -> str:
    return hashlib.md5(":".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def _random_key() -> str:
    return base64.b64encode(os.urandom(12)).decode("ascii")


class DigestAuth:
    __slots__ = ("_clients", "_opaque", "header_field", "next", "realm", "remove_header",
                 "users")

    def __init__(self, users: dict[str, str], realm: str, header_field: str, remove_header: bool,
                 next_handler: Handler) -> None:
        self.users = users
        self.realm = realm
        self.header_field = header_field.encode("latin-1")
        self.remove_header = remove_header
        self.next = next_handler
        self._opaque = _random_key()
        self._clients: dict[str, list[float]] = {}  # nonce -> [last nonce count, last seen]

    def handle(self, exchange: Exchange) -> None:
        value = exchange.request.headers.get(b"authorization")
        try:
            params = digest_params(value.decode("utf-8", "surrogateescape")) if value else None
        except MalformedParams:
            # Traefik's handler panics here and its recovery answers 500.
            http_error(exchange, 500, "Internal Server Error")
            return
        verdict = self._check(exchange, params) if params is not None else None
        if params is not None and params.get("username"):
            # Traefik logs the user a digest names, whether or not it is let through.
            exchange.client_username = params["username"]
        if isinstance(verdict, str):
            authenticated(exchange, verdict.encode("utf-8", "surrogateescape"),
                          self.header_field, self.remove_header)
            self.next.handle(exchange)
            return
        self._challenge(exchange, stale=verdict is False)

    def _check(self, exchange: Exchange, params: dict[str, str]) -> str | bool | None:
        """The user name when the credentials hold; False when only the nonce count is stale."""
        params.setdefault("algorithm", "MD5")
        if (params.get("opaque", "") != self._opaque or params["algorithm"] != "MD5"
                or params.get("qop") != "auth"):
            return None
        request = exchange.request
        uri = params.get("uri", "")
        if request.target.decode("latin-1") != uri:
            # Traefik accepts a uri whose path is a prefix of the request's path.
            claimed = url_path(uri)
            try:
                path = unescape(request.raw_path)
            except ValueError:
                return None
            if claimed is None or not path.startswith(claimed):
                return None
        username = params.get("username", "")
        ha1 = self.users.get(f"{username}:{self.realm}", "")
        ha2 = _md5_hex(request.method.decode("latin-1"), uri)
        nonce, count, cnonce = params.get("nonce", ""), params.get("nc", ""), params.get("cnonce", "")
        expected = _md5_hex(ha1, nonce, count, cnonce, params["qop"], ha2)
        if not hmac.compare_digest(expected.encode(), params.get("response", "").encode(
                "utf-8", "surrogateescape")):
            return None
        if not _HEX.fullmatch(count) or int(count, 16) >= 1 << 64:
            return None
        client = self._clients.get(nonce)
        if client is None:
            return None
        number, last = int(count, 16), client[0]
        if last:
            if number == last:
                return None  # a replay
            if number < last:
                return False  # out of order: the client may retry without asking the user
        client[0], client[1] = number, time.monotonic()
        return username

    def _challenge(self, exchange: Exchange, *, stale: bool) -> None:
        clients = self._clients
        if len(clients) > CLIENT_CACHE_SIZE + CLIENT_CACHE_TOLERANCE:
            oldest = sorted(clients, key=lambda nonce: clients[nonce][1])
            for nonce in oldest[:CLIENT_CACHE_TOLERANCE * 2]:
                del clients[nonce]
        nonce = _random_key()
        clients[nonce] = [0, time.monotonic()]
        marker = 'stale="true", ' if stale else ""
        challenge = (f'Digest realm="{self.realm}", nonce="{nonce}", opaque="{self._opaque}", '
                     f'{marker}algorithm="MD5", qop="auth"')
        unauthorized(exchange, challenge.encode("utf-8"))


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    config = parse_options(AuthUsersOptions, options)
    try:
        users = parse_digest_users(user_lines(config))
    except UserLineError as exc:
        raise MiddlewareError(str(exc)) from None
    realm = config.realm or DEFAULT_REALM
    return lambda next_handler: DigestAuth(users, realm, config.header_field,
                                           config.remove_header, next_handler)
