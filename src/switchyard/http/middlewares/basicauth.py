"""`basicAuth`: lets through requests whose Basic credentials match an htpasswd user.

Checking a bcrypt hash costs milliseconds of CPU, so it runs on the loop's thread pool (the
bcrypt library releases the GIL) and concurrent checks of the same credentials share one run,
as Traefik's singleflight does. Traefik checks every request afresh; here a successful check is
remembered in a bounded LRU keyed by the stored hash and a keyed digest of the password (never
the password itself), so a keep-alive client does not pay bcrypt on every request. Failures are
never remembered: guessing keeps its full price.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field

from switchyard.config.dynamic import StrList, TraefikModel
from switchyard.http.handler import Handler
from switchyard.http.message import Headers
from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap, parse_options
from switchyard.http.middlewares.htpasswd import (
    UserLine,
    UserLineError,
    inline_lines,
    is_bcrypt,
    parse_basic_users,
    users_file_lines,
    verify,
)

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

__all__ = ["AuthUsersOptions", "authenticated", "basic_credentials", "build", "unauthorized",
           "user_lines"]

DEFAULT_REALM = "traefik"
#: Successful checks remembered per middleware instance (one per router).
VERIFIED_CACHE_SIZE = 1024
_UNAUTHORIZED_BODY = b"401 Unauthorized\n"


class AuthUsersOptions(TraefikModel):
    """The keys basicAuth and digestAuth share."""

    users: StrList = Field(default_factory=list)
    users_file: str = ""
    realm: str = ""
    remove_header: bool = False
    header_field: str = ""


def user_lines(options: AuthUsersOptions) -> list[UserLine]:
    """The users file's entries, then the inline ones (so an inline user overrides the file)."""
    lines: list[UserLine] = []
    if options.users_file:
        path = options.users_file
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as file:
                text = file.read()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise MiddlewareError(f"usersFile {path}: cannot be read ({reason}); give the path "
                                  "of a readable htpasswd file") from None
        lines += users_file_lines(text, path)
    return lines + inline_lines(options.users)


def basic_credentials(authorization: bytes | None) -> tuple[bytes, bytes] | None:
    """``(user, password)`` of a ``Basic`` Authorization value, as Go's Request.BasicAuth reads it."""
    if authorization is None or authorization[:6].lower() != b"basic ":
        return None
    encoded = authorization[6:].replace(b"\r", b"").replace(b"\n", b"")
    try:
        decoded = binascii.a2b_base64(encoded, strict_mode=True)
    except binascii.Error:
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None


def unauthorized(exchange: Exchange, challenge: bytes) -> None:
    """The 401 Traefik's authentication library writes, with ``challenge`` as WWW-Authenticate."""
    exchange.respond(401, Headers([(b"Content-Type", b"text/plain"),
                                   (b"Www-Authenticate", challenge)]), _UNAUTHORIZED_BODY)


def authenticated(exchange: Exchange, user: bytes, header_field: bytes,
                  remove_header: bool) -> None:
    """What both middlewares do to a request they let through: name the user, drop credentials."""
    headers = exchange.request.headers
    if header_field:
        headers.set(header_field.lower(), user, header_field)
    if remove_header:
        headers.remove(b"authorization")


class BasicAuth:
    __slots__ = ("_cache", "_challenge", "_key", "_loop", "_pending", "header_field", "next",
                 "not_found_secret", "remove_header", "users")

    def __init__(self, users: dict[str, str], realm: str, header_field: str, remove_header: bool,
                 next_handler: Handler) -> None:
        self.users = users
        # Unknown users are checked against a real hash too, so their answer takes as long.
        self.not_found_secret = next(iter(users.values()))
        self.header_field = header_field.encode("latin-1")
        self.remove_header = remove_header
        self.next = next_handler
        self._challenge = f'Basic realm="{realm}"'.encode()
        self._key = os.urandom(16)
        self._cache: OrderedDict[tuple[str, bytes], None] = OrderedDict()
        self._pending: dict[tuple[str, bytes], list[Callable[[bool], None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def handle(self, exchange: Exchange) -> None:
        credentials = basic_credentials(exchange.request.headers.get(b"authorization"))
        # Traefik logs the user the credentials name, matched or not ("" without any).
        exchange.client_username = credentials[0].decode("utf-8", "replace") if credentials else ""
        if credentials is None:
            unauthorized(exchange, self._challenge)
            return
        user, password = credentials
        secret = self.users.get(user.decode("utf-8", "surrogateescape"))

        def decided(matched: bool) -> None:
            if exchange.finished:
                return
            if matched and secret is not None:
                authenticated(exchange, user, self.header_field, self.remove_header)
                self.next.handle(exchange)
            else:
                unauthorized(exchange, self._challenge)

        self._check(password, self.not_found_secret if secret is None else secret, decided)

    def _check(self, password: bytes, secret: str, decided: Callable[[bool], None]) -> None:
        key = (secret, hmac.new(self._key, password, hashlib.sha256).digest())
        cache = self._cache
        if key in cache:
            cache.move_to_end(key)
            decided(True)
            return
        if not is_bcrypt(secret):
            matched = verify(password, secret)
            if matched:
                self._remember(key)
            decided(matched)
            return
        waiting = self._pending.get(key)
        if waiting is not None:
            waiting.append(decided)
            return
        self._pending[key] = [decided]
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, verify, password, secret)

        def done(future: asyncio.Future[bool]) -> None:
            matched = not future.cancelled() and future.exception() is None and future.result()
            if matched:
                self._remember(key)
            for callback in self._pending.pop(key, ()):
                callback(matched)

        future.add_done_callback(done)

    def _remember(self, key: tuple[str, bytes]) -> None:
        cache = self._cache
        cache[key] = None
        if len(cache) > VERIFIED_CACHE_SIZE:
            cache.popitem(last=False)


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    config = parse_options(AuthUsersOptions, options)
    try:
        users = parse_basic_users(user_lines(config))
    except UserLineError as exc:
        raise MiddlewareError(str(exc)) from None
    if not users:
        where = config.users_file or "users"
        raise MiddlewareError(f"no users found in {where}; list name:hashed-password entries "
                              "in users or usersFile")
    realm = config.realm or DEFAULT_REALM
    return lambda next_handler: BasicAuth(users, realm, config.header_field,
                                          config.remove_header, next_handler)
