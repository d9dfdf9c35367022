"""The Switchyard process: entry points, configuration generations, signals, shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping

from switchyard.build import Runtime, build_runtime
from switchyard.config.dynamic import DynamicConfig
from switchyard.config.loader import ConfigIssue, ConfigLoadError
from switchyard.config.static import StaticConfig, parse_entry_point_address
from switchyard.providers.file import FileProvider
from switchyard.proxy.entrypoint import EntryPoint, IncomingProxyProtocol
from switchyard.services import LoadBalancer
from switchyard.services.healthcheck import HealthMonitor

log = logging.getLogger("switchyard")


class Switchyard:
    """Owns the entry points and swaps in a new Runtime whenever configuration changes."""

    def __init__(self, static: StaticConfig) -> None:
        self.static = static
        self.entrypoints: dict[str, EntryPoint] = {}
        for name, ep in static.entry_points.items():
            host, port, proto = parse_entry_point_address(ep.address)
            if proto == "udp":
                log.warning('entryPoint "%s": UDP is not supported, skipped', name)
                continue
            incoming = None
            if ep.proxy_protocol is not None:
                try:
                    incoming = IncomingProxyProtocol(list(ep.proxy_protocol.trusted_ips),
                                                     ep.proxy_protocol.insecure)
                except ValueError as exc:
                    raise ConfigLoadError(f'entryPoint "{name}": {exc}') from exc
            self.entrypoints[name] = EntryPoint(name, host, port, reuse_port=ep.reuse_port,
                                                proxy_protocol=incoming)
        file_cfg = static.providers.file if static.providers else None
        self.file_provider = (
            FileProvider(file_cfg.filename, file_cfg.directory, file_cfg.watch)
            if file_cfg is not None and (file_cfg.filename or file_cfg.directory) else None
        )
        self.runtime = Runtime()
        self.health = HealthMonitor()
        self.last_error = ""
        self._stopping: asyncio.Event | None = None

    # -- configuration ----------------------------------------------------

    def load_configs(self) -> tuple[dict[str, DynamicConfig], list[ConfigIssue]]:
        """Every provider's current config; raises ConfigLoadError if one cannot be read."""
        configs: dict[str, DynamicConfig] = {}
        issues: list[ConfigIssue] = []
        if self.file_provider is not None:
            config, found = self.file_provider.load()
            configs[self.file_provider.name] = config
            issues.extend(found)
        return configs, issues

    def apply(self, configs: Mapping[str, DynamicConfig], issues: list[ConfigIssue]) -> Runtime:
        """Compile and swap: new connections use the new tables, live ones keep theirs."""
        runtime = build_runtime(self.static, configs, issues, previous=self.runtime)
        for name, entrypoint in self.entrypoints.items():
            table = runtime.tables.get(name)
            if table is not None:
                entrypoint.table = table
        self.runtime = runtime
        self.health.update([s for s in runtime.service_objects.values()
                            if isinstance(s, LoadBalancer)])
        return runtime

    def reload(self) -> bool:
        """Re-read the providers; a config that cannot be read keeps the last good one."""
        try:
            configs, issues = self.load_configs()
        except ConfigLoadError as exc:
            self.last_error = str(exc)
            log.error("configuration not applied, the last good one keeps serving: %s", exc)
            return False
        self.last_error = ""
        self.apply(configs, issues)
        routers = self.runtime.routers.values()
        log.info("configuration applied: %d routers (%d disabled), %d services, %d middlewares",
                 len(self.runtime.routers), sum(1 for r in routers if not r.enabled),
                 len(self.runtime.services), len(self.runtime.middlewares))
        return True

    # -- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        if self._stopping is None:
            self._stopping = asyncio.Event()
        self.reload()
        for entrypoint in self.entrypoints.values():
            await entrypoint.start()

    def request_stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def serve(self) -> None:
        """Run until SIGTERM/SIGINT (or `request_stop`), then shut down gracefully."""
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        # Handlers first: a SIGTERM that comes right after "listening" must stop us cleanly.
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        await self.start()
        await self._stopping.wait()
        log.info("stopping")
        await self.shutdown()

    async def shutdown(self) -> None:
        """Traefik's sequence per entry point: accept grace, stop accepting, drain, force-close."""
        await asyncio.gather(*(self._shutdown_entrypoint(name) for name in self.entrypoints))
        self.health.stop()

    async def _shutdown_entrypoint(self, name: str) -> None:
        entrypoint = self.entrypoints[name]
        life = self.static.entry_points[name].transport.life_cycle
        if life.request_accept_grace_timeout > 0:
            await asyncio.sleep(life.request_accept_grace_timeout)
        entrypoint.stop_accepting()
        deadline = asyncio.get_running_loop().time() + max(life.grace_time_out, 0)
        while entrypoint.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        if entrypoint.connections:
            log.info('entryPoint "%s": closing %d connections left after the grace period',
                     name, len(entrypoint.connections))
            entrypoint.close_all()
            await asyncio.sleep(0)
