"""Which module builds which `http.middlewares` type; modules are imported when first used."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any

from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap

__all__ = ["build_middleware", "implemented"]

# Traefik's type key -> module in this package. `chain` is the builder's own.
MODULES: dict[str, str] = {
    "addPrefix": "addprefix",
    "basicAuth": "basicauth",
    "buffering": "buffering",
    "circuitBreaker": "circuitbreaker",
    "compress": "compress",
    "contentType": "contenttype",
    "digestAuth": "digestauth",
    "encodedCharacters": "encodedcharacters",
    "errors": "errorpages",
    "forwardAuth": "forwardauth",
    "grpcWeb": "grpcweb",
    "headers": "headers",
    "inFlightReq": "inflightreq",
    "ipAllowList": "ipallowlist",
    "ipWhiteList": "ipallowlist",
    "passTLSClientCert": "passtlsclientcert",
    "rateLimit": "ratelimit",
    "redirectRegex": "redirectregex",
    "redirectScheme": "redirectscheme",
    "replacePath": "replacepath",
    "replacePathRegex": "replacepathregex",
    "retry": "retry",
    "stripPrefix": "stripprefix",
    "stripPrefixRegex": "stripprefixregex",
}


def _module(kind: str) -> Any:
    module = MODULES.get(kind)
    if module is None:
        return None
    try:
        return importlib.import_module(f"{__package__}.{module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.{module}":
            raise
        return None


def implemented(kind: str) -> bool:
    return _module(kind) is not None


def build_middleware(kind: str, options: Mapping[str, Any] | None,
                     context: MiddlewareContext) -> Wrap:
    """The wrap for one middleware of type ``kind`` (Traefik's key, ``stripPrefix``)."""
    module = _module(kind)
    if module is None:
        raise MiddlewareError(f"the {kind} middleware is not implemented by Switchyard yet")
    if context.kind != kind:
        context = dataclasses.replace(context, kind=kind)
    wrap: Wrap = module.build(options or {}, context)
    return wrap
