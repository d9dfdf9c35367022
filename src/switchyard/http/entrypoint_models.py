"""What an entry point's static ``http`` options add to the HTTP configuration, as Traefik does it.

``entryPoints.<name>.http.redirections.entryPoint`` becomes a router ``<name>-to-<to>@internal``
(rule ``HostRegexp(`^.+$`)``, the given priority, service ``noop@internal``) with a
``redirectScheme`` middleware ``redirect-<name>-to-<to>@internal``, so the API lists both as
Traefik's does. ``http.middlewares``, ``http.tls`` and ``observability`` form the entry point's model:
every HTTP router on that entry point gets the model's middlewares in front of its own, the
model's ``tls`` when it has none of its own, and each ``observability`` switch
(``accessLogs``, ``metrics``, ``tracing``) it leaves unset. A router on several entry points of
which one has a model is split per entry point, the copies named ``<entrypoint>-<router>``, as
Traefik names them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field, ValidationError, field_validator

from switchyard.config.dynamic import StrList, TraefikModel
from switchyard.config.http import (
    HTTPMiddleware,
    HTTPRouter,
    HTTPRouterTLS,
    HTTPSection,
    RouterObservability,
)
from switchyard.config.static import EntryPoint
from switchyard.rules.request import split_host_port

__all__ = ["EntryPointHTTP", "EntryPointModel", "apply_models", "entry_point_http"]

INTERNAL = "internal"
#: Go's math.MaxInt - 1, the generated redirection router's default priority.
REDIRECT_PRIORITY = (1 << 63) - 2
_PORT_ONLY = re.compile(r"^:(\d+)$")
_NO_TARGET = ('unable to create the redirection: the entry point or the port is missing; set '
              '`to` to an entry point name or ":port"')
_NO_SUCH_ENTRY_POINT = "'to' entry point field references a non-existing entry point"


class RedirectEntryPoint(TraefikModel):
    to: str = ""
    scheme: str = "https"
    permanent: bool = True
    priority: int = REDIRECT_PRIORITY


class Redirections(TraefikModel):
    entry_point: RedirectEntryPoint | None = None


class EntryPointHTTP(TraefikModel):
    """``entryPoints.<name>.http``: the keys read here; the others stay as given."""

    redirections: Redirections | None = None
    middlewares: StrList = Field(default_factory=list)
    tls: HTTPRouterTLS | None = None

    @field_validator("tls", mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        # `--entryPoints.websecure.http.tls=true` (flags and TRAEFIK_* variables) switches TLS on
        # with its defaults, as in Traefik; `false` leaves it off.
        if isinstance(value, bool) or (isinstance(value, str)
                                       and value.strip().lower() in ("true", "false")):
            return {} if str(value).strip().lower() == "true" else None
        return value


@dataclass(frozen=True)
class EntryPointModel:
    """What every HTTP router on one entry point inherits."""

    middlewares: tuple[str, ...] = ()
    tls: HTTPRouterTLS | None = None
    observability: RouterObservability | None = None


def _normalize(name: str) -> str:
    """Traefik's provider.Normalize: runs of characters other than letters and digits become
    one '-', none at either end."""
    return "-".join(part for part in re.split(r"[^\w]|_", name) if part)


def _address_port(address: str) -> str:
    return split_host_port(address.rpartition("/")[0] if "/" in address else address)[1]


def entry_point_http(entry_points: Mapping[str, EntryPoint]
                     ) -> tuple[HTTPSection, dict[str, EntryPointModel], list[tuple[str, str]]]:
    """From the static entry points: the ``internal`` provider's routers and middlewares for
    redirections, the models by entry point name, and the problems found as (key, message);
    what has a problem adds nothing."""
    routers: dict[str, HTTPRouter] = {}
    middlewares: dict[str, HTTPMiddleware] = {}
    models: dict[str, EntryPointModel] = {}
    problems: list[tuple[str, str]] = []
    addresses = {name: entry_point.address for name, entry_point in entry_points.items()}
    for name, entry_point in entry_points.items():
        observability = None
        if entry_point.observability is not None:
            try:
                observability = RouterObservability.model_validate(entry_point.observability)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                problems.append((f"entryPoints.{name}.observability.{where}", first["msg"]))
        raw = entry_point.http
        if not raw:
            if observability is not None:
                models[name] = EntryPointModel(observability=observability)
            continue
        try:
            config = EntryPointHTTP.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            problems.append((f"entryPoints.{name}.http.{where}", first["msg"]))
            continue
        if config.middlewares or config.tls is not None or observability is not None:
            models[name] = EntryPointModel(tuple(config.middlewares), config.tls, observability)
        if config.redirections is None:
            continue
        redirect = config.redirections.entry_point
        key = f"entryPoints.{name}.http.redirections.entryPoint"
        if redirect is None or not redirect.to:
            problems.append((key, _NO_TARGET))
            continue
        port_only = _PORT_ONLY.match(redirect.to)
        if port_only:
            port = port_only.group(1)
        elif redirect.to not in addresses:
            problems.append((f"{key}.to", f"{_NO_SUCH_ENTRY_POINT}: {redirect.to}"))
            continue
        else:
            try:
                port = _address_port(addresses[redirect.to])
            except ValueError as exc:
                address = addresses[redirect.to]
                problems.append((f"{key}.to", f'invalid entry point "{name}" address "{address}": {exc}'))
                continue
        router_name = _normalize(f"{name}-to-{redirect.to}")
        rule = "HostRegexp(`^.+$`)"
        if entry_point.allow_acme_by_pass:
            rule += " && !PathPrefix(`/.well-known/acme-challenge/`)"
        routers[router_name] = HTTPRouter.model_validate({
            "rule": rule, "ruleSyntax": "default", "entryPoints": [name],
            "middlewares": [f"redirect-{router_name}"], "service": "noop@internal",
            "priority": redirect.priority})
        middlewares[f"redirect-{router_name}"] = HTTPMiddleware.model_validate({
            "redirectScheme": {"scheme": redirect.scheme, "port": port,
                               "permanent": redirect.permanent}})
    return HTTPSection(routers=routers, middlewares=middlewares), models, problems


def apply_models(routers: Mapping[str, HTTPRouter], models: Mapping[str, EntryPointModel],
                 default_entry_points: Sequence[str]) -> dict[str, HTTPRouter]:
    """The routers (qualified names) with the entry point models applied."""
    if not models:
        return dict(routers)
    result: dict[str, HTTPRouter] = {}
    for qualified, router in routers.items():
        if router.parent_refs:
            result[qualified] = router
            continue
        entry_points = list(router.entry_points or default_entry_points)
        plain: list[str] = []
        for entry_point in entry_points:
            model = models.get(entry_point)
            if model is None:
                plain.append(entry_point)
                continue
            name = f"{entry_point}-{qualified}" if len(entry_points) > 1 else qualified
            result[name] = router.model_copy(update={
                "entry_points": [entry_point],
                "middlewares": [*model.middlewares, *router.middlewares],
                "tls": router.tls if router.tls is not None else model.tls,
                "observability": _observability(router.observability, model.observability),
            })
        if plain:
            result[qualified] = router.model_copy(update={"entry_points": plain})
    return result


def _observability(own: RouterObservability | None, model: RouterObservability | None
                   ) -> RouterObservability | None:
    """A router's observability switches, those it leaves unset taken from the entry point."""
    if model is None:
        return own
    if own is None:
        return model
    return own.model_copy(update={
        key: getattr(model, key) for key in ("access_logs", "metrics", "tracing")
        if getattr(own, key) is None})
