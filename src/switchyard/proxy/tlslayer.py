"""TLS termination as a layer between the client socket and the next stage.

Ciphertext from the client goes in through `receive`; plaintext comes out to
`on_plaintext`. The next stage (the relay) writes plaintext to the layer as if
it were the client's transport, and the layer encrypts it. The bytes peeked
before routing (the ClientHello) are simply the first ones received.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from switchyard.tls.terminator import TLSTerminator


class TLSLayer:
    """One client's TLS session over its transport, with its own handshake deadline."""

    __slots__ = ("_loop", "_on_error", "_on_peer_closed", "_on_plaintext", "_on_ready",
                 "_peer_closed", "_timer", "_tls", "_transport", "closing")

    def __init__(self, transport: asyncio.Transport, context: ssl.SSLContext, *,
                 loop: asyncio.AbstractEventLoop, on_plaintext: Callable[[bytes], None],
                 on_ready: Callable[[], None], on_peer_closed: Callable[[], None],
                 on_error: Callable[[str], None]) -> None:
        self._transport = transport
        self._loop = loop
        self._tls = TLSTerminator(context)
        self._on_plaintext = on_plaintext
        self._on_ready = on_ready
        self._on_peer_closed = on_peer_closed
        self._on_error = on_error
        self._timer: asyncio.TimerHandle | None = None
        self.closing = False  # our close_notify is sent: nothing more may be written
        self._peer_closed = False  # the client's close_notify has been passed on

    @property
    def handshake_done(self) -> bool:
        return self._tls.handshake_done

    @property
    def version(self) -> str:
        return self._tls.version or ""

    @property
    def alpn(self) -> str | None:
        return self._tls.alpn

    @property
    def cipher(self) -> str | None:
        return self._tls.cipher

    @property
    def peer_certificates(self) -> tuple[bytes, ...]:
        return self._tls.peer_certificates

    @property
    def settled(self) -> bool:
        """Handshake done, no close_notify either way: the transport under it may change."""
        return self._tls.handshake_done and not self.closing and not self._peer_closed

    def moved(self, transport: asyncio.Transport) -> None:
        """The client's bytes come and go through `transport` from now on."""
        self._transport = transport

    def start(self, first: bytes, timeout: float, timeout_detail: str) -> None:
        """Begin with the bytes already read; fail with `timeout_detail` if not done in time."""
        if timeout > 0:
            self._timer = self._loop.call_later(
                timeout, self._on_error, timeout_detail)
        self.receive(first)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def receive(self, data: bytes) -> None:
        tls = self._tls
        was_done = tls.handshake_done
        try:
            plaintext, reply = tls.receive(data)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            alert = tls.pending_output()
            if alert:
                self._transport.write(alert)  # tells the client what went wrong
            what = "TLS error" if was_done else "TLS handshake failed"
            self._on_error(f"{what}: {exc}")
            return
        if reply:
            self._transport.write(reply)
        if tls.handshake_done and not was_done:
            self.cancel()
            self._on_ready()
        if plaintext:
            self._on_plaintext(plaintext)
        if tls.peer_closed and not self._peer_closed:
            self._peer_closed = True
            self._on_peer_closed()

    # -- what the next stage writes to, in place of the client's transport ------------

    def write(self, data: bytes) -> None:
        if not self.closing:
            self._transport.write(self._tls.send(data))

    def write_eof(self) -> None:
        """A TLS half-close is our close_notify; the TCP connection stays open."""
        if not self.closing:
            self.closing = True
            self._transport.write(self._tls.close_notify())

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        """Our close_notify (after a completed handshake), then the TCP close."""
        if self._tls.handshake_done:
            self.write_eof()
        self.cancel()
        self._transport.close()

    def abort(self) -> None:
        self.cancel()
        self._transport.abort()

    def is_closing(self) -> bool:
        return self.closing or self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def get_extra_info(self, name: str, default: object = None) -> object:
        # No raw socket: a TLS relay must never be moved to splice.
        return default if name == "socket" else self._transport.get_extra_info(name, default)
