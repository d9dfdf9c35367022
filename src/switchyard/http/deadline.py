"""A connection's timer that is cheap to move: setting a deadline is a float store, not a timer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Deadline"]


class Deadline:
    """Calls ``expired`` once the current deadline has passed.

    Keep-alive connections move their deadline on every request (read timeout, then idle
    timeout); scheduling and cancelling a loop timer each time is what this avoids. One timer is
    armed at most; when it fires early (the deadline moved on) it re-arms for the rest.
    """

    __slots__ = ("_armed", "_expired", "_handle", "_loop", "_when")

    def __init__(self, loop: asyncio.AbstractEventLoop, expired: Callable[[], None]) -> None:
        self._loop = loop
        self._expired = expired
        self._when = 0.0  # 0: no deadline
        self._handle: asyncio.TimerHandle | None = None
        self._armed = 0.0  # when the armed timer fires

    def set(self, seconds: float) -> None:
        """Expire ``seconds`` from now; 0 or less clears the deadline."""
        if seconds <= 0:
            self._when = 0.0
            return
        when = self._loop.time() + seconds
        self._when = when
        handle = self._handle
        if handle is None:
            self._armed = when
            self._handle = self._loop.call_at(when, self._fire)
        elif self._armed > when:
            # Sooner than the armed timer (a shorter timeout): re-arm, which is rare.
            handle.cancel()
            self._armed = when
            self._handle = self._loop.call_at(when, self._fire)

    def clear(self) -> None:
        self._when = 0.0

    def cancel(self) -> None:
        """Clear and drop the timer (the connection is gone)."""
        self._when = 0.0
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def close(self) -> None:
        """Cancel for good, and let go of the callback: the connection it would call, which
        holds this deadline, is then freed by reference counting instead of the cyclic
        garbage collector."""
        self.cancel()
        self._expired = _nothing

    @property
    def active(self) -> bool:
        return self._when > 0

    def _fire(self) -> None:
        self._handle = None
        when = self._when
        if when <= 0:
            return
        if self._loop.time() >= when:
            self._when = 0.0
            self._expired()
        else:
            self._armed = when
            self._handle = self._loop.call_at(when, self._fire)


def _nothing() -> None:
    pass
