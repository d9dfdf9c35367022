"""Sans-IO detector for the Postgres SSLRequest that opens a STARTTLS connection."""

from __future__ import annotations

from typing import Final

__all__ = ["SSL_REQUEST", "SSL_REQUEST_REPLY", "detect_ssl_request"]

# Int32 message length 8, then the request code 80877103 (1234 << 16 | 5679).
SSL_REQUEST: Final = bytes.fromhex("0000000804d2162f")
# The single byte a server that accepts TLS answers before the client's ClientHello.
SSL_REQUEST_REPLY: Final = b"S"


def detect_ssl_request(data: bytes | bytearray | memoryview) -> bool | None:
    """Say whether a connection starts with the SSLRequest.

    True once the 8 bytes are all there, False as soon as a byte differs, None while ``data`` is
    still a proper prefix of the request (including empty input): wait for more bytes.
    """
    seen = bytes(data[: len(SSL_REQUEST)])
    if seen != SSL_REQUEST[: len(seen)]:
        return False
    return True if len(seen) == len(SSL_REQUEST) else None
