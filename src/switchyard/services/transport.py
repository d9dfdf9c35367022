"""A compiled servers transport: how Switchyard dials a backend."""

from __future__ import annotations

from dataclasses import dataclass

from switchyard.config.dynamic import TransportTLS


@dataclass(frozen=True, slots=True)
class ServersTransport:
    """The dial settings a load balancer's servers share (Traefik's serversTransport)."""

    name: str = "default@internal"
    dial_timeout: float = 30.0
    dial_keep_alive: float = 15.0
    # Traefik documents 100 ms but applies 0 without a transport; we
    # apply the documented value everywhere. Negative: never force-close.
    termination_delay: float = 0.1
    proxy_protocol_version: int = 0
    proxy_protocol_tlvs: tuple[str, ...] = ()  # v2 TLVs to send: alpn, authority, ssl
    tls: TransportTLS | None = None  # for servers with `tls: true`


DEFAULT_TRANSPORT = ServersTransport()
