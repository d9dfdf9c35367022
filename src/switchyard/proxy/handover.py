"""Handing a connection to a protocol of another kind (the HTTP server), keeping its ownership.

The entry point's `ClientConnection` stays the protocol of the socket: it
passes every event on to its delegate, and what the delegate is given as its
transport is a `HandedTransport`, whose `set_protocol` (a WebSocket upgrade
handing the socket to a tunnel) only changes the delegate. So the connection
still counts, lists and ends every connection it accepted, whoever serves it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class Writable(Protocol):
    """The client side as a transport: the socket's own, or the TLS layer over it."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def is_closing(self) -> bool: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def can_write_eof(self) -> bool: ...
    def write_eof(self) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def get_extra_info(self, name: str, default: object = None) -> object: ...


class HandedTransport:
    """A transport for the delegate; every call goes through, `set_protocol` rebinds it."""

    __slots__ = ("_inner", "_protocol", "_rebind", "write")

    write: Callable[[bytes], None]

    def __init__(self, inner: Writable, protocol: asyncio.BaseProtocol,
                 rebind: Callable[[asyncio.BaseProtocol], None]) -> None:
        self._inner = inner
        self._protocol = protocol
        self._rebind = rebind
        # The inner transport's own method: a write (every response) costs no extra call.
        self.write = inner.write

    def writelines(self, chunks: list[bytes]) -> None:
        self._inner.write(b"".join(chunks))

    def close(self) -> None:
        self._inner.close()

    def abort(self) -> None:
        self._inner.abort()

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()

    def write_eof(self) -> None:
        self._inner.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size()

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self._inner.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        self._rebind(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol
