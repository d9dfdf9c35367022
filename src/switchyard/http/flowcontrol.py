"""Reading paused for several reasons at once: resume only when the last reason is gone."""

from __future__ import annotations

from typing import Protocol

__all__ = ["BODY", "BUFFER", "PIPELINE", "ReadGate", "Readable"]

#: The consumer of a request body is slow (its socket is full).
BODY = 1
#: Body bytes are held because nobody reads the body yet.
BUFFER = 2
#: A pipelined request waits for the responses before it.
PIPELINE = 4


class Readable(Protocol):
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def is_closing(self) -> bool: ...


class ReadGate:
    """Pauses a transport while any reason holds."""

    __slots__ = ("_reasons", "_transport")

    def __init__(self, transport: Readable) -> None:
        self._transport = transport
        self._reasons = 0

    def pause(self, reason: int) -> None:
        if not self._reasons and not self._transport.is_closing():
            self._transport.pause_reading()
        self._reasons |= reason

    def resume(self, reason: int) -> None:
        if self._reasons & reason:
            self._reasons &= ~reason
            if not self._reasons and not self._transport.is_closing():
                self._transport.resume_reading()

    @property
    def paused(self) -> bool:
        return bool(self._reasons)
