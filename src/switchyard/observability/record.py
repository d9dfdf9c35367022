"""The record of one connection: what statistics, the access log and the API read."""

from __future__ import annotations

import enum
import itertools
import time
from dataclasses import dataclass, field


class Phase(enum.Enum):
    """Where a connection is; the values are the API's `state` strings."""

    PROXY_HEADER = "proxy-header"
    PEEKING = "peeking"
    DIALING = "dialing"
    RELAYING = "relaying"
    UPGRADING = "upgrading"  # waiting for the transports to drain before splicing
    ACME_CHALLENGE = "acme-challenge"  # answering a TLS-ALPN-01 validation ourselves
    HTTP = "http"  # served by the entry point's HTTP server (requests have their own records)
    CLOSED = "closed"


class CloseReason(enum.Enum):
    """Why a connection ended; the values are the access log's and the metrics' `reason`."""

    NORMAL = "normal"  # both sides finished
    CLIENT_CLOSED = "client_closed"  # the client went away or reset
    BACKEND_CLOSED = "backend_closed"  # the backend closed or reset
    NO_ROUTE = "no_route"
    REJECTED = "rejected"  # a middleware refused it
    NO_SERVER = "no_server"  # the service had no server UP
    DIAL_FAILED = "dial_failed"
    PEEK_TIMEOUT = "peek_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    MAX_DURATION = "max_duration"  # open longer than its router's maxDuration
    ADMIN_CLOSE = "admin_close"  # closed through DELETE /api/tcp/connections
    CONFIG_CHANGED = "config_changed"  # its router's onChange: drain or close on a reload
    TERMINATION_DELAY = "termination_delay"  # the other side did not finish after a half-close
    MALFORMED = "malformed"  # bad ClientHello or PROXY header
    TLS_ERROR = "tls_error"  # TLS termination failed (handshake, client certificate, ALPN...)
    TLS_CONFIG = "tls_config"  # the router's TLS options are broken
    SHUTDOWN = "shutdown"


class Side(enum.Enum):
    """Who ended a connection: the access log's `closed_by`."""

    CLIENT = "client"
    BACKEND = "backend"
    SWITCHYARD = "switchyard"


_IDS = itertools.count(1)


@dataclass(slots=True, eq=False)
class ConnectionRecord:
    """Everything known about one client connection, filled in as it moves through its stages.

    The stages write it; nothing else reads a stage's own state. `closed_by`
    follows from `reason` where the reason names a side; for a normal end it is
    the side that finished sending first.
    """

    entrypoint: str
    # Unique in the process, for the API (DELETE /api/tcp/connections/{id}).
    id: int = field(default_factory=_IDS.__next__)
    client_ip: str = ""
    client_port: int = 0
    started_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.monotonic)
    last_activity: float = field(default_factory=time.monotonic)  # about `started`
    phase: Phase = Phase.PEEKING
    router: str = ""
    service: str = ""
    server: str = ""
    is_tls: bool = False
    postgres: bool = False
    smtp: bool = False  # came through Switchyard's SMTP STARTTLS dialogue
    http: bool = False  # handed to the HTTP server
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    tls_versions: tuple[int, ...] = ()  # offered in the ClientHello
    tls_version: str = ""  # negotiated, when Switchyard terminates
    alpn_negotiated: str | None = None
    bytes_in: int = 0  # client -> backend
    bytes_out: int = 0  # backend -> client
    reason: CloseReason | None = None
    detail: str = ""
    closed_by: Side | None = None
    first_fin: Side | None = None  # who half-closed first

    @property
    def routed(self) -> bool:
        """A server was picked: the router, service and server counters include it."""
        return bool(self.server)

    def finish(self, reason: CloseReason, detail: str, by: Side) -> None:
        """Set why and by whom the connection ended (the first call wins)."""
        if self.reason is not None:
            return
        self.reason = reason
        self.detail = detail
        if reason is CloseReason.NORMAL and self.first_fin is not None:
            by = self.first_fin
        # Reasons that say by themselves who closed: a record never contradicts them. Identity
        # tests, not a dict: an enum member's hash is a Python-level call.
        self.closed_by = (Side.CLIENT if reason is CloseReason.CLIENT_CLOSED
                          else Side.BACKEND if reason is CloseReason.BACKEND_CLOSED else by)
        self.phase = Phase.CLOSED

    def duration(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.started
