"""Traefik TLS options (``tls.options``) compiled into server contexts for TLS termination."""

from __future__ import annotations

import functools
import ssl
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from switchyard.config.dynamic import ClientAuth, TLSOptions
from switchyard.tls.certificates import (
    CertificateError,
    CertificateStore,
    LoadedCertificate,
    pem_bundle,
    read_certificates,
)

__all__ = [
    "CLIENT_AUTH_TYPES",
    "DEFAULT_OPTIONS",
    "TLS_VERSIONS",
    "TRAEFIK_DEFAULT_CIPHER_SUITES",
    "ServerTLSSettings",
    "TLSOptionsError",
    "build_server_context",
    "compile_server_options",
    "go_cipher_name",
    "refuses_alpn",
    "resolve_host_options",
    "resolve_router_options",
]

#: The options a TLS router gets when it names none; never qualified with a provider.
DEFAULT_OPTIONS = "default"


class TLSOptionsError(ValueError):
    """TLS options that cannot be applied; the message names the option."""


TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "VersionTLS10": ssl.TLSVersion.TLSv1,
    "VersionTLS11": ssl.TLSVersion.TLSv1_1,
    "VersionTLS12": ssl.TLSVersion.TLSv1_2,
    "VersionTLS13": ssl.TLSVersion.TLSv1_3,
}

# Go cipher suite names -> OpenSSL names, in Go's own preference order (crypto/tls
# cipherSuitesPreferenceOrder): since Go 1.17 the configured order is ignored and this one
# applies, so suites are sorted by it and the server's order is enforced. None marks the names
# that configure nothing: TLS 1.3 suites (Go ignores the setting for TLS 1.3, and Python's ssl
# cannot set them anyway) and the TLS_FALLBACK_SCSV signalling value.
_CIPHER_SUITES: Mapping[str, str | None] = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
    "TLS_FALLBACK_SCSV": None,
}
_CIPHER_RANK = {name: rank for rank, name in enumerate(_CIPHER_SUITES)}
# OpenSSL name -> Go's name, as Go's own reverse table has it: where two Go names share a suite
# (the CHACHA20 pair), the later ``_SHA256`` spelling wins. TLS 1.3 suites have one name.
_GO_CIPHER_NAMES = {openssl or name: name for name, openssl in _CIPHER_SUITES.items()}

#: Traefik's cipherSuites when none are configured: Go's tls.CipherSuites(), the suites Go
#: implements without known weaknesses.
TRAEFIK_DEFAULT_CIPHER_SUITES: tuple[str, ...] = (
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
)

# Traefik's curve names (Go constants and RFC 8446 names) -> OpenSSL group names. The ML-KEM
# hybrids are known to Traefik but cannot be selected through Python's ssl (no NID for
# set_ecdh_curve), hence None.
_CURVES: Mapping[str, str | None] = {
    "CurveP256": "prime256v1",
    "secp256r1": "prime256v1",
    "CurveP384": "secp384r1",
    "secp384r1": "secp384r1",
    "CurveP521": "secp521r1",
    "secp521r1": "secp521r1",
    "X25519": "X25519",
    "x25519": "X25519",
    "X25519MLKEM768": None,
    "x25519mlkem768": None,
    "SecP256r1MLKEM768": None,
    "secp256r1mlkem768": None,
    "SecP384r1MLKEM1024": None,
    "secp384r1mlkem1024": None,
}

#: Every Traefik clientAuthType and the verify mode it maps to (see compile_server_options).
CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_NEEDS_CA_FILES = ("RequireAnyClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert")


@dataclass(frozen=True)
class ServerTLSSettings:
    """TLS options checked and translated into what Python's ssl can apply.

    ``ciphers`` is the OpenSSL cipher string for TLS 1.2 and below (None: keep Python's, because
    only TLS 1.3 can be negotiated). ``notes`` says where the result differs from Go's, for the
    control plane to show next to the options.
    """

    minimum_version: ssl.TLSVersion
    maximum_version: ssl.TLSVersion
    ciphers: str | None
    ecdh_curve: str | None
    alpn_protocols: tuple[str, ...]
    verify_mode: ssl.VerifyMode
    client_ca_pem: str
    sni_strict: bool
    session_tickets: bool
    notes: tuple[str, ...]


def compile_server_options(options: TLSOptions) -> ServerTLSSettings:
    """Check ``options`` and translate them for Python's ssl, without building a context.

    Raises TLSOptionsError naming the option for an unknown version, cipher suite, curve or
    clientAuthType, unreadable or invalid caFiles, and combinations no handshake could satisfy.
    Where Python cannot express an option exactly, the closest safe setting is used and a note
    says so:

    * ``curvePreferences``: Python 3.11 can only restrict key exchange to a single group
      (``set_ecdh_curve``), so the first listed curve is the only one offered.
    * ``RequestClientCert``: OpenSSL verifies any certificate it asks for, and Python has no
      callback to accept an unverified one; since a TCP route never reads the certificate, the
      client is not asked (every client still gets through, as with Go).
    * ``RequireAnyClientCert``: the certificate must chain to ``caFiles`` (Go accepts any);
      without caFiles the option is refused rather than failing every handshake.
    * ``preferServerCipherSuites``: ineffective, as in Traefik v3; Go's suite order always
      applies, and so it does here.
    * ``disableSessionTickets``: no tickets in TLS 1.2 or 1.3, but OpenSSL still resumes TLS 1.2
      sessions by session ID, which Go never does.
    """
    notes: list[str] = []
    min_name = options.min_version or "VersionTLS12"
    minimum = _tls_version("minVersion", min_name)
    maximum = ssl.TLSVersion.MAXIMUM_SUPPORTED
    if options.max_version:
        maximum = _tls_version("maxVersion", options.max_version)
        if maximum < minimum:
            raise TLSOptionsError(
                f"maxVersion {options.max_version} is below minVersion {min_name}"
            )

    ciphers = _openssl_ciphers(options.cipher_suites or TRAEFIK_DEFAULT_CIPHER_SUITES, notes)
    if ciphers is None:
        if options.max_version and maximum < ssl.TLSVersion.TLSv1_3:
            raise TLSOptionsError(
                "cipherSuites lists no suite for TLS 1.2 or below, and maxVersion "
                f"{options.max_version} rules out TLS 1.3: no handshake could succeed"
            )
        # Go would offer TLS 1.2 with no suite and fail those handshakes; only 1.3 can succeed.
        minimum = ssl.TLSVersion.TLSv1_3
    elif minimum < ssl.TLSVersion.TLSv1_2:
        # OpenSSL 3 refuses TLS 1.0/1.1 above security level 0; Go allows them when configured.
        ciphers += ":@SECLEVEL=0"

    verify_mode, client_ca_pem = _client_auth(options.client_auth or ClientAuth(), notes)
    if "prefer_server_cipher_suites" in options.model_fields_set:
        notes.append(
            "preferServerCipherSuites is deprecated and has no effect (as in Traefik v3): "
            "Go's cipher suite order always applies"
        )
    if options.disable_session_tickets:
        notes.append(
            "disableSessionTickets: OpenSSL can still resume TLS 1.2 sessions by session ID"
        )
    return ServerTLSSettings(
        minimum_version=minimum,
        maximum_version=maximum,
        ciphers=ciphers,
        ecdh_curve=_ecdh_curve(options.curve_preferences, notes),
        alpn_protocols=_alpn_protocols(options.alpn_protocols),
        verify_mode=verify_mode,
        client_ca_pem=client_ca_pem,
        sni_strict=options.sni_strict,
        session_tickets=not options.disable_session_tickets,
        notes=tuple(notes),
    )


def _tls_version(option: str, value: str) -> ssl.TLSVersion:
    try:
        return TLS_VERSIONS[value]
    except KeyError:
        raise TLSOptionsError(
            f'{option} "{value}" is not a TLS version: use one of {", ".join(TLS_VERSIONS)}'
        ) from None


def _openssl_ciphers(names: Sequence[str], notes: list[str]) -> str | None:
    for name in names:
        if name not in _CIPHER_SUITES:
            raise TLSOptionsError(
                f'cipherSuites: unknown cipher suite "{name}" '
                "(use Go names such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)"
            )
    selected: list[str] = []
    for name in sorted(set(names), key=_CIPHER_RANK.__getitem__):
        openssl_name = _CIPHER_SUITES[name]
        if openssl_name is None or openssl_name in selected:
            continue
        if not _openssl_has_cipher(openssl_name):
            notes.append(f"cipherSuites: {name} is not available in the local OpenSSL; left out")
            continue
        selected.append(openssl_name)
    return ":".join(selected) if selected else None


@functools.cache
def _openssl_has_cipher(openssl_name: str) -> bool:
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        probe.set_ciphers(f"{openssl_name}:@SECLEVEL=0")
    except ssl.SSLError:
        return False
    return True


def _ecdh_curve(names: Sequence[str], notes: list[str]) -> str | None:
    for name in names:
        if name not in _CURVES:
            raise TLSOptionsError(
                f'curvePreferences: unknown curve "{name}" '
                "(use CurveP256, CurveP384, CurveP521, X25519 or secp256r1-style names)"
            )
    settable = [name for name in names if _CURVES[name] is not None]
    unsettable = [name for name in names if _CURVES[name] is None]
    if unsettable:
        notes.append(
            f"curvePreferences: {', '.join(unsettable)} cannot be selected through Python's ssl; "
            "ignored"
        )
    if not settable:
        return None
    chosen = settable[0]
    dropped = [name for name in settable if _CURVES[name] != _CURVES[chosen]]
    if dropped:
        notes.append(
            f"curvePreferences: Python's ssl can offer a single curve; only {chosen} is offered, "
            f"not {', '.join(dropped)}"
        )
    return _CURVES[chosen]


def _alpn_protocols(protocols: Sequence[str]) -> tuple[str, ...]:
    for protocol in protocols:
        if not 0 < len(protocol.encode("utf-8")) <= 255:
            raise TLSOptionsError(f'alpnProtocols: "{protocol}" must be 1 to 255 bytes long')
    return tuple(protocols)


def _client_auth(auth: ClientAuth, notes: list[str]) -> tuple[ssl.VerifyMode, str]:
    # Traefik: caFiles alone mean RequireAndVerifyClientCert; an explicit type overrides that.
    kind = auth.client_auth_type if "client_auth_type" in auth.model_fields_set else ""
    if not kind:
        kind = "RequireAndVerifyClientCert" if auth.ca_files else "NoClientCert"
    if kind not in CLIENT_AUTH_TYPES:
        raise TLSOptionsError(
            f'clientAuth.clientAuthType: unknown type "{kind}" '
            f"(use one of {', '.join(CLIENT_AUTH_TYPES)})"
        )
    ca_pem = "".join(_read_ca_file(index, value) for index, value in enumerate(auth.ca_files))
    if kind in _NEEDS_CA_FILES and not ca_pem:
        if kind == "RequireAnyClientCert":
            raise TLSOptionsError(
                "clientAuth.clientAuthType: RequireAnyClientCert needs caFiles here: Python's ssl "
                "cannot accept a client certificate without verifying it"
            )
        raise TLSOptionsError(f"clientAuth.clientAuthType: {kind} needs caFiles")
    if kind == "RequestClientCert":
        notes.append(
            "clientAuth: RequestClientCert does not ask for a certificate (Python's ssl cannot "
            "ask without verifying); every client still gets through"
        )
    elif kind == "RequireAnyClientCert":
        notes.append(
            "clientAuth: RequireAnyClientCert also requires the certificate to chain to caFiles"
        )
    return CLIENT_AUTH_TYPES[kind], ca_pem


def _read_ca_file(index: int, value: str) -> str:
    try:
        return pem_bundle(read_certificates(value, f"clientAuth.caFiles[{index}]"))
    except CertificateError as exc:
        raise TLSOptionsError(str(exc)) from None


def build_server_context(options: TLSOptions, store: CertificateStore) -> ssl.SSLContext:
    """A server context applying ``options``, serving ``store``'s certificates by SNI.

    The returned context holds the default certificate; its ``sni_callback`` moves each
    handshake to a context holding the certificate the SNI selects (built on first use, with the
    same options), or refuses it with ``unrecognized_name`` under ``sniStrict`` when no configured
    certificate matches, including when the client sent no SNI. Works for sockets and for
    ``SSLObject``/``MemoryBIO`` pairs alike. Raises TLSOptionsError (see compile_server_options);
    callers prefix the message with ``tls.options.<name>: ``.
    """
    settings = compile_server_options(options)
    base = _server_context(settings, store.default)
    by_certificate: dict[LoadedCertificate, ssl.SSLContext] = {store.default: base}

    def select_certificate(
        ssl_object: ssl.SSLObject, server_name: str | None, _context: ssl.SSLContext
    ) -> int | None:
        certificate = store.match(server_name)
        if certificate is None:
            # Refused the way Go reports a missing certificate; otherwise the base context
            # already holds the default certificate.
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME if settings.sni_strict else None
        context = by_certificate.get(certificate)
        if context is None:
            context = by_certificate[certificate] = _server_context(settings, certificate)
        ssl_object.context = context
        return None

    base.sni_callback = select_certificate
    return base


def _server_context(settings: ServerTLSSettings, certificate: LoadedCertificate) -> ssl.SSLContext:
    # Every per-certificate context repeats all settings: switching contexts mid-handshake keeps
    # some from the first one and takes others (trust store, certificate) from the new one.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0/1.1; Traefik still allows them when configured.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = settings.minimum_version
        context.maximum_version = settings.maximum_version
    if settings.ciphers is not None:
        context.set_ciphers(settings.ciphers)
    if settings.ecdh_curve is not None:
        context.set_ecdh_curve(settings.ecdh_curve)
    if settings.alpn_protocols:
        context.set_alpn_protocols(list(settings.alpn_protocols))
    context.verify_mode = settings.verify_mode
    if settings.client_ca_pem:
        context.load_verify_locations(cadata=settings.client_ca_pem)
    if not settings.session_tickets:
        context.options |= ssl.OP_NO_TICKET
        context.num_tickets = 0
    else:
        # Go sends one TLS 1.3 ticket per handshake; OpenSSL's default of two
        # costs a second encryption and write on every new connection.
        context.num_tickets = 1
    certificate.load_into(context)
    return context


def go_cipher_name(openssl_name: str) -> str:
    """The Go name of a negotiated suite (``ssl``'s ``cipher()[0]``), ``unknown`` if Go has none.

    Traefik's access log (``TLSCipher``) and its ``tls_cipher`` metric label use these names.
    """
    return _GO_CIPHER_NAMES.get(openssl_name, "unknown")


def refuses_alpn(server_protocols: Sequence[str], client_protocols: Sequence[str]) -> bool:
    """Whether Go, hence Traefik, aborts a handshake for want of a common ALPN protocol.

    Go sends ``no_application_protocol`` when both sides list protocols and none is shared,
    except when the server lists ``h2`` and the client ``http/1.1``; OpenSSL completes such a
    handshake without ALPN. The terminator, which has the ClientHello's ALPN list before the
    handshake, uses this to close the connection as Traefik would.
    """
    if not server_protocols or not client_protocols:
        return False
    if any(protocol in client_protocols for protocol in server_protocols):
        return False
    return not ("h2" in server_protocols and "http/1.1" in client_protocols)


def resolve_router_options(options: str, provider: str, known: Collection[str]) -> str:
    """The qualified name of the TLS options a terminating TLS router uses.

    An empty ``options`` means ``default``; a name without ``@`` is qualified with the router's
    provider, except ``default``. Raises TLSOptionsError("unknown TLS options: <name>")
    when ``known`` (the qualified names of all options) lacks it; Traefik then still installs the
    route, closing its connections. Passthrough routers ignore their options.
    """
    name = options or DEFAULT_OPTIONS
    if name != DEFAULT_OPTIONS and "@" not in name:
        name = f"{name}@{provider}"
    if name not in known:
        raise TLSOptionsError(f"unknown TLS options: {name}")
    return name


def resolve_host_options(
    options_by_host: Mapping[str, Collection[str]],
) -> tuple[dict[str, str], dict[str, str]]:
    """Traefik's rule for routers reaching one host name with different TLS options.

    ``options_by_host`` maps each host to the resolved option names of the routers that name
    it. A host reached with one name keeps it; a host reached with several gets ``default``, and
    an error for each of its routers. Returns (options name per host, error per conflicting
    host). Hosts compare case-insensitively.

    Traefik applies this to HTTPS routers' ``Host`` domains, where the handshake happens before
    routing. Terminating TCP routers are exempt: each connection is routed on its ClientHello
    first, so it gets the options of the router it matched.
    """
    merged: dict[str, set[str]] = {}
    for host, names in options_by_host.items():
        merged.setdefault(host.lower(), set()).update(names)
    resolved: dict[str, str] = {}
    conflicts: dict[str, str] = {}
    for host, names in merged.items():
        if len(names) == 1:
            resolved[host] = next(iter(names))
        elif names:
            resolved[host] = DEFAULT_OPTIONS
            conflicts[host] = (
                f"found different TLS options for routers on the same host {host}, "
                "so using the default TLS options instead"
            )
    return resolved, conflicts
