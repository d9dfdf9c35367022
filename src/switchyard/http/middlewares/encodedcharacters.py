"""`encodedCharacters`: refuses (400) a request whose path carries a percent-encoded character
that the options do not allow; every ``allow*`` option is false unless set, as in Traefik."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from switchyard.config.dynamic import TraefikModel
from switchyard.http.handler import Handler
from switchyard.http.middlewares.base import MiddlewareContext, Wrap, parse_options

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

__all__ = ["EncodedCharacters", "build", "denied_escapes", "refuses"]


class EncodedCharactersOptions(TraefikModel):
    allow_encoded_slash: bool = False
    allow_encoded_back_slash: bool = False
    allow_encoded_null_character: bool = False
    allow_encoded_semicolon: bool = False
    allow_encoded_percent: bool = False
    allow_encoded_question_mark: bool = False
    allow_encoded_hash: bool = False


def denied_escapes(options: EncodedCharactersOptions) -> frozenset[bytes]:
    """The three-byte escapes refused, in both hex cases where a letter is involved."""
    denied: set[bytes] = set()
    for allowed, escapes in (
        (options.allow_encoded_slash, (b"%2F", b"%2f")),
        (options.allow_encoded_back_slash, (b"%5C", b"%5c")),
        (options.allow_encoded_null_character, (b"%00",)),
        (options.allow_encoded_semicolon, (b"%3B", b"%3b")),
        (options.allow_encoded_percent, (b"%25",)),
        (options.allow_encoded_question_mark, (b"%3F", b"%3f")),
        (options.allow_encoded_hash, (b"%23",)),
    ):
        if not allowed:
            denied.update(escapes)
    return frozenset(denied)


def refuses(path: bytes, denied: frozenset[bytes]) -> bool:
    """Whether Traefik answers 400 for this escaped path: a denied escape, or a ``%`` too close
    to the end to start one."""
    index = path.find(b"%")
    while index >= 0:
        if index + 2 >= len(path) or path[index:index + 3] in denied:
            return True
        index = path.find(b"%", index + 3)
    return False


class EncodedCharacters:
    __slots__ = ("denied", "next")

    def __init__(self, denied: frozenset[bytes], next_handler: Handler) -> None:
        self.denied = denied
        self.next = next_handler

    def handle(self, exchange: Exchange) -> None:
        if self.denied and refuses(exchange.request.raw_path, self.denied):
            exchange.respond(400)
            return
        self.next.handle(exchange)


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    denied = denied_escapes(parse_options(EncodedCharactersOptions, options))
    return lambda next_handler: EncodedCharacters(denied, next_handler)
