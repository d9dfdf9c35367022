"""Internal HTTP entry points: the REST API, the dashboard, ping and Prometheus metrics."""

from __future__ import annotations

import logging
from importlib import resources
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from switchyard.addresses import host_port
from switchyard.api.handlers import APIHandlers
from switchyard.api.metrics import metrics_registry
from switchyard.proxy.entrypoint import open_listener

if TYPE_CHECKING:
    from switchyard.api.instance import RunningInstance

log = logging.getLogger("switchyard.entrypoint")

INTERNAL_SERVICES = frozenset({"api", "dashboard", "ping", "metrics"})

_DASHBOARD_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


class InternalEntryPoint:
    """A running internal entry point; `port` is the bound one (useful when 0 was asked)."""

    def __init__(self, name: str, host: str, port: int, runner: web.AppRunner) -> None:
        self.name = name
        self.host = host
        self.port = port
        self._runner = runner

    @property
    def address(self) -> str:
        return host_port(self.host or "0.0.0.0", self.port)

    async def close(self) -> None:
        await self._runner.cleanup()


def dashboard_files() -> dict[str, tuple[bytes, str]]:
    """The dashboard's static files shipped in the package: name -> (content, type)."""
    folder = resources.files("switchyard.api").joinpath("dashboard")
    found = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _DASHBOARD_TYPES:
            found[entry.name] = (entry.read_bytes(), _DASHBOARD_TYPES[suffix])
    return found


def dashboard_routes(prefix: str) -> list[web.RouteDef]:
    """`/dashboard/` and its files, read once; `/` redirects there as in Traefik."""
    files = dashboard_files()
    home = f"{prefix}/dashboard/"

    async def redirect(request: web.Request) -> web.StreamResponse:
        query = request.query_string
        raise web.HTTPFound(f"{home}?{query}" if query else home)

    async def serve(request: web.Request) -> web.Response:
        found = files.get(request.match_info.get("file") or "index.html")
        if found is None:
            raise web.HTTPNotFound()
        body, content_type = found
        return web.Response(body=body, content_type=content_type, charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    return [web.get(f"{prefix}/", redirect), web.get(f"{prefix}/dashboard", redirect),
            web.get(home, serve), web.get(f"{home}{{file}}", serve)]


def ping_routes(app: RunningInstance, *, any_path: bool = False) -> list[web.RouteDef]:
    """``/ping``; ``any_path``: every method and path, as ``ping@internal`` behind a router."""
    terminating = app.static.ping.terminating_status_code if app.static.ping else 503

    async def ping(request: web.Request) -> web.Response:
        # Load balancers in front stop sending new clients while we drain.
        if app.stopping:
            return web.Response(status=terminating, text="Service Unavailable")
        return web.Response(text="OK")

    if any_path:
        return [web.route("*", "/{tail:.*}", ping)]
    return [web.get("/ping", ping)]


def metrics_routes(app: RunningInstance, *, any_path: bool = False) -> list[web.RouteDef]:
    registry = metrics_registry(app, *([app.http_metrics] if app.http_metrics else []))

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    if any_path:
        return [web.route("*", "/{tail:.*}", metrics)]
    return [web.get("/metrics", metrics)]


async def start_unix_services(app: RunningInstance, directory: str) -> tuple[
        dict[str, str], list[web.AppRunner]]:
    """Serve the ``@internal`` services this config has on Unix sockets in ``directory``.

    Returns internal service name -> socket path, and the runners to clean up. The sockets are
    what HTTP routers naming ``api@internal`` (and the dashboard, ping, prometheus) reach; the
    directory is private to this process's user.
    """
    from switchyard.internal import internal_http_services

    available = {name for name, why in internal_http_services(app.static).items() if why is None}
    apps: dict[str, tuple[web.Application, tuple[str, ...]]] = {}
    prefix = (app.static.api.base_path if app.static.api is not None else "/").rstrip("/")
    if "api@internal" in available:
        web_app = web.Application()
        web_app.add_routes(APIHandlers(app).routes(prefix))
        names: tuple[str, ...] = ("api@internal",)
        if "dashboard@internal" in available:
            web_app.add_routes(dashboard_routes(prefix))
            names += ("dashboard@internal",)
        apps["api"] = (web_app, names)
    if "ping@internal" in available:
        web_app = web.Application()
        web_app.add_routes(ping_routes(app, any_path=True))
        apps["ping"] = (web_app, ("ping@internal",))
    if "prometheus@internal" in available:
        web_app = web.Application()
        web_app.add_routes(metrics_routes(app, any_path=True))
        apps["metrics"] = (web_app, ("prometheus@internal",))
    sockets: dict[str, str] = {}
    runners: list[web.AppRunner] = []
    try:
        for key, (web_app, served) in apps.items():
            runner = web.AppRunner(web_app, access_log=None, handle_signals=False)
            await runner.setup()
            runners.append(runner)
            path = f"{directory}/{key}.sock"
            await web.UnixSite(runner, path).start()
            for name in served:
                sockets[name] = path
    except BaseException:
        for runner in runners:
            await runner.cleanup()
        raise
    return sockets, runners


def build_web_app(app: RunningInstance, services: set[str]) -> web.Application:
    """The HTTP application serving `services` (a subset of INTERNAL_SERVICES)."""
    unknown = services - INTERNAL_SERVICES
    if unknown:
        raise ValueError(f"unknown internal services: {', '.join(sorted(unknown))}")
    api = app.static.api
    prefix = (api.base_path if api is not None else "/").rstrip("/")
    web_app = web.Application()
    if "api" in services:
        web_app.add_routes(APIHandlers(app).routes(prefix))
    if "dashboard" in services:
        web_app.add_routes(dashboard_routes(prefix))
    if "ping" in services:
        web_app.add_routes(ping_routes(app))
    if "metrics" in services:
        web_app.add_routes(metrics_routes(app))
    return web_app


async def start_internal(app: RunningInstance, name: str, host: str, port: int,
                         services: set[str]) -> InternalEntryPoint:
    """Listen on host:port and serve `services`; port 0 picks a free port."""
    runner = web.AppRunner(build_web_app(app, services), access_log=None,
                           handle_signals=False)
    await runner.setup()
    sock = open_listener(host, port)
    try:
        await web.SockSite(runner, sock).start()
    except BaseException:
        sock.close()
        await runner.cleanup()
        raise
    internal = InternalEntryPoint(name, host, sock.getsockname()[1], runner)
    log.info('entryPoint "%s" listening on %s', name, internal.address)
    return internal
