"""The byte relay after ``101 Switching Protocols``: client and backend sockets joined as they are."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

__all__ = ["Endpoint", "Tunnel"]


class Endpoint(Protocol):
    """A transport, or a transport-like wrapper (Switchyard's TLS layer)."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def is_closing(self) -> bool: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None: ...


class _Side(asyncio.Protocol):
    """One socket's protocol in a tunnel: what it reads goes to the other side."""

    __slots__ = ("_eof", "_peer", "_tunnel")

    def __init__(self, tunnel: Tunnel, peer: Endpoint) -> None:
        self._tunnel = tunnel
        self._peer = peer
        self._eof = False

    def data_received(self, data: bytes) -> None:
        self._tunnel.bytes_relayed += len(data)
        self._peer.write(data)

    def eof_received(self) -> bool:
        self._eof = True
        return self._tunnel.side_finished(self._peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._tunnel.close()

    def pause_writing(self) -> None:
        self._peer.pause_reading()

    def resume_writing(self) -> None:
        self._peer.resume_reading()

    @property
    def eof(self) -> bool:
        return self._eof


class Tunnel:
    """Relays both ways until either side closes, passing a half-close on where it can.

    ``on_close`` is called once, when both sockets are closed (the access log line of an
    upgraded request is written then, as Traefik writes it).
    """

    __slots__ = ("_backend", "_client", "_closed", "_on_close", "_sides", "bytes_relayed")

    def __init__(self, client: Endpoint, backend: Endpoint,
                 on_close: Callable[[], None] | None = None) -> None:
        self._client = client
        self._backend = backend
        self._on_close = on_close
        self._closed = False
        self.bytes_relayed = 0
        self._sides = (_Side(self, backend), _Side(self, client))
        client.set_protocol(self._sides[0])
        backend.set_protocol(self._sides[1])

    def start(self, to_backend: bytes, to_client: bytes) -> None:
        """Begin with the bytes each side sent before the switch."""
        if to_client:
            self._client.write(to_client)
        if to_backend:
            self._backend.write(to_backend)

    def side_finished(self, peer: Endpoint) -> bool:
        """One side sent EOF: pass it on (half-close) or close both; True keeps it open."""
        if all(side.eof for side in self._sides):
            self.close()
            return False
        write_eof = getattr(peer, "write_eof", None)
        can_write_eof = getattr(peer, "can_write_eof", None)
        if write_eof is not None and can_write_eof is not None and can_write_eof():
            write_eof()
            return True
        self.close()
        return False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._client.close()
        self._backend.close()
        if self._on_close is not None:
            self._on_close()
