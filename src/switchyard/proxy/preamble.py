"""Sans-IO reader of what a client says before it can be routed: PROXY header, SSLRequest, ClientHello.

Fed the connection's bytes as they arrive, a `Preamble` answers with one event:

* `NEED_MORE`: nothing to do until more bytes come;
* `Reply(data)`: write these bytes to the client (the Postgres `S`, SMTP answers), then
  feed `b""`;
* `Addressed()`: the PROXY header stage is over and `client` / `local` are final, so
  the connection may try to route before reading (server-first protocols); feed
  `b""` to go on peeking;
* `Peeked(...)`: the connection metadata the rules see, and every byte read after the
  PROXY header and the SSLRequest, to be handed whole to whoever takes the connection;
* `Refused(reason, detail)`: close the connection.

No socket anywhere: the unit tests feed it bytes, one at a time if they like.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from switchyard.addresses import peer_address
from switchyard.observability.record import CloseReason
from switchyard.proxy.proxyproto import V1_MAX_LENGTH, V2_SIGNATURE, ProxyKind, read_proxy_header
from switchyard.proxy.smtp import ClientDialogue
from switchyard.rules import ConnMeta
from switchyard.tls.clienthello import ClientHello, ClientHelloReader, HelloKind
from switchyard.tls.postgres import SSL_REQUEST, SSL_REQUEST_REPLY, detect_ssl_request

_V2_FIXED = 16  # signature, version/command, family, length


class NeedMore:
    """Wait for more bytes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_MORE"


NEED_MORE = NeedMore()


@dataclass(frozen=True, slots=True)
class Reply:
    """Bytes to write to the client before reading on."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Addressed:
    """The PROXY header (or its absence) has settled the client and local addresses."""


ADDRESSED = Addressed()


@dataclass(frozen=True, slots=True)
class Peeked:
    """Enough is known to route: the metadata rules see and every byte read so far."""

    meta: ConnMeta
    data: bytes
    hello: ClientHello | None
    postgres: bool
    smtp: bool = False  # the hello came after an SMTP STARTTLS Switchyard answered


@dataclass(frozen=True, slots=True)
class Refused:
    """The connection cannot go on; `detail` says why."""

    reason: CloseReason
    detail: str


Event = NeedMore | Reply | Addressed | Peeked | Refused
_Stage = Callable[["Preamble", bytes], Event]


class Preamble:
    """The first bytes of one connection, read as a state machine.

    ``proxy_trusted`` is None when the entry point takes no PROXY protocol,
    else whether this peer may announce the client address (an untrusted
    peer's header is consumed and ignored, as Traefik does). ``client`` and
    ``local`` start as the socket's addresses (``local`` None: not looked up)
    and change only when a trusted header says so.
    """

    __slots__ = ("_buffer", "_closing", "_first", "_greeted", "_hello", "_postgres", "_smtp", "_starttls",
                 "_step", "_trusted", "client", "local")

    def __init__(self, client: tuple[str, int], proxy_trusted: bool | None = None,
                 smtp: ClientDialogue | None = None) -> None:
        self.client = client
        self.local: tuple[str, int] | None = None
        self._trusted = bool(proxy_trusted)
        self._buffer = bytearray()
        self._hello: ClientHelloReader | None = None  # made when a TLS record starts
        self._postgres = False
        # SMTP STARTTLS entry points: the dialogue comes first, then the ClientHello.
        self._smtp = smtp
        self._greeted = False
        self._starttls = False
        self._closing: Refused | None = None  # said once the last answer is written
        # The stages as plain functions, called with the preamble: a bound method kept on
        # the object would make a cycle, left to the garbage collector once per connection.
        self._first: _Stage = (Preamble._smtp_dialogue if smtp is not None
                               else Preamble._ssl_request)
        self._step: _Stage = Preamble._proxy_header if proxy_trusted is not None else self._first

    @property
    def smtp_helo(self) -> str:
        """The name the client gave in EHLO or HELO ("" without an SMTP dialogue)."""
        return self._smtp.helo if self._smtp is not None else ""

    @property
    def reading_proxy_header(self) -> bool:
        return self._step is Preamble._proxy_header

    @property
    def silent(self) -> bool:
        """Past any PROXY header, the client has sent nothing yet (no SSLRequest either)."""
        return (not self._buffer and not self._postgres and self._smtp is None
                and self._step is not Preamble._proxy_header)

    @property
    def buffered(self) -> bytes:
        """Every byte read after the PROXY header and the SSLRequest."""
        return bytes(self._buffer)

    def feed(self, data: bytes) -> Event:
        if data:
            self._buffer += data
        return self._step(self, data)

    def expire(self) -> Event:
        """The read deadline passed. No PROXY header in time counts as no header."""
        if self._step is Preamble._proxy_header:
            self._step = self._first
            return ADDRESSED
        return Refused(CloseReason.PEEK_TIMEOUT, "timed out waiting for the client's first bytes")

    # -- stages: each takes the bytes just fed (already in the buffer) ----------------

    def _proxy_header(self, data: bytes) -> Event:
        if not self._header_may_be_complete(data):
            return NEED_MORE
        result = read_proxy_header(self._buffer)
        if result.kind is ProxyKind.NEED_MORE:
            return NEED_MORE
        if result.kind is ProxyKind.MALFORMED:
            return Refused(CloseReason.MALFORMED, f"malformed PROXY protocol header: {result.reason}")
        header = result.header
        if header is not None:
            del self._buffer[:header.length]
            if self._trusted and header.source is not None:
                self.client = peer_address(header.source)
                if header.destination is not None:
                    self.local = peer_address(header.destination)
        self._step = self._first
        return ADDRESSED

    def _header_may_be_complete(self, data: bytes) -> bool:
        """Whether reading the header again can tell anything new (linear time when trickled)."""
        buf = self._buffer
        if len(buf) <= len(data) or len(buf) < _V2_FIXED:
            return True  # the first bytes: the signature check refuses non-headers at once
        if buf[:12] == V2_SIGNATURE:
            return len(buf) >= _V2_FIXED + (buf[14] << 8 | buf[15])
        return b"\n" in data or len(buf) >= V1_MAX_LENGTH

    def _smtp_dialogue(self, data: bytes) -> Event:
        """Answer the client's SMTP commands until it asks for STARTTLS."""
        dialogue = self._smtp
        assert dialogue is not None
        said = b""
        if not self._greeted:
            self._greeted = True
            said = dialogue.greeting()
        step = dialogue.feed(bytes(self._buffer))
        self._buffer.clear()
        said += step.answer
        if step.close:
            refusal = Refused(CloseReason.CLIENT_CLOSED if step.close == "the client quit"
                              else CloseReason.MALFORMED, f"SMTP: {step.close}")
            self._closing = refusal
            self._step = Preamble._closed
            return Reply(said) if said else refusal
        if step.starttls:
            self._starttls = True
            self._buffer += step.rest
            self._step = Preamble._client_hello
        return Reply(said) if said else NEED_MORE

    def _ssl_request(self, data: bytes) -> Event:
        if not self._buffer:
            return NEED_MORE
        found = detect_ssl_request(self._buffer)
        if found is None:
            return NEED_MORE  # a prefix of the SSLRequest: wait, as Traefik does
        self._step = Preamble._client_hello
        if not found:
            return self._client_hello(bytes(self._buffer))
        # Postgres STARTTLS: Traefik agrees at once, whatever the route, then reads the hello.
        self._postgres = True
        del self._buffer[:len(SSL_REQUEST)]
        return Reply(SSL_REQUEST_REPLY)

    def _client_hello(self, data: bytes) -> Event:
        if not data:
            data = bytes(self._buffer)  # bytes that came with the SSLRequest
            if not data:
                return NEED_MORE
        if self._hello is None:
            self._hello = ClientHelloReader()
        result = self._hello.feed(data)
        kind = result.kind
        if kind is HelloKind.NEED_MORE:
            return NEED_MORE
        self._step = Preamble._finished
        if kind is HelloKind.MALFORMED:
            return Refused(CloseReason.MALFORMED, f"malformed TLS ClientHello: {result.reason}")
        if kind is HelloKind.HELLO:
            hello = result.hello
            assert hello is not None
            meta = ConnMeta(hello.sni, hello.alpn, self.client[0], True)
            return Peeked(meta, bytes(self._buffer), hello, self._postgres, self._starttls)
        if self._postgres:
            return Refused(CloseReason.MALFORMED,
                           "Postgres SSLRequest not followed by a TLS ClientHello")
        if self._starttls:
            return Refused(CloseReason.MALFORMED, "SMTP STARTTLS not followed by a TLS ClientHello")
        return Peeked(ConnMeta(None, (), self.client[0], False), bytes(self._buffer), None, False)

    def _closed(self, data: bytes) -> Event:
        assert self._closing is not None
        return self._closing

    def _finished(self, data: bytes) -> Event:
        raise RuntimeError("the preamble has already given its verdict")
