"""REST API: Traefik's JSON shapes for the runtime, plus live connections and traffic counters."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, get_args

from aiohttp import web

from switchyard import __version__
from switchyard.addresses import host_port
from switchyard.api.internal_elements import InternalElements, internal_elements
from switchyard.api.metrics import Totals, TrafficSnapshot, traffic_snapshot
from switchyard.build import qualify
from switchyard.config.durations import go_duration
from switchyard.config.dynamic import TCPMiddleware, TCPService, TraefikModel
from switchyard.config.static import EntryPoint as EntryPointConfig
from switchyard.observability.record import CloseReason, ConnectionRecord, Side
from switchyard.observability.stats import STATS
from switchyard.services import LoadBalancer
from switchyard.status import ElementStatus

if TYPE_CHECKING:
    from switchyard.api.instance import RunningInstance
    from switchyard.proxy.lifecycle import LiveConnection

log = logging.getLogger("switchyard.api")

Item = dict[str, Any]

# Go's encoding/json with `omitempty` drops zero values, but these fields have no
# omitempty in Traefik's structs and are always written.
_ALWAYS_WRITTEN = frozenset({"passthrough"})

_DEFAULT_PER_PAGE = 100
_NEXT_PAGE_HEADER = "X-Next-Page"
# Go's strconv.Atoi: an optional sign and ASCII digits, nothing else (no spaces, no "_").
_GO_INT = re.compile(r"([+-]?)([0-9]+)")
_GO_INT_MAX = 2**63 - 1  # Traefik's int on the 64-bit platforms it ships for


# --- Go-shaped JSON ----------------------------------------------------------------------


def go_json(model: TraefikModel) -> Item:
    """A config model as Traefik's encoding/json writes the Go struct.

    Optional sub-objects are Go pointers: written whenever set. Other fields
    are written unless zero (`omitempty`). Float fields are durations, which
    Traefik writes as Go duration text. Unknown keys the user wrote are not
    part of the config, so they are left out.
    """
    out: Item = {}
    for name, info in type(model).model_fields.items():
        alias = info.alias or name
        value = getattr(model, name)
        if value is None:
            continue
        pointer = type(None) in get_args(info.annotation)
        if not pointer and alias not in _ALWAYS_WRITTEN and _is_zero(value):
            continue
        out[alias] = _go_value(value)
    return out


def _is_zero(value: object) -> bool:
    if isinstance(value, TraefikModel):
        return False  # Go writes struct values even when empty
    return value in ("", 0, False) or value == [] or value == {}


def _go_value(value: object) -> object:
    if isinstance(value, TraefikModel):
        return go_json(value)
    if isinstance(value, float):
        return go_duration(value)
    if isinstance(value, list):
        return [_go_value(v) if isinstance(v, TraefikModel) else v for v in value]
    if isinstance(value, dict):
        # Raw sections (forwardedHeaders, http, ...) are shown as the user wrote them.
        return {str(k): _go_value(v) if isinstance(v, TraefikModel) else v
                for k, v in value.items()}
    return value


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


# --- runtime elements --------------------------------------------------------------------


def _status_fields(data: Item, status: ElementStatus) -> Item:
    if status.errors:
        data["error"] = list(status.errors)
    data["status"] = status.status
    return data


def router_priority(status: ElementStatus) -> int:
    """The computed priority Traefik writes back into the router, else the configured one."""
    return status.priority or int(status.config.priority)


def router_info(app: RunningInstance, status: ElementStatus) -> Item:
    """Traefik's TCPRouterInfo: the router config as the runtime holds it, status, errors."""
    config = status.config
    data = go_json(config)
    # The aggregator fills in default entry points and qualifies middleware names.
    entry_points = list(config.entry_points) or app.static.default_entry_points()
    if entry_points:
        data["entryPoints"] = entry_points
    if config.middlewares:
        data["middlewares"] = [qualify(m, status.provider) for m in config.middlewares]
    data.pop("priority", None)
    if router_priority(status):
        data["priority"] = router_priority(status)
    _status_fields(data, status)
    if status.using:
        data["using"] = list(status.using)
    return data


def service_type(config: TCPService) -> str:
    """Traefik's extractType: the first kind set, in Go field order."""
    return "loadbalancer" if config.load_balancer is not None else (
        "weighted" if config.weighted is not None else "")


def middleware_type(config: TCPMiddleware) -> str:
    """Traefik's extractType: the first kind set, lower-cased (not the one that acts)."""
    kinds = config.kinds
    return kinds[0].lower() if kinds else ""


def service_info(app: RunningInstance, status: ElementStatus) -> Item:
    """Traefik's TCPServiceInfo with serverStatus, which only built services have."""
    data = _status_fields(go_json(status.config), status)
    if status.used_by:
        data["usedBy"] = sorted(status.used_by)
    built = app.runtime.service_objects.get(status.name)
    if isinstance(built, LoadBalancer) and built.servers:
        data["serverStatus"] = built.server_status()
    return data


def middleware_info(status: ElementStatus) -> Item:
    data = _status_fields(go_json(status.config), status)
    if status.used_by:
        data["usedBy"] = sorted(status.used_by)
    return data


def _named(data: Item, status: ElementStatus) -> Item:
    data["name"] = status.name
    data["provider"] = status.provider
    return data


def router_item(app: RunningInstance, status: ElementStatus, snap: TrafficSnapshot) -> Item:
    data = _named(router_info(app, status), status)
    data["priorityStr"] = str(router_priority(status))
    data["traffic"] = snap.routers.get(status.name, Totals()).as_json()
    return data


def service_item(app: RunningInstance, status: ElementStatus, snap: TrafficSnapshot) -> Item:
    data = _named(service_info(app, status), status)
    kind = service_type(status.config)
    if kind:
        data["type"] = kind
    data["traffic"] = snap.services.get(status.name, Totals()).as_json()
    built = app.runtime.service_objects.get(status.name)
    if isinstance(built, LoadBalancer):
        data["serverTraffic"] = {
            server.address: snap.servers.get((status.name, server.address), Totals()).as_json()
            for server in built.servers}
        if built.failures is not None:  # passiveHealthCheck (not in Traefik's TCP API)
            data["passiveEjections"] = {server.address: built.failures.ejections.get(
                server.address, 0) for server in built.servers}
    return data


def middleware_item(status: ElementStatus) -> Item:
    data = _named(middleware_info(status), status)
    kind = middleware_type(status.config)
    if kind:
        data["type"] = kind
    # Connections it refused, on every router and entry point (not in Traefik's API, so only
    # written once there are some).
    refused = sum(count for (_, _, name), count in STATS.rejections.items()
                  if name == status.name)
    if refused:
        data["rejections"] = refused
    return data


def http_router_item(app: RunningInstance, status: ElementStatus) -> Item:
    """Traefik's RouterInfo for an HTTP router, with its observability switches resolved.

    Traefik's API has no traffic counters for HTTP routers (the TCP ones here are an
    addition); the HTTP numbers are on /metrics.
    """
    data = _named(router_info(app, status), status)
    data["priorityStr"] = str(router_priority(status))
    observability = status.config.observability
    switches = {"accessLogs": None, "metrics": None, "tracing": None}
    if observability is not None:
        switches = {"accessLogs": observability.access_logs, "metrics": observability.metrics,
                    "tracing": observability.tracing}
    data["observability"] = {**{key: value is not False for key, value in switches.items()},
                             "traceVerbosity": (observability.trace_verbosity
                                                if observability is not None else "minimal")}
    return data


def http_service_item(app: RunningInstance, status: ElementStatus) -> Item:
    """Traefik's ServiceInfo: config, status, usedBy, type, serverStatus of load balancers."""
    data = _named(_status_fields(go_json(status.config), status), status)
    if status.used_by:
        data["usedBy"] = sorted(status.used_by)
    kinds = status.config.kinds
    if kinds:
        data["type"] = kinds[0].lower()
    for balancer in app.runtime.http.balancers:
        if balancer.name == status.name and balancer.servers:
            data["serverStatus"] = {server.url: "UP" if server.up else "DOWN"
                                    for server in balancer.servers}
    return data


def http_middleware_item(status: ElementStatus) -> Item:
    data = _named(middleware_info(status), status)
    kinds = status.config.kinds
    if kinds:
        data["type"] = kinds[0].lower()
    return data


_CONNECTION_FILTERS = ("entryPoint", "router", "service", "server", "sni")


def _admin_close(connections: list[LiveConnection]) -> list[int]:
    """Close them with the reason admin_close; the ids closed."""
    closed = []
    for conn in connections:
        record = conn.record
        if record.reason is not None:
            continue
        log.warning("closing connection %d (%s:%d, router %s) through the API", record.id,
                    record.client_ip, record.client_port, record.router or "-")
        conn.close(CloseReason.ADMIN_CLOSE, "closed through the API", Side.SWITCHYARD)
        closed.append(record.id)
    return closed


def connection_item(record: ConnectionRecord, now: float) -> Item:
    return {
        "id": record.id,
        "entryPoint": record.entrypoint,
        "client": host_port(record.client_ip, record.client_port),
        "clientIP": record.client_ip,
        "router": record.router,
        "service": record.service,
        "server": record.server,
        "sni": record.sni or "",
        "tls": record.is_tls,
        "state": record.phase.value,
        "started": rfc3339(record.started_at),
        "age": round(now - record.started, 3),
        "bytesIn": record.bytes_in,
        "bytesOut": record.bytes_out,
    }


def _section(elements: Mapping[str, ElementStatus], enabled: int = 0) -> dict[str, int]:
    """Totals of a kind; ``enabled`` more elements that are always enabled (internal ones)."""
    statuses = [e.status for e in elements.values()]
    return {"total": len(statuses) + enabled, "warnings": statuses.count("warning"),
            "errors": statuses.count("disabled")}


_EMPTY_SECTION = {"total": 0, "warnings": 0, "errors": 0}


# --- list queries ------------------------------------------------------------------------


class BadRequest(Exception):
    """A query Traefik answers with 400; the message starts as Traefik's, then says what to do."""


class ListQuery:
    """Traefik's list parameters: search, status, serviceName, middlewareName, sort, pages."""

    def __init__(self, query: Mapping[str, str]) -> None:
        self.search = query.get("search", "").lower()
        self.status = query.get("status", "")
        self.service_name = query.get("serviceName", "")
        self.middleware_name = query.get("middlewareName", "")
        self.sort_by = query.get("sortBy", "")
        # Traefik sorts ascending only for exactly "asc" (or nothing).
        self.descending = query.get("direction", "asc") not in ("asc", "")
        self.per_page = _positive_int(query, "per_page", _DEFAULT_PER_PAGE)
        self.page = _positive_int(query, "page", 1)

    def keeps(self, item: Item, *searched: str, router: bool = False) -> bool:
        """Traefik's criterion; serviceName and middlewareName filter routers only."""
        if self.status and item.get("status", "").lower() != self.status.lower():
            return False
        if self.search and not any(self.search in str(item.get(k, "")).lower()
                                   for k in searched):
            return False
        if not router:
            return True
        if self.service_name:
            reference = str(item.get("service", ""))
            if "@" in reference:
                if self.service_name != reference:
                    return False
            elif self.service_name.partition("@")[0] != reference:
                return False
        return not self.middleware_name or self.middleware_name in item.get("middlewares", [])

    def order(self, items: list[Item], keys: Mapping[str, Callable[[Item], Any]]) -> None:
        key = keys.get(self.sort_by)
        if key is None:
            items.sort(key=lambda i: i["name"], reverse=self.descending)
        else:
            items.sort(key=lambda i: (key(i), i["name"]), reverse=self.descending)

    def page_of(self, items: list[Item]) -> web.Response:
        start = (self.page - 1) * self.per_page
        if start != 0 and start >= len(items):
            last = max(1, -(-len(items) // self.per_page))
            raise BadRequest(f"invalid request: page: {self.page}, per_page: {self.per_page}; "
                             f"there {_count(len(items))} at {self.per_page} per page, so page "
                             + (f"must be from 1 to {last}" if last > 1 else "must be 1"))
        next_page = self.page + 1 if self.page * self.per_page < len(items) else 1
        return web.json_response(items[start:start + self.per_page],
                                 headers={_NEXT_PAGE_HEADER: str(next_page)})


def _count(items: int) -> str:
    return "are no items" if items == 0 else ("is 1 item" if items == 1 else f"are {items} items")


def _positive_int(query: Mapping[str, str], key: str, default: int) -> int:
    raw = query.get(key, "")
    if not raw:
        return default
    value, in_range = go_atoi(raw)
    if not in_range or value <= 0:
        shown = raw if len(raw) <= 24 else f"{raw[:20]}... ({len(raw)} characters)"
        raise BadRequest(f"invalid request: {key}: {value}; {key} must be a whole number from "
                         f"1 to {_GO_INT_MAX}, got {json.dumps(shown)}")
    return value


def go_atoi(text: str) -> tuple[int, bool]:
    """Go's strconv.Atoi: (value, True), or (what Go returns with its error, False).

    Go returns 0 for text that is not a number and the nearest int64 limit for one out of
    range. Digits are counted before converting, so thousands of them cost no more than
    twenty (Python's int() refuses more than 4,300 digits, and is quadratic below that).
    """
    found = _GO_INT.fullmatch(text)
    if found is None:
        return 0, False
    sign, digits = found.groups()
    digits = digits.lstrip("0") or "0"
    negative = sign == "-"
    limit = _GO_INT_MAX + 1 if negative else _GO_INT_MAX
    magnitude = int(digits) if len(digits) <= 19 else limit + 1
    if magnitude > limit:
        return (-limit if negative else limit), False
    return (-magnitude if negative else magnitude), True


_ROUTER_SORT: dict[str, Callable[[Item], Any]] = {
    "provider": lambda i: i["provider"],
    "priority": lambda i: i.get("priority", 0),
    "status": lambda i: i["status"],
    "rule": lambda i: i.get("rule", ""),
    "service": lambda i: i.get("service", ""),
    "entryPoints": lambda i: len(i.get("entryPoints", [])),
}
_SERVICE_SORT: dict[str, Callable[[Item], Any]] = {
    "type": lambda i: i.get("type", ""),
    "servers": lambda i: len(i.get("loadBalancer", {}).get("servers", [])),
    "provider": lambda i: i["provider"],
    "status": lambda i: i["status"],
}
_MIDDLEWARE_SORT: dict[str, Callable[[Item], Any]] = {
    "type": lambda i: i.get("type", ""),
    "provider": lambda i: i["provider"],
    "status": lambda i: i["status"],
}


def _not_found(message: str) -> web.Response:
    return web.json_response({"message": message}, status=404)


def _one(request: web.Request, statuses: Mapping[str, ElementStatus], what: str,
         item: Callable[[ElementStatus], Item]) -> web.Response:
    """One element by its (path-unescaped) name, or Traefik's 404 JSON."""
    name = request.match_info["name"]
    status = statuses.get(name)
    if status is None:
        return _not_found(f"{what} not found: {name}")
    return web.json_response(item(status))


# --- handlers ----------------------------------------------------------------------------


class APIHandlers:
    """The `/api/*` endpoints; every answer is built from the runtime current at request time."""

    def __init__(self, app: RunningInstance) -> None:
        self.app = app
        self.started = time.time()

    def routes(self, prefix: str) -> list[web.RouteDef]:
        get = web.get
        api = f"{prefix}/api"
        return [
            get(f"{api}/rawdata", self.rawdata),
            get(f"{api}/overview", self.overview),
            get(f"{api}/version", self.version),
            get(f"{api}/entrypoints", self.entrypoints),
            get(f"{api}/entrypoints/{{name:.+}}", self.entrypoint),
            get(f"{api}/tcp/routers", self.routers),
            get(f"{api}/tcp/routers/{{name:.+}}", self.router),
            get(f"{api}/tcp/services", self.services),
            get(f"{api}/tcp/services/{{name:.+}}", self.service),
            get(f"{api}/tcp/middlewares", self.middlewares),
            get(f"{api}/tcp/middlewares/{{name:.+}}", self.middleware),
            get(f"{api}/tcp/connections", self.connections),
            web.delete(f"{api}/tcp/connections", self.close_connections),
            web.delete(f"{api}/tcp/connections/{{id}}", self.close_connection),
            get(f"{api}/http/routers", self.http_routers),
            get(f"{api}/http/routers/{{name:.+}}", self.http_router),
            get(f"{api}/http/services", self.http_services),
            get(f"{api}/http/services/{{name:.+}}", self.http_service),
            get(f"{api}/http/middlewares", self.http_middlewares),
            get(f"{api}/http/middlewares/{{name:.+}}", self.http_middleware),
            get(f"{api}/explain", self.explain),
        ]

    @staticmethod
    def _listing(request: web.Request, build: Callable[[ListQuery], list[Item]],
                 sort_keys: Mapping[str, Callable[[Item], Any]]) -> web.Response:
        try:
            query = ListQuery(request.query)
            items = build(query)
            query.order(items, sort_keys)
            return query.page_of(items)
        except BadRequest as exc:
            return web.json_response({"message": str(exc)}, status=400)

    # -- tcp routers, services, middlewares ------------------------------

    async def routers(self, request: web.Request) -> web.Response:
        snap = traffic_snapshot(self.app)
        items = [router_item(self.app, s, snap) for s in self.app.runtime.routers.values()]
        return self._listing(
            request, lambda q: [i for i in items if q.keeps(i, "rule", "name", router=True)],
            _ROUTER_SORT)

    async def router(self, request: web.Request) -> web.Response:
        return _one(request, self.app.runtime.routers, "router",
                    lambda s: router_item(self.app, s, traffic_snapshot(self.app)))

    async def services(self, request: web.Request) -> web.Response:
        snap = traffic_snapshot(self.app)
        items = [service_item(self.app, s, snap) for s in self.app.runtime.services.values()]
        return self._listing(
            request, lambda q: [i for i in items if q.keeps(i, "name")], _SERVICE_SORT)

    async def service(self, request: web.Request) -> web.Response:
        return _one(request, self.app.runtime.services, "service",
                    lambda s: service_item(self.app, s, traffic_snapshot(self.app)))

    async def middlewares(self, request: web.Request) -> web.Response:
        items = [middleware_item(s) for s in self.app.runtime.middlewares.values()]
        return self._listing(
            request, lambda q: [i for i in items if q.keeps(i, "name")], _MIDDLEWARE_SORT)

    async def middleware(self, request: web.Request) -> web.Response:
        return _one(request, self.app.runtime.middlewares, "middleware", middleware_item)

    # -- http routers, services, middlewares ------------------------------

    def _internal(self) -> InternalElements:
        """What Traefik's internal provider would publish for this static configuration."""
        routers = ((s.name, qualify(s.config.service, s.provider))
                   for s in self.app.runtime.http.routers.values() if s.config.service)
        return internal_elements(self.app.static, routers)

    async def http_routers(self, request: web.Request) -> web.Response:
        items = [http_router_item(self.app, s) for s in self.app.runtime.http.routers.values()]
        items += self._internal().routers.values()
        return self._listing(
            request, lambda q: [i for i in items if q.keeps(i, "rule", "name", router=True)],
            _ROUTER_SORT)

    async def http_router(self, request: web.Request) -> web.Response:
        internal = self._internal().routers.get(request.match_info["name"])
        if internal is not None:
            return web.json_response(internal)
        return _one(request, self.app.runtime.http.routers, "router",
                    lambda s: http_router_item(self.app, s))

    async def http_services(self, request: web.Request) -> web.Response:
        items = [http_service_item(self.app, s) for s in self.app.runtime.http.services.values()]
        items += self._internal().services.values()
        return self._listing(
            request, lambda q: [i for i in items if q.keeps(i, "name")], _SERVICE_SORT)

    async def http_service(self, request: web.Request) -> web.Response:
        internal = self._internal().services.get(request.match_info["name"])
        if internal is not None:
            return web.json_response(internal)
        return _one(request, self.app.runtime.http.services, "service",
                    lambda s: http_service_item(self.app, s))

    async def http_middlewares(self, request: web.Request) -> web.Response:
        items = [http_middleware_item(s) for s in self.app.runtime.http.middlewares.values()]
        items += self._internal().middlewares.values()
        return self._listing(
            request, lambda q: [i for i in items if q.keeps(i, "name")], _MIDDLEWARE_SORT)

    async def http_middleware(self, request: web.Request) -> web.Response:
        internal = self._internal().middlewares.get(request.match_info["name"])
        if internal is not None:
            return web.json_response(internal)
        return _one(request, self.app.runtime.http.middlewares, "middleware",
                    http_middleware_item)

    # -- explain, with this instance's live state (not in Traefik) -----------

    async def explain(self, request: web.Request) -> web.Response:
        """`switchyard explain` against the runtime this instance routes with right now."""
        from switchyard.explain import ExplainError, explain
        from switchyard.explain_http import RequestQuestion

        query = request.query
        flag = {"true": True, "1": True, "false": False, "0": False, "": False}
        try:
            tls_text, pg_text = query.get("tls", "").lower(), query.get("postgres", "").lower()
            if tls_text not in flag or pg_text not in flag:
                raise ExplainError("tls and postgres take true or false")
            entrypoint = query.get("entryPoint", "")
            pairs = []
            for header in query.getall("header", []):
                name, colon, value = header.partition(":")
                if not colon or not name.strip():
                    raise ExplainError(f'header "{header}": write it as "Name: value"')
                pairs.append((name.strip(), value.strip()))
            question = RequestQuestion(query.get("host", ""), query.get("path") or "/",
                                       query.get("method") or "GET", tuple(pairs))
            found = explain(self.app.runtime, self.app.static, entrypoint,
                            query.get("clientIP", ""), tls=flag[tls_text],
                            sni=query.get("sni") or None, alpn=query.getall("alpn", []),
                            postgres=flag[pg_text],
                            challenges=self.app.challenges(entrypoint), live=True,
                            request=question)
        except ExplainError as exc:
            return web.json_response({"message": str(exc)}, status=400)
        return web.json_response(found.as_json())

    # -- live connections (not in Traefik) --------------------------------

    def _live(self) -> list[tuple[LiveConnection, Item]]:
        now = time.monotonic()
        found = []
        for ep in self.app.entrypoints.values():
            for conn in ep.connections:
                item = connection_item(conn.record, now)
                item["name"] = f'{item["entryPoint"]}/{item["client"]}'
                found.append((conn, item))
        return found

    @staticmethod
    def _filtered(found: list[tuple[LiveConnection, Item]], query: Mapping[str, str]
                  ) -> list[tuple[LiveConnection, Item]]:
        """Exact filters: entryPoint, router, service, server, sni; client is an IP or IP:port."""
        wanted = {k: query[k] for k in _CONNECTION_FILTERS if query.get(k)}
        client = query.get("client", "")
        return [(conn, item) for conn, item in found
                if all(item[k] == v for k, v in wanted.items())
                and (not client or client in (item["clientIP"], item["client"]))]

    async def connections(self, request: web.Request) -> web.Response:
        items = [item for _, item in self._filtered(self._live(), request.query)]

        def searched(q: ListQuery) -> list[Item]:
            return [i for i in items
                    if q.keeps(i, "client", "router", "service", "server", "sni")]

        # Oldest first unless the client asks for another order.
        return self._listing(request, searched, {"": lambda i: -i["age"],
                                                 "age": lambda i: i["age"],
                                                 "bytes": lambda i: i["bytesIn"] + i["bytesOut"]})

    async def close_connections(self, request: web.Request) -> web.Response:
        """Close every live connection the filters select; at least one filter is needed."""
        if not any(request.query.get(k) for k in (*_CONNECTION_FILTERS, "client")):
            return web.json_response({"message": (
                "give at least one filter (entryPoint, router, service, server, sni, client), "
                "or DELETE /api/tcp/connections/{id} for one connection")}, status=400)
        chosen = self._filtered(self._live(), request.query)
        return web.json_response({"closed": _admin_close([conn for conn, _ in chosen])})

    async def close_connection(self, request: web.Request) -> web.Response:
        wanted = request.match_info["id"]
        chosen = [conn for conn, item in self._live() if str(item["id"]) == wanted]
        if not chosen:
            return _not_found(f"no live connection has the id {wanted}")
        return web.json_response({"closed": _admin_close(chosen)})

    # -- entry points -----------------------------------------------------

    def _entrypoint_items(self) -> list[Item]:
        snap = traffic_snapshot(self.app)
        configs = dict(self.app.static.entry_points)
        for name in self.app.internal:
            # Traefik creates the implicit `traefik` entry point on :8080 the same way.
            configs.setdefault(name, EntryPointConfig(address=":8080"))
        items = []
        for name, config in sorted(configs.items()):
            item = go_json(config)
            item["name"] = name
            if name in self.app.entrypoints:
                item["traffic"] = snap.entrypoints.get(name, Totals()).as_json()
                # RunningInstance addition: where it really listens (port 0 picks one).
                item["listening"] = self.app.entrypoints[name].address
            items.append(item)
        return items

    async def entrypoints(self, request: web.Request) -> web.Response:
        items = self._entrypoint_items()
        return self._listing(request, lambda q: items, {})

    async def entrypoint(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        for item in self._entrypoint_items():
            if item["name"] == name:
                return web.json_response(item)
        return _not_found(f"entry point not found: {name}")

    # -- whole-runtime views ---------------------------------------------

    async def rawdata(self, request: web.Request) -> web.Response:
        runtime = self.app.runtime
        data: Item = {}
        http, internal = runtime.http, self._internal()
        for key, elements in (
            ("routers", {**{n: http_router_item(self.app, s) for n, s in http.routers.items()},
                         **internal.routers}),
            ("middlewares", {**{n: http_middleware_item(s) for n, s in http.middlewares.items()},
                             **internal.middlewares}),
            ("services", {**{n: http_service_item(self.app, s) for n, s in http.services.items()},
                          **internal.services}),
            ("tcpRouters", {n: router_info(self.app, s) for n, s in runtime.routers.items()}),
            ("tcpMiddlewares", {n: middleware_info(s) for n, s in runtime.middlewares.items()}),
            ("tcpServices", {n: service_info(self.app, s) for n, s in runtime.services.items()}),
        ):
            if elements:
                data[key] = elements
        return web.json_response(data)

    async def overview(self, request: web.Request) -> web.Response:
        app, runtime, static = self.app, self.app.runtime, self.app.static
        prometheus = static.metrics.prometheus if static.metrics is not None else None
        internal = self._internal()  # always enabled: they count in the totals only
        data: Item = {
            "http": {"routers": _section(runtime.http.routers, len(internal.routers)),
                     "services": _section(runtime.http.services, len(internal.services)),
                     "middlewares": _section(runtime.http.middlewares,
                                             len(internal.middlewares))},
            "tcp": {"routers": _section(runtime.routers), "services": _section(runtime.services),
                    "middlewares": _section(runtime.middlewares)},
            "udp": {"routers": _EMPTY_SECTION, "services": _EMPTY_SECTION,
                    "middlewares": _EMPTY_SECTION},
            "features": {"tracing": "", "metrics": "Prometheus" if prometheus is not None else "",
                         "accessLog": static.access_log is not None, "hub": False},
        }
        providers = _provider_names(app)
        if providers:
            data["providers"] = providers
        snap = traffic_snapshot(app)
        connections = Totals()
        for name in app.entrypoints:
            totals = snap.entrypoints.get(name, Totals())
            connections.open += totals.open
            connections.total += totals.total
            connections.bytes_in += totals.bytes_in
            connections.bytes_out += totals.bytes_out
        data["switchyard"] = {
            "traffic": connections.as_json(),
            "config": {
                "reloads": app.reloads,
                "reloadFailures": app.reload_failures,
                "lastReloadSuccess": rfc3339(app.last_reload_success)
                if app.last_reload_success else "",
                "lastReloadFailure": rfc3339(app.last_reload_failure)
                if app.last_reload_failure else "",
                "providerErrors": dict(app.provider_errors),
                "issues": [{"source": i.source, "line": i.line, "path": i.path,
                            "severity": i.severity, "message": i.message}
                           for i in runtime.issues],
            },
        }
        return web.json_response(data)

    async def version(self, request: web.Request) -> web.Response:
        data: Item = {"Version": __version__, "Codename": "switchyard",
                      "startDate": rfc3339(self.started)}
        api = self.app.static.api
        if api is not None and api.disable_dashboard_ad:
            data["disableDashboardAd"] = True
        return web.json_response(data)


def _provider_names(app: RunningInstance) -> list[str]:
    """Configured providers as Traefik lists them: Go field names, plugins as plugin-<name>."""
    providers = app.static.providers
    names = []
    for field, info in type(providers).model_fields.items():
        value = getattr(providers, field)
        alias = info.alias or field
        if field == "plugin":
            names += [f"plugin-{name}" for name in value]
        elif value is not None and isinstance(value, TraefikModel | dict):
            names.append("HTTP" if alias == "http" else alias[0].upper() + alias[1:])
    return names
