"""The routing decision: a pure function of the compiled table and what the preamble read.

The data plane and `explain` both call `decide` (and `decide_at_accept` for the
early path), so what `explain` answers is what a connection gets.
"""

from __future__ import annotations

import enum
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from switchyard.middlewares.base import Middleware
from switchyard.observability.record import CloseReason
from switchyard.routing.table import HTTPSRoute, Route, RoutingTable
from switchyard.rules import ConnMeta
from switchyard.rules.matchers import ACME_TLS_ALPN
from switchyard.services import Server, ServersTransport, Service
from switchyard.tls.options import refuses_alpn


class ChallengeResponder(Protocol):
    """An ACME resolver as the data plane sees it: the TLS-ALPN-01 answer for a name."""

    def challenge_context(self, server_name: str) -> ssl.SSLContext | None: ...


class Action(enum.Enum):
    FORWARD = "forward"  # dial the picked server and relay
    HTTP = "http"  # hand it to the entry point's HTTP server (`https`: terminate TLS first)
    ACME = "acme"  # answer a TLS-ALPN-01 validation handshake, then close
    REFUSE = "refuse"  # close the connection


# How a decision takes a server from a service for a client IP: `Service.pick` advances
# the balancer (the data plane), `Service.peek` only looks (`explain` on a live instance).
Chooser = Callable[[Service, str], "tuple[Server, ServersTransport] | None"]


def pick(service: Service, client_ip: str) -> tuple[Server, ServersTransport] | None:
    return service.pick(client_ip)


def peek(service: Service, client_ip: str) -> tuple[Server, ServersTransport] | None:
    return service.peek(client_ip)


@dataclass(slots=True, eq=False)
class Decision:
    """What happens to a connection, and why."""

    action: Action
    route: Route | None = None
    reason: CloseReason | None = None  # set when refused
    detail: str = ""
    # Each middleware reached, with its refusal (None: it lets the connection through).
    verdicts: tuple[tuple[Middleware, str | None], ...] = ()
    server: Server | None = None
    transport: ServersTransport | None = None
    acme_context: ssl.SSLContext | None = None
    # Termination: why the client's TLS handshake will fail once the server is
    # dialled (Traefik dials before the handshake, so the backend still sees it).
    handshake_refusal: str = ""
    # True when Switchyard itself must refuse (OpenSSL would go on without ALPN
    # where Go aborts); False when the handshake fails by itself (sniStrict's alert).
    refuse_handshake: bool = False
    https: HTTPSRoute | None = None  # Action.HTTP over TLS: the domain whose options apply


_NO_VERDICTS: tuple[tuple[Middleware, str | None], ...] = ()


def decide_at_accept(table: RoutingTable, client_ip: str,
                     choose: Chooser = pick) -> Decision | None:
    """Route before reading a byte, for server-first protocols; None: peek first.

    Only on entry points with nothing but non-TLS routers, and only when one of
    them matches with no SNI and no ALPN, as Traefik's early path does.
    """
    if not table.early_path:
        return None
    return decide_silent(table, client_ip, choose)


def decide_silent(table: RoutingTable, client_ip: str, choose: Chooser = pick) -> Decision | None:
    """A client that has sent nothing: the non-TLS router matching no SNI and no ALPN, if one
    does (at accept on the early path, or after the entry point's peekTimeout)."""
    meta = ConnMeta(None, (), client_ip, False)  # no SNI, no ALPN, not TLS
    route = table.plain.match(meta)
    return None if route is None else admit(route, meta, choose)


def decide(table: RoutingTable, meta: ConnMeta, *, postgres: bool = False,
           challenges: Sequence[ChallengeResponder] = (), choose: Chooser = pick) -> Decision:
    """Which route takes a peeked connection, whether its middlewares let it in, which server.

    TLS hellos offering `acme-tls/1` are ours to answer when the entry point
    has ACME resolvers (`challenges`), except after a Postgres SSLRequest,
    which only TLS routers may take.
    """
    if meta.tls and challenges and not postgres and ACME_TLS_ALPN in meta.alpn:
        return _acme(meta.sni or "", challenges)
    if not meta.tls:
        route = table.plain.match(meta)
        if route is not None:
            return admit(route, meta, choose)
        if table.serves_http:
            return _HTTP
    elif postgres:
        # After an SSLRequest only TLS routers are consulted: no HTTPS side.
        route = table.tls.match(meta)
        if route is not None:
            return admit(route, meta, choose)
    else:
        return _dispatch_tls(table, meta, choose)
    what = f"TLS (SNI {meta.sni!r})" if meta.tls else "plain TCP"
    return Decision(Action.REFUSE, reason=CloseReason.NO_ROUTE,
                    detail=f"no router matches this {what} connection")


_HTTP = Decision(Action.HTTP)


def _dispatch_tls(table: RoutingTable, meta: ConnMeta, choose: Chooser) -> Decision:
    """Traefik's order for a TLS hello: an HTTPS router's own domain, a TCP router's own
    name, the HTTPS catch-all, the TCP `HostSNI(*)`, then the default HTTPS handler."""
    https = table.https.match(meta) if table.https else None
    if https is not None and not https.rule.is_catch_all:
        return _https(https)
    route = table.tls.match(meta)
    if route is not None and not route.rule.is_catch_all:
        return admit(route, meta, choose)
    if https is not None:
        return _https(https)
    if route is not None:
        return admit(route, meta, choose)
    if table.serves_http and table.default_https is not None:
        return _https(table.default_https)
    return Decision(Action.REFUSE, reason=CloseReason.NO_ROUTE,
                    detail=f"no router matches this TLS (SNI {meta.sni!r}) connection")


def _https(https: HTTPSRoute) -> Decision:
    if https.tls_error:
        return Decision(Action.REFUSE, reason=CloseReason.TLS_CONFIG, detail=https.tls_error,
                        https=https)
    return Decision(Action.HTTP, https=https)


def _acme(server_name: str, challenges: Sequence[ChallengeResponder]) -> Decision:
    for responder in challenges:
        context = responder.challenge_context(server_name)
        if context is not None:
            return Decision(Action.ACME, acme_context=context)
    return Decision(Action.REFUSE, reason=CloseReason.NO_ROUTE,
                    detail=f"acme-tls/1 hello for {server_name!r} with no pending challenge")


def admit(route: Route, meta: ConnMeta, choose: Chooser = pick) -> Decision:
    """A matched route: its TLS options, its middlewares in order, then its service."""
    if route.tls_error:
        return Decision(Action.REFUSE, route, CloseReason.TLS_CONFIG, route.tls_error)
    verdicts = _NO_VERDICTS
    if route.middlewares:
        verdicts, refusal = _verdicts(route.middlewares, meta.client_ip)
        if refusal is not None:
            return Decision(Action.REFUSE, route, CloseReason.REJECTED, refusal, verdicts)
    picked = choose(route.service, meta.client_ip)
    if picked is None:
        return Decision(Action.REFUSE, route, CloseReason.NO_SERVER,
                        f'service "{route.service_name}" has no server available', verdicts)
    server, transport = picked
    decision = Decision(Action.FORWARD, route, verdicts=verdicts, server=server,
                        transport=transport)
    if route.tls_context is not None:
        decision.handshake_refusal, decision.refuse_handshake = handshake_refusal(route, meta)
    return decision


def _verdicts(chain: Sequence[Middleware], client_ip: str
              ) -> tuple[tuple[tuple[Middleware, str | None], ...], str | None]:
    verdicts: list[tuple[Middleware, str | None]] = []
    for middleware in chain:
        refusal = middleware.refusal(client_ip)
        verdicts.append((middleware, refusal))
        if refusal is not None:
            return tuple(verdicts), refusal
    return tuple(verdicts), None


def handshake_refusal(route: Route | HTTPSRoute, meta: ConnMeta) -> tuple[str, bool]:
    """Why terminating TLS for this hello will fail, and whether Switchyard must refuse it."""
    if route.sni_strict and route.certificates is not None and (
            route.certificates.match(meta.sni) is None):
        shown = f"SNI {meta.sni!r}" if meta.sni else "a hello without SNI"
        return f"sniStrict: no certificate matches {shown}", False
    if meta.alpn and refuses_alpn(route.tls_alpn, meta.alpn):
        return ("no ALPN protocol in common with the client "
                f"(client offers {', '.join(meta.alpn)})"), True
    return "", False
