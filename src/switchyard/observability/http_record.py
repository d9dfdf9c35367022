"""What Traefik's HTTP metrics and access log both read from a served request's RequestRecord.

A RequestRecord (switchyard.http.handler) says what was served; these functions turn it into
Traefik's values: the status it reports, the router's service, the TLS names, header lookups.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography import x509

from switchyard.tls.options import go_cipher_name

if TYPE_CHECKING:
    from switchyard.http.handler import RequestRecord

__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "HeaderFields",
    "first_value",
    "is_internal",
    "reported",
    "router_service",
    "status_code",
    "tls_client_subject",
    "tls_names",
]

#: Header fields as the engine keeps them: (name, value) pairs of bytes, in arrival order.
HeaderFields = Sequence[tuple[bytes, bytes]]

#: Traefik's status for a request whose client went away before a response was started
#: (nginx's non-standard 499, which Traefik's proxy writes on a cancelled request).
CLIENT_CLOSED_REQUEST = 499

# ssl's spelling (SSLObject.version()) and Traefik's own, both to Traefik's.
_TLS_VERSION_NAMES = {"TLSv1": "1.0", "TLSv1.1": "1.1", "TLSv1.2": "1.2", "TLSv1.3": "1.3",
                      "1.0": "1.0", "1.1": "1.1", "1.2": "1.2", "1.3": "1.3"}


# Attributes Go's pkix.Name.String() names and cryptography's RFC 4514 writer spells as OIDs.
_GO_ATTRIBUTE_NAMES = {x509.ObjectIdentifier("2.5.4.5"): "SERIALNUMBER",
                       x509.ObjectIdentifier("2.5.4.17"): "POSTALCODE"}


def status_code(record: RequestRecord) -> int:
    """The status Traefik would report: the one sent, or 499 when the client left first."""
    if record.status == 0 and record.closed_by == "client":
        return CLIENT_CLOSED_REQUEST
    return reported(record.status)


def reported(status: int) -> int:
    """A response status as Traefik's captures see it: 0 for a ``101``, which Go's proxy writes
    on the hijacked connection, past every capturing writer."""
    return 0 if status == 101 else status


def router_service(record: RequestRecord) -> str:
    """The service the router names (``router_service``), else the one that served."""
    return record.router_service or record.service


def is_internal(record: RequestRecord) -> bool:
    """Served by an ``@internal`` service: left out of metrics and logs unless addInternals."""
    return router_service(record).endswith("@internal")


def tls_names(record: RequestRecord) -> tuple[str, str]:
    """(version, cipher) as Traefik spells them (``1.3``, ``TLS_AES_128_GCM_SHA256``).

    ``tls_version`` is what ``ssl`` reports (``TLSv1.3``), ``tls_cipher`` its OpenSSL suite
    name; either missing or not known to Go reads ``unknown``, Traefik's own fallback.
    """
    cipher = record.tls_cipher
    return (_TLS_VERSION_NAMES.get(record.tls_version, "unknown"),
            go_cipher_name(cipher) if cipher else "unknown")


def tls_client_subject(record: RequestRecord) -> str:
    """The subject of the client's certificate as Go prints a pkix.Name (``CN=a,O=b``); ``""``
    without one. Parsed only when asked (the access log's TLSClientSubject)."""
    if not record.tls_peer_certificates:
        return ""
    try:
        subject = x509.load_der_x509_certificate(record.tls_peer_certificates[0]).subject
    except ValueError:
        return ""
    return subject.rfc4514_string(_GO_ATTRIBUTE_NAMES)


def first_value(fields: HeaderFields, name: bytes) -> bytes | None:
    """The first value of the lower-case field ``name`` (Go's ``Header.Get``), None if absent."""
    size = len(name)
    for field, value in fields:
        if len(field) == size and field.lower() == name:
            return value
    return None
