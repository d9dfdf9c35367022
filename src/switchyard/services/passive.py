"""Passive health: failures of live traffic take a server out for ``failureWindow`` (HTTP and TCP)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Generic, Protocol, TypeVar

__all__ = ["FailureWindow"]

log = logging.getLogger("switchyard.healthcheck")


class _Switchable(Protocol):
    up: bool


S = TypeVar("S", bound=_Switchable)


class FailureWindow(Generic[S]):
    """Counts each server's failures; ``max_failed_attempts`` within ``failure_window`` set it DOWN.

    A success clears a server's failures. Without an active health check the server is UP
    again after ``failure_window``; with one (``active``), the active check brings it back,
    as in Traefik. ``ejections`` counts how often a server was taken out, for metrics.
    """

    __slots__ = ("_failures", "_timers", "active", "ejections", "failure_window",
                 "max_failed_attempts", "name", "what")

    def __init__(self, name: str, *, failure_window: float = 10.0, max_failed_attempts: int = 1,
                 active: bool = False, what: str = "failures") -> None:
        self.name = name
        self.failure_window = failure_window
        self.max_failed_attempts = max_failed_attempts
        self.active = active
        self.what = what  # how the log names a failure: "failed requests", "failed connections"
        self.ejections: dict[str, int] = {}
        self._failures: dict[str, list[float]] = {}
        self._timers: dict[str, tuple[asyncio.TimerHandle, S]] = {}

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def failed(self, key: str, server: S) -> None:
        """One failure of ``server`` (known by ``key``, its URL or address)."""
        now = time.monotonic()
        window_start = now - self.failure_window
        recent = [t for t in self._failures.get(key, ()) if t > window_start]
        recent.append(now)
        self._failures[key] = recent
        if len(recent) < self.max_failed_attempts or key in self._timers:
            return
        if server.up:
            log.warning('service "%s": server %s is DOWN: %d %s within %gs',
                        self.name, key, len(recent), self.what, self.failure_window)
            self.ejections[key] = self.ejections.get(key, 0) + 1
        server.up = False
        if not self.active:
            timer = asyncio.get_running_loop().call_later(self.failure_window, self._restore, key)
            self._timers[key] = (timer, server)

    def out(self, key: str) -> bool:
        """Whether the server is out now because of its failures (waiting for its window)."""
        return key in self._timers

    def _restore(self, key: str) -> None:
        _, server = self._timers.pop(key)
        if not server.up:
            server.up = True
            log.warning('service "%s": server %s is UP again after %gs out', self.name, key,
                        self.failure_window)

    def close(self) -> None:
        """Drop pending returns (the service left the configuration)."""
        for timer, _ in self._timers.values():
            timer.cancel()
        self._timers.clear()
