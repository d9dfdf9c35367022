"""What the rest of Switchyard needs of a certificate resolver (ACME), as a Protocol."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from typing import Protocol


class CertificateSource(Protocol):
    """What a configuration build needs of a resolver: the certificates it holds."""

    @property
    def name(self) -> str: ...

    def certificates(self) -> list[tuple[bytes, bytes]]:
        """(PEM chain, PEM key) of every certificate it holds."""


class CertificateResolver(CertificateSource, Protocol):
    """A `certificatesResolvers.<name>`: obtains certificates and answers TLS-ALPN-01."""

    def request(self, domains: Sequence[tuple[str, list[str]]]) -> None:
        """Obtain certificates for these (main, SANs) unless held already."""

    def challenge_context(self, server_name: str) -> ssl.SSLContext | None:
        """The TLS-ALPN-01 answer for a pending challenge on `server_name`."""

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever it has obtained or renewed a certificate."""

    async def run(self) -> None:
        """Obtain and renew until cancelled."""
