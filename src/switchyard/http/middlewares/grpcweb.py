"""`grpcWeb`: refused for now. Translating gRPC-Web to gRPC means speaking HTTP/2 (with
trailers) to the backend, and Switchyard's upstream connections speak HTTP/1.1 only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from switchyard.config.dynamic import StrList, TraefikModel
from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap, parse_options

__all__ = ["build"]


class GrpcWebOptions(TraefikModel):
    allow_origins: StrList = []  # noqa: RUF012  (a pydantic field, copied per instance)


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    parse_options(GrpcWebOptions, options)  # a typo is still reported as such
    raise MiddlewareError(
        "the grpcWeb middleware is not supported by Switchyard yet: it needs HTTP/2 (h2c or "
        "TLS) connections to the backend, which the HTTP engine does not have; serve gRPC-Web "
        "from the backend itself (e.g. Envoy or grpcwebproxy) in the meantime")
