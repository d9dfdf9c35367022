"""Server-side TLS over memory buffers: bytes from the client in, plaintext and replies out."""

from __future__ import annotations

import ssl

# Below glibc's mmap threshold: a larger read buffer is mmapped and unmapped
# on every call: under glibc's dynamic mmap threshold that cost uvloop's TLS
# reads about a third of their time.
_READ_SIZE = 64 * 1024


class TLSTerminator:
    """One client's TLS session, driven by the connection that owns the sockets.

    Built on `ssl.MemoryBIO`, so the ClientHello bytes already read while
    peeking are simply fed in first, and no socket is ever handed to `ssl`.
    Every method returns what must be written to the client (handshake
    records, alerts, ciphertext); `receive` also returns decrypted plaintext.
    Failures raise `ssl.SSLError` (or `ssl.CertificateError`).
    """

    __slots__ = ("_incoming", "_outgoing", "_tls", "handshake_done", "peer_closed")

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.handshake_done = False
        self.peer_closed = False

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        """Feed client bytes; returns (plaintext for the backend, bytes for the client)."""
        if data:
            self._incoming.write(data)
        plaintext = b""
        if not self.handshake_done:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                return b"", self._outgoing.read()
            # Other errors propagate; the alert OpenSSL queued stays readable
            # through `pending_output` so the caller can still send it.
            self.handshake_done = True
        chunks = []
        incoming, tls = self._incoming, self._tls
        # Stop when nothing is left to decrypt instead of reading until OpenSSL
        # raises "want read": one exception per received segment adds up.
        while incoming.pending or tls.pending():
            try:
                chunk = tls.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.peer_closed = True  # close_notify: the client will send no more
                break
            if not chunk:
                self.peer_closed = True
                break
            chunks.append(chunk)
        if chunks:
            plaintext = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return plaintext, self._outgoing.read()

    def send(self, plaintext: bytes) -> bytes:
        """Encrypt backend bytes for the client."""
        self._tls.write(plaintext)
        return self._outgoing.read()

    def close_notify(self) -> bytes:
        """Our close_notify alert (the backend finished sending)."""
        try:
            self._tls.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass  # the peer's close_notify may never come; ours is in the buffer
        return self._outgoing.read()

    def pending_output(self) -> bytes:
        return self._outgoing.read()

    @property
    def version(self) -> str | None:
        return self._tls.version() if self.handshake_done else None

    @property
    def alpn(self) -> str | None:
        return self._tls.selected_alpn_protocol() if self.handshake_done else None

    @property
    def cipher(self) -> str | None:
        """The negotiated suite as OpenSSL names it (``TLS_AES_128_GCM_SHA256``)."""
        suite = self._tls.cipher() if self.handshake_done else None
        return suite[0] if suite else None

    @property
    def peer_certificates(self) -> tuple[bytes, ...]:
        """The client's certificates (DER, its own first) as it sent them; () when it sent none.

        Python before 3.13 only gives the client's own certificate, not the intermediates.
        """
        if not self.handshake_done:
            return ()
        chain = getattr(self._tls, "get_unverified_chain", None)  # Python 3.13: DER bytes
        if chain is not None:
            return tuple(bytes(cert) for cert in chain() or ())
        leaf = self._tls.getpeercert(binary_form=True)
        return (leaf,) if leaf else ()
