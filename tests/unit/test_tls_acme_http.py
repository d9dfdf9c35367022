"""The HTTP-01 challenge handler: which requests it takes, and what it answers."""

from __future__ import annotations

import pytest

from switchyard.http.message import Headers, RequestHead
from switchyard.tls.acme_http import ROUTER_NAME, ACMEChallengeHandler, challenge_token

KEY_AUTHORIZATION = b"tok3n.thumbprint"


class PendingChallenges:
    """A resolver with some pending HTTP-01 challenges: (token, name) -> key authorization."""

    def __init__(self, answers: dict[tuple[str, str], bytes]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str]] = []

    def http_challenge_response(self, token: str, host: str) -> bytes | None:
        self.asked.append((token, host))
        return self.answers.get((token, host.partition(":")[0]))


class Exchange:
    """What the handler uses of switchyard.http.exchange.Exchange, recording the response."""

    def __init__(self, target: str, host: str, method: bytes = b"GET") -> None:
        self.request = RequestHead(
            method, target.encode(), b"1.1", Headers([(b"Host", host.encode())])
        )
        self.router = ""
        self.response: tuple[int, list[tuple[bytes, bytes]], bytes] | None = None

    def respond(self, status: int, headers: Headers | None = None, body: bytes = b"") -> None:
        assert self.response is None, "answered twice"
        self.response = (status, list(headers or []), body)


class Routers:
    """The entry point's own handler: what the challenge handler passes other requests to."""

    def __init__(self) -> None:
        self.handled: list[Exchange] = []

    def handle(self, exchange: Exchange) -> None:
        self.handled.append(exchange)
        exchange.respond(200, Headers(), b"routed")


def serve(
    target: str, host: str = "example.com", *resolvers: PendingChallenges
) -> tuple[Exchange, Routers]:
    routers = Routers()
    exchange = Exchange(target, host)
    ACMEChallengeHandler(resolvers, routers).handle(exchange)
    return exchange, routers


@pytest.mark.parametrize(
    ("path", "token"),
    [
        ("/.well-known/acme-challenge/tok3n", "tok3n"),
        ("/.well-known/acme-challenge/tok3n/", "tok3n"),  # one trailing slash is allowed
        ("/.well-known/acme-challenge/tok3n//", "tok3n"),  # the entry point cleans the path
        ("/.well-known/acme-challenge/x/../tok3n", "tok3n"),
        ("//.well-known/acme-challenge/tok3n", "tok3n"),
        ("/%2Ewell-known/acme-challenge/tok%33n", "tok3n"),  # unreserved escapes decoded
        ("/.well-known/acme-challenge/", ""),  # under the path, but no token: 404
        ("/.well-known/acme-challenge/a/b", ""),
        ("/.well-known/acme-challenge/a%2Fb", ""),  # the router keeps %2F; the token has '/'
        ("/.well-known/acme-challenge", None),  # not under the prefix
        ("/.well-known/acme-challenge%2Ftok3n", None),
        ("/.well-known/acme-challenge/../tok3n", None),
        ("/.well-known/acme-challenge/%zz", None),  # refused by the entry point: 400
        ("/", None),
    ],
)
def test_challenge_token_reads_the_path_as_traefik_routes_it(path: str, token: str | None) -> None:
    assert challenge_token(path) == token


def test_pending_token_is_answered_with_its_key_authorization_as_plain_text() -> None:
    resolver = PendingChallenges({("tok3n", "example.com"): KEY_AUTHORIZATION})
    exchange, routers = serve("/.well-known/acme-challenge/tok3n", "example.com:80", resolver)
    assert exchange.response == (
        200,
        [(b"Content-Type", b"text/plain; charset=utf-8")],
        KEY_AUTHORIZATION,
    )
    assert resolver.asked == [("tok3n", "example.com:80")]  # the resolver drops the port
    assert exchange.router == ROUTER_NAME
    assert routers.handled == []


@pytest.mark.parametrize(
    ("target", "host"),
    [
        ("/.well-known/acme-challenge/other", "example.com"),  # unknown token
        ("/.well-known/acme-challenge/tok3n", "other.example.com"),  # another name's token
        ("/.well-known/acme-challenge/", "example.com"),
        ("/.well-known/acme-challenge/tok3n/more", "example.com"),
    ],
)
def test_anything_else_under_the_challenge_path_is_an_empty_404_not_routed(
    target: str, host: str
) -> None:
    resolver = PendingChallenges({("tok3n", "example.com"): KEY_AUTHORIZATION})
    exchange, routers = serve(target, host, resolver)
    assert exchange.response == (404, [], b"")
    assert exchange.router == ROUTER_NAME
    assert routers.handled == []


def test_other_paths_go_to_the_entry_points_routers_untouched() -> None:
    resolver = PendingChallenges({("tok3n", "example.com"): KEY_AUTHORIZATION})
    for target in ("/", "/tok3n", "/.well-known/acme-challenge", "/.well-known/acme-challenge/%zz"):
        exchange, routers = serve(target, "example.com", resolver)
        assert routers.handled == [exchange]
        assert exchange.router == ""
    assert resolver.asked == []


def test_every_resolvers_tokens_are_answered_like_traefiks_shared_challenge_store() -> None:
    first = PendingChallenges({("one", "a.example.com"): b"one.key"})
    second = PendingChallenges({("two", "b.example.com"): b"two.key"})
    exchange, _ = serve("/.well-known/acme-challenge/two", "b.example.com", first, second)
    assert exchange.response is not None
    assert exchange.response[2] == b"two.key"


def test_a_router_name_set_before_is_kept() -> None:
    # The handler behind an allowACMEByPass router (acme-http-bypass@internal in Traefik).
    exchange = Exchange("/.well-known/acme-challenge/x", "example.com")
    exchange.router = "acme-http-bypass@internal"
    ACMEChallengeHandler([], Routers()).handle(exchange)
    assert exchange.router == "acme-http-bypass@internal"
    assert exchange.response == (404, [], b"")
