"""ACME resolvers: obtain, store and renew certificates through TLS-ALPN-01 or HTTP-01."""

from __future__ import annotations

import asyncio
import atexit
import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
import os
import ssl
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from acme import client as acme_client
from acme import crypto_util, errors, messages
from acme.challenges import HTTP01Response, KeyAuthorizationChallengeResponse
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ObjectIdentifier
from josepy.b64 import b64encode
from josepy.jwk import JWKRSA

from switchyard import __version__
from switchyard.config.durations import parse_duration
from switchyard.rules.matchers import ACME_TLS_ALPN
from switchyard.rules.request import split_host_port
from switchyard.tls.certificates import DEFAULT_STORE, LoadedCertificate

__all__ = [
    "ACMECertificate",
    "ACMEConfig",
    "ACMEError",
    "ACMEResolver",
    "CertificateDomain",
    "build_resolvers",
    "renewal_timing",
]

log = logging.getLogger("switchyard.acme")

DEFAULT_CA_SERVER = "https://acme-v02.api.letsencrypt.org/directory"
DEFAULT_STORAGE = "acme.json"
DEFAULT_KEY_TYPE = "RSA4096"
DEFAULT_CERTIFICATES_DURATION = 2160  # hours: Let's Encrypt's 90 days

# The names Traefik accepts for keyType, each with the value lego writes as Account.KeyType in
# acme.json, so a storage file moves between Traefik and Switchyard in both directions.
_KEY_TYPES = {
    "EC256": "P256",
    "EC384": "P384",
    "RSA2048": "2048",
    "RSA4096": "4096",
    "RSA8192": "8192",
}
_TLS_ALPN_01 = "tls-alpn-01"
_HTTP_01 = "http-01"
# RFC 8737 section 3: id-pe-acmeIdentifier.
_ACME_IDENTIFIER_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.31")
# How long one order may take from answering its challenges to the issued certificate.
_ORDER_TIMEOUT = dt.timedelta(seconds=90)
_RETRY_FIRST = 60.0
# Doubling from a minute: a CA that was briefly unreachable is asked again soon, a domain that
# keeps failing validation soon stays under Let's Encrypt's limit of 5 failed authorizations
# per hostname and hour, and a CA that is down for long is still retried four times a day.
_RETRY_MAX = 6 * 3600.0
_ENV_CA_CERTIFICATES = "LEGO_CA_CERTIFICATES"
_ENV_CA_SYSTEM_CERT_POOL = "LEGO_CA_SYSTEM_CERT_POOL"
# Options of Traefik's ACME resolver that change nothing here, reported once so nobody
# believes they are in effect.
_IGNORED_OPTIONS = {
    "preferredchain": "preferredChain",
    "eab": "eab",
    "clienttimeout": "clientTimeout",
    "clientresponseheadertimeout": "clientResponseHeaderTimeout",
    "caservername": "caServerName",
    "profile": "profile",
    "emailaddresses": "emailAddresses",
    "disablecommonname": "disableCommonName",
}
_KNOWN_OPTIONS = {
    "email",
    "storage",
    "caserver",
    "keytype",
    "certificatesduration",
    "cacertificates",
    "casystemcertpool",
    "tlschallenge",
    "httpchallenge",
    "dnschallenge",
    *_IGNORED_OPTIONS,
}


class ACMEError(ValueError):
    """A resolver that cannot be configured or run; the message names it and says why."""


# --- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class ACMEConfig:
    """``certificatesResolvers.<name>.acme`` with Traefik's defaults applied."""

    email: str = ""
    storage: str = DEFAULT_STORAGE
    ca_server: str = DEFAULT_CA_SERVER
    key_type: str = DEFAULT_KEY_TYPE
    certificates_duration: int = DEFAULT_CERTIFICATES_DURATION
    # CA bundles trusted for the ACME API instead of the system's (caCertificates or
    # LEGO_CA_CERTIFICATES), and whether the system's are trusted as well.
    ca_certificates: tuple[str, ...] = ()
    ca_system_cert_pool: bool = False
    # The challenges answered (tlsChallenge, httpChallenge) and the wait between presenting
    # a challenge and telling the CA to validate it (their ``delay``, in seconds).
    tls_challenge: bool = False
    tls_challenge_delay: float = 0.0
    http_challenge_entry_point: str = ""  # empty: no HTTP-01
    http_challenge_delay: float = 0.0

    @property
    def challenge_types(self) -> tuple[str, ...]:
        """The ACME challenge types this resolver answers, the preferred one first.

        lego, which Traefik uses, takes tls-alpn-01 over http-01 when the CA offers both for a
        name; so does Switchyard.
        """
        types = (_TLS_ALPN_01,) if self.tls_challenge else ()
        return types + ((_HTTP_01,) if self.http_challenge_entry_point else ())

    def challenge_delay(self, challenge_type: str) -> float:
        """Seconds to wait after presenting a challenge of this type before it is validated."""
        if challenge_type == _HTTP_01:
            return self.http_challenge_delay
        return self.tls_challenge_delay

    @classmethod
    def from_static(
        cls,
        name: str,
        raw: Mapping[str, Any],
        environ: Mapping[str, str],
        entry_points: Collection[str] | None = None,
    ) -> tuple[ACMEConfig, list[str]]:
        """Read a resolver's raw static dict (the one holding ``acme``), keys in any case.

        Returns the configuration and notes on options that are ignored or will not work, such
        as an ``httpChallenge.entryPoint`` missing from ``entry_points`` (when given). Raises
        ACMEError for what makes the resolver unusable: no ``acme`` section, no challenge
        Switchyard answers, bad values.
        """
        where = f"certificatesResolvers.{name}"
        section = _lower_keys(raw, where)
        if "acme" not in section:
            kinds = ", ".join(sorted(section)) or "nothing"
            raise ACMEError(f"{where}: has {kinds}; only an acme resolver is supported")
        where += ".acme"
        options = _lower_keys(section["acme"], where) if section["acme"] else {}
        notes: list[str] = []
        for key in options:
            if key in _IGNORED_OPTIONS:
                notes.append(f"{where}.{_IGNORED_OPTIONS[key]}: not supported, ignored")
            elif key not in _KNOWN_OPTIONS:
                notes.append(f"{where}.{key}: unknown option, ignored")

        tls_challenge, tls_delay, entry_point, http_delay = _read_challenges(
            options, where, entry_points, notes
        )

        key_type = str(options.get("keytype") or DEFAULT_KEY_TYPE)
        if key_type not in _KEY_TYPES:
            # Traefik falls back the same way rather than refusing the resolver.
            notes.append(
                f"{where}.keyType: unknown value {key_type!r} (use one of "
                f"{', '.join(_KEY_TYPES)}); using {DEFAULT_KEY_TYPE}"
            )
            key_type = DEFAULT_KEY_TYPE

        duration_value = options.get("certificatesduration", DEFAULT_CERTIFICATES_DURATION)
        try:
            duration = int(duration_value)
        except (TypeError, ValueError):
            raise ACMEError(
                f"{where}.certificatesDuration: {duration_value!r} is not a number of hours"
            ) from None
        if duration < 1:
            raise ACMEError(f"{where}.certificatesDuration: must be at least 1 hour")

        ca_certificates = _string_list(options.get("cacertificates"))
        system_pool = _enabled(options.get("casystemcertpool", False))
        if not ca_certificates:
            # lego's variables, read only when the options are absent, as Traefik does.
            ca_certificates = [
                path for path in environ.get(_ENV_CA_CERTIFICATES, "").split(os.pathsep) if path
            ]
            system_pool = _enabled(environ.get(_ENV_CA_SYSTEM_CERT_POOL, "false"))

        config = cls(
            email=str(options.get("email") or ""),
            storage=os.path.abspath(str(options.get("storage") or DEFAULT_STORAGE)),
            ca_server=str(options.get("caserver") or DEFAULT_CA_SERVER),
            key_type=key_type,
            certificates_duration=duration,
            ca_certificates=tuple(ca_certificates),
            ca_system_cert_pool=system_pool and bool(ca_certificates),
            tls_challenge=tls_challenge,
            tls_challenge_delay=tls_delay,
            http_challenge_entry_point=entry_point,
            http_challenge_delay=http_delay,
        )
        return config, notes


def _read_challenges(
    options: Mapping[str, Any],
    where: str,
    entry_points: Collection[str] | None,
    notes: list[str],
) -> tuple[bool, float, str, float]:
    """(tlsChallenge on, its delay, httpChallenge entry point or "", its delay).

    Raises ACMEError when no challenge Switchyard answers is configured.
    """
    tls = _challenge_section(options, "tlsChallenge", ("delay",), where, notes)
    http = _challenge_section(options, "httpChallenge", ("entrypoint", "delay"), where, notes)
    dns = _challenge_section(options, "dnsChallenge", None, where, notes)
    entry_point = ""
    if http is not None:
        entry_point = str(http.get("entrypoint") or "").strip()
        if not entry_point:
            # Traefik leaves HTTP-01 off in this case too, and says nothing until an order.
            missing = (
                f"{where}.httpChallenge: no entryPoint; name the entry point the CA "
                "reaches on port 80, e.g. httpChallenge: {entryPoint: web}"
            )
            if tls is None:
                raise ACMEError(missing)
            notes.append(f"{missing}; only tlsChallenge is used")
        elif entry_points is not None and entry_point not in entry_points:
            known = ", ".join(sorted(entry_points)) or "none"
            notes.append(
                f"{where}.httpChallenge.entryPoint: {entry_point!r} is not an entry point "
                f"(entry points: {known}); HTTP-01 challenges of this resolver cannot be "
                "answered"
            )
    dns_missing = f"{where}.dnsChallenge: the DNS-01 challenge is not implemented in Switchyard"
    if tls is None and not entry_point:
        if dns is not None:
            raise ACMEError(
                f"{dns_missing}; use tlsChallenge: {{}} or "
                "httpChallenge: {entryPoint: web} instead"
            )
        raise ACMEError(
            f"{where}: no challenge to answer; add tlsChallenge: {{}} or "
            "httpChallenge: {entryPoint: web} to this resolver"
        )
    if dns is not None:
        answered = (("tlsChallenge", tls is not None), ("httpChallenge", bool(entry_point)))
        used = [key for key, on in answered if on]
        notes.append(
            f"{dns_missing}, ignored: names are validated with {' and '.join(used)}; "
            "wildcard names need DNS-01 and get no certificate"
        )
    return (
        tls is not None,
        _delay(tls, f"{where}.tlsChallenge"),
        entry_point,
        _delay(http, f"{where}.httpChallenge"),
    )


def _challenge_section(
    options: Mapping[str, Any],
    key: str,
    known: tuple[str, ...] | None,
    where: str,
    notes: list[str],
) -> dict[str, Any] | None:
    """A challenge's options (lower-case keys), or None when it is not configured.

    Options outside ``known`` are noted as ignored; None for ``known`` checks nothing.
    """
    value = options.get(key.lower(), False)
    if not _enabled(value):
        return None
    if not isinstance(value, Mapping):
        return {}  # `httpChallenge: true` from flags or labels, or a bare key
    section = _lower_keys(value, f"{where}.{key}")
    for option in section:
        if known is not None and option not in known:
            notes.append(f"{where}.{key}.{option}: unknown option, ignored")
    return section


def _delay(section: Mapping[str, Any] | None, where: str) -> float:
    value = None if section is None else section.get("delay")
    if value is None:
        return 0.0
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ACMEError(f"{where}.delay: {exc}") from None
    # lego waits only for a positive delay.
    return max(seconds, 0.0)


def _lower_keys(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ACMEError(f"{where}: expected a mapping, got {type(value).__name__}")
    return {str(key).lower(): item for key, item in value.items()}


def _enabled(value: Any) -> bool:
    # `tlsChallenge: {}` and a bare `tlsChallenge:` (None) both switch it on, as in Traefik;
    # flags and labels spell booleans as strings.
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0")
    return value is None or value is not False


def _string_list(value: Any) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    return [str(item).strip() for item in items if str(item).strip()]


def renewal_timing(certificates_duration: int) -> tuple[float, float]:
    """Traefik's (renew period, check interval) in seconds for ``certificatesDuration`` hours.

    A certificate is renewed once it expires within the renew period: 30 days for the default
    90-day certificates. The interval bounds how long the resolver sleeps between checks.
    """
    hour = 3600.0
    day = 24 * hour
    if certificates_duration >= 365 * 24:
        return 120 * day, 7 * day
    if certificates_duration >= 90 * 24:
        return 30 * day, day
    if certificates_duration >= 30 * 24:
        return 10 * day, 12 * hour
    if certificates_duration >= 6 * 24:
        return 2 * day, 2 * hour
    if certificates_duration >= 24:
        return 6 * hour, 600.0
    return 1200.0, 60.0


# --- certificates and their storage -------------------------------------------------------


@dataclass(frozen=True)
class CertificateDomain:
    """The names of one ACME certificate: ``main`` plus subject alternative names."""

    main: str
    sans: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.main, *self.sans)


@dataclass(frozen=True)
class ACMECertificate:
    """A certificate chain and its key as obtained from the CA, PEM encoded."""

    domain: CertificateDomain
    chain_pem: bytes
    key_pem: bytes
    store: str = DEFAULT_STORE

    @cached_property
    def validity(self) -> tuple[float, float]:
        """(not before, not after) as Unix times; (0, 0) for a chain that does not parse."""
        try:
            leaf = x509.load_pem_x509_certificate(self.chain_pem)
        except ValueError:
            return 0.0, 0.0
        return leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp()

    def renewal_time(self, renew_period: float) -> float:
        """When to renew: once less than ``renew_period`` of validity is left.

        Or once less than a third of the certificate's lifetime is left, when that comes later:
        a CA issuing certificates shorter than ``certificatesDuration`` promises would otherwise
        have them renewed again as soon as they arrive. Traefik's 90-day certificates and
        30-day period give the same day either way.
        """
        not_before, not_after = self.validity
        return not_after - min(renew_period, (not_after - not_before) / 3)


@dataclass(frozen=True)
class _Account:
    """Traefik's ``Account``: the ACME account key and where the CA registered it."""

    email: str
    key: rsa.RSAPrivateKey
    key_type: str
    registration_uri: str = ""
    registration_body: Any = None


# One lock per storage file: resolvers sharing a file rewrite it one at a time.
_STORAGE_LOCKS: dict[str, threading.Lock] = {}
_STORAGE_LOCKS_GUARD = threading.Lock()


class _Storage:
    """One resolver's entry in a Traefik ``acme.json`` file."""

    def __init__(self, path: str, resolver: str) -> None:
        self.path = path
        self.resolver = resolver
        with _STORAGE_LOCKS_GUARD:
            self._lock = _STORAGE_LOCKS.setdefault(path, threading.Lock())

    def load(self) -> tuple[_Account | None, list[ACMECertificate], list[str]]:
        """The stored account and certificates, plus notes on entries that were skipped."""
        with self._lock:
            entry = self._read().get(self.resolver) or {}
        where = f"{self.path}: {self.resolver}"
        notes: list[str] = []
        account = None
        if entry.get("Account"):
            try:
                account = _account_from_json(entry["Account"])
            except (KeyError, TypeError, ValueError) as exc:
                notes.append(f"{where}: unreadable Account ({exc}); a new account is registered")
        certificates = []
        for index, item in enumerate(entry.get("Certificates") or []):
            try:
                certificates.append(_certificate_from_json(item))
            except (KeyError, TypeError, ValueError, binascii.Error) as exc:
                notes.append(f"{where}: Certificates[{index}] unreadable ({exc}); skipped")
        return account, certificates, notes

    def save(self, account: _Account | None, certificates: Iterable[ACMECertificate]) -> None:
        """Rewrite this resolver's entry, keeping the other resolvers' entries as they are."""
        with self._lock:
            data = self._read()
            data[self.resolver] = {
                "Account": None if account is None else _account_to_json(account),
                "Certificates": [_certificate_to_json(item) for item in certificates],
            }
            text = json.dumps(data, indent=2).encode("utf-8")
            # A crash mid-write must not leave a truncated file: write a private file beside it
            # (mkstemp creates it 0600) and rename it over the old one.
            descriptor, temporary = tempfile.mkstemp(
                dir=os.path.dirname(self.path), prefix=".acme-", suffix=".json"
            )
            try:
                with os.fdopen(descriptor, "wb") as output:
                    output.write(text)
                    output.flush()
                    os.fsync(output.fileno())
                os.replace(temporary, self.path)
            except BaseException:
                os.unlink(temporary)
                raise

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path, "rb") as source:
                mode = os.fstat(source.fileno()).st_mode
                text = source.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ACMEError(f"cannot read ACME storage {self.path}: {exc.strerror}") from None
        # The file holds private keys; Traefik refuses it in the same case.
        if os.name == "posix" and stat.S_IMODE(mode) & 0o077:
            raise ACMEError(
                f"ACME storage {self.path}: permissions {stat.S_IMODE(mode):o} are too open, "
                "please use 600"
            )
        if not text.strip():
            return {}
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ACMEError(f"ACME storage {self.path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ACMEError(f"ACME storage {self.path}: expected a JSON object")
        return data


def _account_to_json(account: _Account) -> dict[str, Any]:
    der = account.key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    registration = None
    if account.registration_uri:
        registration = {"body": account.registration_body or {}, "uri": account.registration_uri}
    return {
        "Email": account.email,
        "Registration": registration,
        "PrivateKey": base64.b64encode(der).decode("ascii"),
        "KeyType": account.key_type,
    }


def _account_from_json(item: Mapping[str, Any]) -> _Account:
    # Traefik stores the account key as PKCS#1 DER, base64 encoded by Go's JSON encoder.
    key = serialization.load_der_private_key(base64.b64decode(item["PrivateKey"]), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("the account key is not an RSA key")
    registration = item.get("Registration") or {}
    return _Account(
        email=str(item.get("Email") or ""),
        key=key,
        key_type=str(item.get("KeyType") or ""),
        registration_uri=str(registration.get("uri") or ""),
        registration_body=registration.get("body"),
    )


def _certificate_to_json(certificate: ACMECertificate) -> dict[str, Any]:
    domain: dict[str, Any] = {"main": certificate.domain.main}
    if certificate.domain.sans:
        domain["sans"] = list(certificate.domain.sans)
    return {
        "domain": domain,
        "certificate": base64.b64encode(certificate.chain_pem).decode("ascii"),
        "key": base64.b64encode(certificate.key_pem).decode("ascii"),
        "Store": certificate.store,
    }


def _certificate_from_json(item: Mapping[str, Any]) -> ACMECertificate:
    domain = item["domain"]
    return ACMECertificate(
        domain=CertificateDomain(
            main=_canonical(str(domain.get("main") or "")),
            sans=tuple(_canonical(str(san)) for san in domain.get("sans") or ()),
        ),
        chain_pem=base64.b64decode(item["certificate"], validate=True),
        key_pem=base64.b64decode(item["key"], validate=True),
        store=str(item.get("Store") or DEFAULT_STORE),
    )


# --- the challenges -----------------------------------------------------------------------


class _TLSALPN01Response(KeyAuthorizationChallengeResponse):
    """The answer to a tls-alpn-01 challenge, sent as an empty object (RFC 8737 section 3).

    acme 5 dropped its TLS-ALPN-01 classes. The key authorization field is never sent, but it
    must be set: the client sends an object without fields as an empty POST-as-GET body.
    """

    typ = _TLS_ALPN_01


def _challenge_context(domain: str, key_authorization: str) -> ssl.SSLContext:
    """A server context presenting the RFC 8737 validation certificate for ``domain``."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, domain)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        # The extension value is the DER OCTET STRING wrapping the SHA-256 digest.
        .add_extension(
            x509.UnrecognizedExtension(_ACME_IDENTIFIER_OID, b"\x04\x20" + digest),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols([ACME_TLS_ALPN])
    pem = certificate.public_bytes(serialization.Encoding.PEM) + key_pem
    LoadedCertificate(names=(domain,), leaf=certificate, pem=pem).load_into(context)
    return context


# --- the resolver -------------------------------------------------------------------------


def _canonical(name: str) -> str:
    return name.strip().lower().rstrip(".")


def _covers(certificate_name: str, name: str) -> bool:
    if certificate_name == name:
        return True
    # A wildcard covers exactly one more label (such certificates come from Traefik's DNS-01).
    if certificate_name.startswith("*."):
        _, dot, parent = name.partition(".")
        return bool(dot) and parent == certificate_name[2:]
    return False


@dataclass
class _Retry:
    failures: int
    at: float


class ACMEResolver:
    """One ``certificatesResolvers.<name>`` with an ``acme`` section.

    Construction reads the configuration and the storage file, so ``certificates()`` serves
    what a previous run obtained before ``run()`` starts or the CA is reachable. Every method
    but ``run`` is meant for the event loop thread that runs ``run``.

    While an order is validated, the data plane answers its challenges from
    ``challenge_context`` (TLS-ALPN-01, on every entry point) and ``http_challenge_response``
    (HTTP-01, on the entry point ``http_challenge_entrypoint`` names).
    """

    def __init__(
        self,
        name: str,
        raw: Mapping[str, Any],
        *,
        environ: Mapping[str, str] | None = None,
        entry_points: Collection[str] | None = None,
        first_retry_delay: float = _RETRY_FIRST,
    ) -> None:
        self.name = name
        self.config, notes = ACMEConfig.from_static(
            name, raw, os.environ if environ is None else environ, entry_points
        )
        self._where = f"certificatesResolvers.{name}.acme"
        self._storage = _Storage(self.config.storage, name)
        self._account, stored, storage_notes = self._storage.load()
        #: Options that are ignored and storage entries that were skipped, for the logs.
        self.problems: tuple[str, ...] = tuple(notes + storage_notes)
        self._renew_period, self._check_interval = renewal_timing(self.config.certificates_duration)
        self._first_retry_delay = first_retry_delay
        self._certificates: dict[CertificateDomain, ACMECertificate] = {
            item.domain: item for item in stored
        }
        # Domain sets requested and not obtained yet, in request order.
        self._wanted: dict[CertificateDomain, None] = {}
        self._retries: dict[CertificateDomain, _Retry] = {}
        self._challenges: dict[str, ssl.SSLContext] = {}
        # Pending HTTP-01 answers: token -> name -> key authorization.
        self._http_answers: dict[str, dict[str, bytes]] = {}
        self._callbacks: list[Callable[[], None]] = []
        self._wake = asyncio.Event()
        self._client: acme_client.ClientV2 | None = None
        self._ca_bundle_path: str | None = None

    # -- what the control plane and data plane call ------------------------------------------

    def request(self, domains: Iterable[tuple[str, Sequence[str]]]) -> None:
        """Ask for certificates: one per ``(main, sans)``; idempotent.

        Like Traefik, names already served by one of this resolver's certificates (or already
        requested) are dropped, and a certificate is asked for the remaining names only, the
        first becoming ``main``. Wildcards need the DNS-01 challenge and are refused in the log.
        """
        added = False
        for main, sans in domains:
            names = list(dict.fromkeys(_canonical(n) for n in (main, *sans) if _canonical(n)))
            wildcards = [name for name in names if "*" in name]
            if wildcards:
                log.error(
                    "%s: cannot obtain a certificate for %s: wildcard names need the DNS-01 "
                    "challenge, which Switchyard does not answer",
                    self._where,
                    ", ".join(names),
                )
                continue
            missing = [name for name in names if not self._is_covered(name)]
            if missing:
                self._wanted[CertificateDomain(missing[0], tuple(missing[1:]))] = None
                added = True
        if added:
            self._wake.set()

    def pending(self) -> list[CertificateDomain]:
        """Domain sets requested and not obtained yet, in request order."""
        return [domain for domain in self._wanted if domain not in self._certificates]

    def certificates(self) -> list[tuple[bytes, bytes]]:
        """(chain PEM, key PEM) of every certificate of this resolver that has not expired."""
        now = time.time()
        return [
            (item.chain_pem, item.key_pem)
            for item in self._certificates.values()
            if item.validity[1] > now
        ]

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the loop) after a certificate is obtained or renewed."""
        self._callbacks.append(callback)

    def challenge_context(self, server_name: str) -> ssl.SSLContext | None:
        """The TLS-ALPN-01 responder for a pending challenge on ``server_name``, else None.

        The context offers only ``acme-tls/1``; complete one handshake with it, then close.
        """
        return self._challenges.get(_canonical(server_name))

    def http_challenge_entrypoint(self) -> str | None:
        """The entry point whose HTTP requests must reach ``http_challenge_response``.

        None when this resolver does not answer HTTP-01. The name is as configured; whether
        such an entry point exists was checked against the ``entry_points`` given, if any.
        """
        return self.config.http_challenge_entry_point or None

    def http_challenge_response(self, token: str, host: str) -> bytes | None:
        """The body for ``GET /.well-known/acme-challenge/<token>`` with this ``Host``, or None.

        The body is the key authorization of a pending HTTP-01 challenge for that token and
        name (``host`` may carry a port); answer it with ``200`` and ``text/plain``. None when
        no such challenge is pending: Traefik answers ``404`` then.
        """
        answers = self._http_answers.get(token)
        if not answers:
            return None
        try:
            name = split_host_port(host)[0]
        except ValueError:
            name = host  # no port, as Traefik falls back
        return answers.get(_canonical(name))

    async def run(self) -> None:
        """Obtain missing certificates and renew expiring ones until cancelled.

        Every certificate of the resolver is renewed at its ``renewal_time``, with the renew
        period Traefik derives from ``certificatesDuration`` (30 days by default).

        A failure is logged and retried with a doubling delay (from a minute, capped at six
        hours); new requests wake the loop at once.
        """
        while True:
            self._wake.clear()
            for domain in self._due(time.time()):
                await self._obtain_or_schedule_retry(domain)
            await self._sleep()

    # -- scheduling --------------------------------------------------------------------------

    def _is_covered(self, name: str) -> bool:
        held = [*self._certificates, *self._wanted]
        return any(_covers(known, name) for domain in held for known in domain.names)

    def _due(self, now: float) -> list[CertificateDomain]:
        due = [
            domain
            for domain, item in self._certificates.items()
            if item.renewal_time(self._renew_period) <= now
        ]
        due += self.pending()
        return [domain for domain in due if self._retry_at(domain) <= now]

    def _retry_at(self, domain: CertificateDomain) -> float:
        retry = self._retries.get(domain)
        return 0.0 if retry is None else retry.at

    async def _sleep(self) -> None:
        now = time.time()
        wake_at = now + self._check_interval
        for domain, item in self._certificates.items():
            renew_at = item.renewal_time(self._renew_period)
            wake_at = min(wake_at, max(renew_at, self._retry_at(domain)))
        for domain in self._wanted:
            wake_at = min(wake_at, self._retry_at(domain))
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=max(wake_at - now, 0.0))
        except TimeoutError:
            pass

    async def _obtain_or_schedule_retry(self, domain: CertificateDomain) -> None:
        names = ", ".join(domain.names)
        try:
            certificate = await self._obtain(domain)
        except Exception as exc:  # noqa: BLE001 - any failure (network, CA, storage) is retried
            failures = self._retries[domain].failures + 1 if domain in self._retries else 1
            delay = min(self._first_retry_delay * 2 ** (failures - 1), _RETRY_MAX)
            self._retries[domain] = _Retry(failures, time.time() + delay)
            log.warning(
                "%s: cannot obtain a certificate for %s: %s; retrying in %.0f s",
                self._where,
                names,
                _describe(exc),
                delay,
            )
            return
        self._retries.pop(domain, None)
        self._wanted.pop(domain, None)
        renewed = self._certificates.get(domain)
        if renewed is not None:
            certificate = replace(certificate, store=renewed.store)
        self._certificates[domain] = certificate
        log.info("%s: obtained a certificate for %s", self._where, names)
        try:
            await asyncio.to_thread(
                self._storage.save, self._account, list(self._certificates.values())
            )
        except (OSError, ACMEError) as exc:
            # The certificate is served anyway; only a restart would ask the CA again.
            log.error("%s: cannot save %s: %s", self._where, self.config.storage, exc)
        for callback in self._callbacks:
            try:
                callback()
            except Exception:
                log.exception("%s: certificate change callback failed", self._where)

    # -- one order ---------------------------------------------------------------------------

    async def _obtain(self, domain: CertificateDomain) -> ACMECertificate:
        acme = await self._connected()
        key_pem = await asyncio.to_thread(_private_key_pem, self.config.key_type)
        csr = crypto_util.make_csr(key_pem, list(domain.names))
        try:
            order = await asyncio.to_thread(acme.new_order, csr)
            answers = _pending_challenges(acme, order, self.config.challenge_types)
            try:
                for answer in answers:
                    self._present(answer)
                delay = max((self.config.challenge_delay(a.type) for a in answers), default=0.0)
                if delay:
                    await asyncio.sleep(delay)
                chain = await asyncio.to_thread(_validate_and_finalize, acme, order, answers)
            finally:
                for answer in answers:
                    self._clean_up(answer)
        except messages.Error as exc:
            if exc.code == "accountDoesNotExist" and self._account is not None:
                # The CA forgot the account (a test CA restarted, or it was deactivated):
                # register the same key again on the next attempt.
                self._client = None
                self._account = replace(self._account, registration_uri="")
            raise
        return ACMECertificate(domain=domain, chain_pem=chain, key_pem=key_pem)

    def _present(self, answer: _PendingChallenge) -> None:
        if answer.context is not None:
            self._challenges[answer.identifier] = answer.context
        else:
            tokens = self._http_answers.setdefault(answer.token, {})
            tokens[answer.identifier] = answer.key_authorization.encode("ascii")

    def _clean_up(self, answer: _PendingChallenge) -> None:
        if answer.context is not None:
            self._challenges.pop(answer.identifier, None)
            return
        tokens = self._http_answers.get(answer.token, {})
        tokens.pop(answer.identifier, None)
        if not tokens:
            self._http_answers.pop(answer.token, None)

    async def _connected(self) -> acme_client.ClientV2:
        if self._client is None:
            account = self._account
            if account is not None and not self._account_usable(account):
                account = None
            acme, account, registered = await asyncio.to_thread(self._connect, account)
            self._account = account
            if registered:
                await asyncio.to_thread(
                    self._storage.save, self._account, list(self._certificates.values())
                )
            self._client = acme
        return self._client

    def _account_usable(self, account: _Account) -> bool:
        # Like Traefik, an account registered with another CA (caServer changed) is replaced;
        # the port counts too, so two CAs on one host (test CAs) do not share accounts.
        if account.registration_uri:
            registered_at = urlsplit(account.registration_uri).netloc
            return registered_at == urlsplit(self.config.ca_server).netloc
        return True

    def _connect(self, account: _Account | None) -> tuple[acme_client.ClientV2, _Account, bool]:
        """Fetch the directory and register the account if needed; runs in a thread."""
        if account is None:
            # Traefik's account keys are RSA 4096 whatever keyType says (that is for certificates).
            key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
            account = _Account(self.config.email, key, _KEY_TYPES[self.config.key_type])
        network = acme_client.ClientNetwork(
            JWKRSA(key=account.key), user_agent=f"switchyard/{__version__}"
        )
        if self.config.ca_certificates:
            # requests takes a CA bundle path where acme's annotation says bool.
            network.verify_ssl = self._ca_bundle()  # type: ignore[assignment]
        directory = acme_client.ClientV2.get_directory(self.config.ca_server, network)
        acme = acme_client.ClientV2(directory, network)
        if account.registration_uri:
            network.account = messages.RegistrationResource(
                body=messages.Registration(), uri=account.registration_uri
            )
            return acme, account, False
        registration = acme.new_account(
            messages.NewRegistration.from_data(
                email=account.email or None, terms_of_service_agreed=True
            )
        )
        account = replace(
            account,
            registration_uri=registration.uri,
            registration_body=json.loads(registration.body.json_dumps()),
        )
        return acme, account, True

    def _ca_bundle(self) -> str:
        if self._ca_bundle_path is None:
            files = list(self.config.ca_certificates)
            if len(files) == 1 and not self.config.ca_system_cert_pool:
                self._ca_bundle_path = files[0]
            else:
                # requests trusts one bundle file: merge the CA files (and the system's roots)
                # into one of our own, removed when the process ends.
                if self.config.ca_system_cert_pool:
                    files.append(_system_ca_file())
                descriptor, path = tempfile.mkstemp(prefix="switchyard-acme-ca-", suffix=".pem")
                with os.fdopen(descriptor, "wb") as bundle:
                    for name in files:
                        bundle.write(_read_bytes(name) + b"\n")
                atexit.register(os.unlink, path)
                self._ca_bundle_path = path
        return self._ca_bundle_path


@dataclass(frozen=True)
class _PendingChallenge:
    identifier: str
    type: str
    token: str
    body: messages.ChallengeBody
    key_authorization: str
    context: ssl.SSLContext | None  # the TLS-ALPN-01 responder; None for HTTP-01


def _pending_challenges(
    acme: acme_client.ClientV2, order: messages.OrderResource, types: Sequence[str]
) -> list[_PendingChallenge]:
    """For each authorization still pending, the challenge to answer and what answers it.

    Of the challenges the CA offers, the first of ``types`` is taken.
    """
    account_key = acme.net.key
    assert account_key is not None  # set by ACMEResolver._connect
    thumbprint = b64encode(account_key.thumbprint(hash_function=hashes.SHA256)).decode()
    pending = []
    for authorization in order.authorizations:
        if authorization.body.status == messages.STATUS_VALID:
            continue  # the CA reuses an authorization it validated earlier
        identifier = _canonical(authorization.body.identifier.value)
        # Read as JSON: acme 5 parses tls-alpn-01 as UnrecognizedChallenge, older releases
        # as their own TLSALPN01 class.
        offered: dict[str, tuple[messages.ChallengeBody, str]] = {}
        for body in authorization.body.challenges:
            fields = body.chall.to_partial_json()
            offered.setdefault(str(fields.get("type")), (body, str(fields.get("token"))))
        chosen = next((kind for kind in types if kind in offered), None)
        if chosen is None:
            raise ACMEError(
                f"the CA offers no {' or '.join(types)} challenge for {identifier} "
                f"(it offers {', '.join(sorted(offered)) or 'none'})"
            )
        body, token = offered[chosen]
        key_authorization = f"{token}.{thumbprint}"
        context = (
            _challenge_context(identifier, key_authorization) if chosen == _TLS_ALPN_01 else None
        )
        pending.append(
            _PendingChallenge(identifier, chosen, token, body, key_authorization, context)
        )
    return pending


def _validate_and_finalize(
    acme: acme_client.ClientV2,
    order: messages.OrderResource,
    answers: list[_PendingChallenge],
) -> bytes:
    """Tell the CA the challenges are ready and wait for the certificate; runs in a thread."""
    for answer in answers:
        # Not ClientV2.answer_challenge: it insists on a Link "up" header that pebble does not
        # send, and nothing here needs the challenge it returns (the authorizations are polled).
        response: KeyAuthorizationChallengeResponse
        if answer.type == _HTTP_01:
            response = HTTP01Response(key_authorization=answer.key_authorization)
        else:
            response = _TLSALPN01Response(key_authorization=answer.key_authorization)
        acme.net.post(answer.body.uri, response, new_nonce_url=acme.directory["newNonce"])
    deadline = dt.datetime.now() + _ORDER_TIMEOUT
    try:
        finished = acme.poll_and_finalize(order, deadline)
    except errors.ValidationError as exc:
        raise ACMEError(_validation_failures(exc)) from None
    return str(finished.fullchain_pem).encode("ascii")


def _validation_failures(exc: errors.ValidationError) -> str:
    reasons = []
    for authorization in exc.failed_authzrs:
        identifier = authorization.body.identifier.value
        for body in authorization.body.challenges:
            if body.error is not None:
                reasons.append(f"{identifier}: {body.error.detail or body.error.code}")
    return "validation failed: " + ("; ".join(reasons) or "no reason given by the CA")


def _describe(exc: Exception) -> str:
    if isinstance(exc, messages.Error):
        return f"{exc.code or exc.typ}: {exc.detail}"
    return str(exc) or type(exc).__name__


def _private_key_pem(key_type: str) -> bytes:
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if key_type.startswith("EC"):
        key = ec.generate_private_key(ec.SECP256R1() if key_type == "EC256" else ec.SECP384R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _system_ca_file() -> str:
    found = ssl.get_default_verify_paths().cafile
    if found is None:
        raise ACMEError("caSystemCertPool: this system has no CA bundle file to add")
    return found


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as source:
            return source.read()
    except OSError as exc:
        raise ACMEError(f"cannot read CA certificates {path}: {exc.strerror}") from None


def build_resolvers(
    certificates_resolvers: Mapping[str, Mapping[str, Any]],
    environ: Mapping[str, str] | None = None,
    entry_points: Collection[str] | None = None,
) -> tuple[dict[str, ACMEResolver], list[str]]:
    """Build every resolver of ``static.certificates_resolvers``.

    A resolver that cannot work is left out and reported; the others are built. Returns the
    resolvers by name and the problems found, ignored options included. With
    ``entry_points`` (the static entry point names), an ``httpChallenge.entryPoint`` that is
    not one of them is reported too.
    """
    resolvers: dict[str, ACMEResolver] = {}
    problems: list[str] = []
    for name, raw in certificates_resolvers.items():
        try:
            resolver = ACMEResolver(name, raw, environ=environ, entry_points=entry_points)
        except ACMEError as exc:
            problems.append(f"{exc}; resolver disabled")
            continue
        resolvers[name] = resolver
        problems.extend(resolver.problems)
    return resolvers, problems
