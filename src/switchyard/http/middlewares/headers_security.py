"""The security part of `headers`: allowed hosts, HTTPS detection, and the response fields it adds.

Traefik builds this part with the unrolled/secure options it maps from the configuration. Per
request: the host (the first non-empty ``hostsProxyHeaders`` field, else Host) must be one of
``allowedHosts`` (case-insensitive) unless ``isDevelopment``, else Go's ``http.Error`` answers
``500 Bad Host``; the request counts as HTTPS when TLS was terminated or an ``sslProxyHeaders``
field has exactly the configured value. The response then gets its fields, replacing the
backend's: Strict-Transport-Security (``stsSeconds`` not 0, on HTTPS or with
``forceSTSHeader``, never in development), X-Frame-Options, X-Content-Type-Options,
X-Xss-Protection, Public-Key-Pins (HTTPS only, not in development), Content-Security-Policy and
its Report-Only twin (``$NONCE`` becomes a fresh ``'nonce-...'`` per request), Referrer-Policy
and Permissions-Policy. ``featurePolicy`` and the ``ssl*`` redirect options are not passed on,
as in Traefik v3.
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING

from switchyard.http.handler import Handler
from switchyard.http.message import Headers
from switchyard.http.middlewares.headers import (
    EditedHead,
    FieldEdit,
    FieldEdits,
    HeadersOptions,
    apply_edits,
    canonical_name,
    field_value,
)

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

__all__ = ["SecurityPolicy"]

_NONCE = "$NONCE"
_BAD_HOST = Headers([(b"Content-Type", b"text/plain; charset=utf-8"),
                     (b"X-Content-Type-Options", b"nosniff")])


class SecurityPolicy:
    """The checks and fields of one `headers` middleware's security options."""

    __slots__ = ("allowed_hosts", "csp", "csp_report_only", "host_fields", "https_edits",
                 "https_fields", "plain_edits", "plain_fields", "ssl_fields")

    def __init__(self, options: HeadersOptions) -> None:
        development = options.is_development
        self.allowed_hosts = (frozenset(host.lower().encode("utf-8")
                                        for host in options.allowed_hosts)
                              if options.allowed_hosts and not development else None)
        self.host_fields = [name.lower().encode("utf-8") for name in options.hosts_proxy_headers]
        self.ssl_fields = [(name.lower().encode("utf-8"), value.encode("utf-8"))
                           for name, value in options.ssl_proxy_headers.items()]
        # The fields that do not depend on the request, once for HTTPS and once for plain HTTP.
        common: list[FieldEdit] = []
        https: list[FieldEdit] = []
        plain: list[FieldEdit] = []
        seconds = options.sts_seconds or 0
        if seconds and not development:
            value = f"max-age={seconds}"
            if options.sts_include_subdomains:
                value += "; includeSubDomains"
            if options.sts_preload:
                value += "; preload"
            sts = _field(b"Strict-Transport-Security", value)
            https.append(sts)
            if options.force_sts_header:
                plain.append(sts)
        if options.custom_frame_options_value:
            common.append(_field(b"X-Frame-Options", options.custom_frame_options_value))
        elif options.frame_deny:
            common.append(_field(b"X-Frame-Options", "DENY"))
        if options.content_type_nosniff:
            common.append(_field(b"X-Content-Type-Options", "nosniff"))
        if options.custom_browser_xss_value:
            common.append(_field(b"X-Xss-Protection", options.custom_browser_xss_value))
        elif options.browser_xss_filter:
            common.append(_field(b"X-Xss-Protection", "1; mode=block"))
        if options.public_key and not development:
            https.append(_field(b"Public-Key-Pins", options.public_key))
        csp, report_only = options.content_security_policy, options.content_security_policy_report_only
        # With a $NONCE in either policy both are made per request (secure's nonceEnabled).
        per_request = _NONCE in csp or _NONCE in report_only
        self.csp = field_value(csp) if per_request and csp else None
        self.csp_report_only = field_value(report_only) if per_request and report_only else None
        if csp and not per_request:
            common.append(_field(b"Content-Security-Policy", csp))
        if report_only and not per_request:
            common.append(_field(b"Content-Security-Policy-Report-Only", report_only))
        if options.referrer_policy:
            common.append(_field(b"Referrer-Policy", options.referrer_policy))
        if options.permissions_policy:
            common.append(_field(b"Permissions-Policy", options.permissions_policy))
        self.https_fields = [*https, *common]
        self.plain_fields = [*plain, *common]
        self.https_edits = FieldEdits(self.https_fields)
        self.plain_edits = FieldEdits(self.plain_fields)

    def handler(self, next_handler: Handler) -> Handler:
        return SecureHeaders(self, next_handler)

    def host_allowed(self, exchange: Exchange) -> bool:
        allowed = self.allowed_hosts
        if allowed is None:
            return True
        fields = exchange.request.headers
        host = None
        for name in self.host_fields:
            host = fields.get(name)
            if host:
                break
        if not host:
            host = fields.get(b"host") or b""
        return host.lower() in allowed

    def is_https(self, exchange: Exchange) -> bool:
        if exchange.info.tls:
            return True
        fields = exchange.request.headers
        # Go's Header.Get: a missing field reads as "", which an empty configured value matches.
        return any((fields.get(name) or b"") == value for name, value in self.ssl_fields)

    def edits_for(self, exchange: Exchange) -> FieldEdits:
        https = self.is_https(exchange)
        if self.csp is None and self.csp_report_only is None:
            return self.https_edits if https else self.plain_edits
        nonce = b"'nonce-" + base64.b64encode(os.urandom(16)).rstrip(b"=") + b"'"
        fields = list(self.https_fields if https else self.plain_fields)
        if self.csp is not None:
            fields.append((b"content-security-policy", b"Content-Security-Policy",
                           self.csp.replace(_NONCE.encode(), nonce)))
        if self.csp_report_only is not None:
            fields.append((b"content-security-policy-report-only",
                           b"Content-Security-Policy-Report-Only",
                           self.csp_report_only.replace(_NONCE.encode(), nonce)))
        return FieldEdits(fields)


class SecureHeaders:
    """Handler: refuses hosts not allowed, then sets the security fields on the response."""

    __slots__ = ("next", "policy")

    def __init__(self, policy: SecurityPolicy, next_handler: Handler) -> None:
        self.policy = policy
        self.next = next_handler

    def handle(self, exchange: Exchange) -> None:
        policy = self.policy
        if not policy.host_allowed(exchange):
            exchange.respond(500, _BAD_HOST, b"Bad Host\n")
            return
        edits = policy.edits_for(exchange)
        if edits:
            exchange.writer = EditedHead(exchange.writer, apply_edits, edits)
        self.next.handle(exchange)


def _field(name: bytes, value: str) -> FieldEdit:
    return name.lower(), canonical_name(name), field_value(value)
