"""What every HTTP middleware module provides, and what the builder hands it.

A middleware module exposes one function::

    def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap

``options`` is the type's mapping exactly as configured (Traefik's keys, any case); the module
validates it (usually with a ``TraefikModel`` of its own, see :func:`parse_options`) and raises
:class:`MiddlewareError` with a message naming the key and what to do. ``build`` runs once per
router that uses the middleware (Traefik keeps middleware state, a rate limiter's buckets, per
router), and once more to validate it even when no router uses it. The returned ``Wrap`` takes
the next handler and returns the handler that runs the middleware in front of it (see
switchyard.http.handler for what a handler may do with the exchange).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from switchyard.http.handler import Handler

__all__ = ["MiddlewareContext", "MiddlewareError", "Wrap", "parse_options"]

Wrap = Callable[[Handler], Handler]
M = TypeVar("M", bound=BaseModel)


class MiddlewareError(ValueError):
    """A middleware that cannot be built; the message says which key and what to do."""


@dataclass(frozen=True)
class MiddlewareContext:
    """Where a middleware is being built.

    ``name`` is the qualified middleware name (``auth@file``), ``router`` the qualified router
    it is built for ("" when only validated), ``service`` gives the handler of a qualified or
    provider-relative service name (for ``errors``; raises MiddlewareError when it cannot).
    ``kind`` is the type key as configured (``ipWhiteList`` or ``ipAllowList`` for one module).
    """

    name: str
    provider: str
    router: str = ""
    entry_points: tuple[str, ...] = ()
    service: Callable[[str], Handler] | None = None
    kind: str = ""

    def qualify(self, reference: str) -> str:
        """``reference`` with this middleware's provider when it names none."""
        return reference if "@" in reference else f"{reference}@{self.provider}"


def parse_options(model: type[M], options: Mapping[str, Any] | None) -> M:
    """Validate ``options`` with ``model``; an error names the key as the user wrote it."""
    try:
        return model.model_validate(dict(options or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "options"
        raise MiddlewareError(f"{where}: {first['msg']}") from None
