"""The ClientConnection of an exchange that has no client of its own.

A mirrored request, a forwardAuth call, an error page fetched for ``errors``: each is an
Exchange whose answer a writer collects or drops, so nothing ever reaches this connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange
    from switchyard.http.tunnel import Endpoint

__all__ = ["NO_CONNECTION", "NoConnection"]


class NoConnection:
    """Takes every call an Exchange makes of its connection and does nothing with it."""

    writing_paused = False

    def transmit(self, data: bytes) -> None:
        pass

    def cork(self) -> None:
        pass

    def uncork(self) -> None:
        pass

    def pause_reading(self, reason: int) -> None:
        pass

    def resume_reading(self, reason: int) -> None:
        pass

    def response_done(self, exchange: Exchange) -> None:
        pass

    def response_aborted(self, exchange: Exchange) -> None:
        pass

    def switch_protocols(self, exchange: Exchange, backend: Endpoint, backend_bytes: bytes) -> None:
        backend.close()  # nobody to relay to


NO_CONNECTION = NoConnection()
