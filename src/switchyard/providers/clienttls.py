"""TLS to a provider's store (Traefik's ``tls: {ca, cert, key, insecureSkipVerify}``)."""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass

from switchyard.config.dynamic import TraefikModel
from switchyard.config.loader import ConfigLoadError

__all__ = ["ClientTLS", "TLSFiles", "tls_files"]


class ClientTLS(TraefikModel):
    """Traefik's ClientTLS: each of ca, cert and key is a file path or the PEM text itself."""

    ca: str = ""
    cert: str = ""
    key: str = ""
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class TLSFiles:
    """The same settings as files, as client libraries want them, and an SSL context."""

    ca: str | None
    cert: str | None
    key: str | None
    verify: bool

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert:
            context.load_cert_chain(self.cert, self.key)
        return context


def tls_files(tls: ClientTLS, option: str) -> TLSFiles:
    """``tls`` as files (PEM text is written to private temporary files), checked now.

    Raises ConfigLoadError naming ``option`` (e.g. ``providers.redis.tls``) when a file is
    missing or the certificate and key do not load, so the start fails with the reason
    instead of every connection attempt failing later.
    """
    if bool(tls.cert) != bool(tls.key):
        raise ConfigLoadError(f"{option}: cert and key go together; set both, or neither")
    files = TLSFiles(_file(tls.ca, f"{option}.ca"), _file(tls.cert, f"{option}.cert"),
                     _file(tls.key, f"{option}.key"), not tls.insecure_skip_verify)
    try:
        files.context()
    except (OSError, ssl.SSLError) as error:
        raise ConfigLoadError(f"{option}: cannot use the certificates: {error}") from None
    return files


def _file(value: str, option: str) -> str | None:
    if not value:
        return None
    if os.path.isfile(value):
        return value
    if "-----BEGIN" not in value:
        raise ConfigLoadError(f'{option}: "{value}" is neither a file nor PEM text; give the '
                              "path of a PEM file or its contents")
    handle, path = tempfile.mkstemp(prefix="switchyard-tls-", suffix=".pem")
    with os.fdopen(handle, "w") as out:  # mkstemp: readable by this user only
        out.write(value)
    return path
