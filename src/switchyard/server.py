"""The Switchyard process: entry points, configuration generations, signals, shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import shutil
import signal
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from switchyard.build import build_runtime
from switchyard.config.dynamic import DynamicConfig
from switchyard.config.loader import ConfigIssue, ConfigLoadError
from switchyard.config.static import StaticConfig, parse_entry_point_address
from switchyard.http.handler import Handler, RequestRecord
from switchyard.http.healthcheck import HTTPHealthMonitor
from switchyard.http.internal import internal_handlers
from switchyard.internal import InternalServer, internal_http_services, internal_services
from switchyard.observability.accesslog import AccessLog
from switchyard.observability.http_accesslog import HTTPAccessLog
from switchyard.observability.logfile import LogFile
from switchyard.providers.base import (
    Backoff,
    Provider,
    ProviderUpdate,
    WatchLost,
    describe_error,
)
from switchyard.providers.registry import build_providers
from switchyard.proxy.decision import ChallengeResponder
from switchyard.proxy.entrypoint import EntryPoint, IncomingProxyProtocol
from switchyard.proxy.onchange import apply_on_change
from switchyard.runtime import Runtime
from switchyard.services import LoadBalancer
from switchyard.services.healthcheck import HealthMonitor
from switchyard.tls.resolver import CertificateResolver

if TYPE_CHECKING:
    from switchyard.api.http_metrics import HTTPMetrics

log = logging.getLogger("switchyard")

#: A provider watch that ran this many seconds before failing starts its backoff afresh.
WATCH_HEALTHY_AFTER = 60.0


def describe_change(old: Runtime, new: Runtime) -> str:
    """One line for the reload log: counts, and which elements came, went or changed."""
    parts = []
    for kind, before, after in (("routers", old.routers, new.routers),
                                ("services", old.services, new.services),
                                ("middlewares", old.middlewares, new.middlewares)):
        added = sorted(after.keys() - before.keys())
        removed = sorted(before.keys() - after.keys())
        changed = sorted(k for k in after.keys() & before.keys()
                         if after[k].config != before[k].config)
        disabled = sum(1 for e in after.values() if not e.enabled)
        text = f"{len(after)} {kind}" + (f" ({disabled} disabled)" if disabled else "")
        for label, names in (("added", added), ("removed", removed), ("changed", changed)):
            if names:
                text += f", {label}: {', '.join(names[:10])}" + (" ..." if len(names) > 10 else "")
        parts.append(text)
    return "; ".join(parts)


class Switchyard:
    """Owns the entry points and swaps in a new Runtime whenever configuration changes."""

    def __init__(self, static: StaticConfig, *, worker: int = 0, reuse_port: bool = False) -> None:
        self.static = static
        self.worker = worker
        self.entrypoints: dict[str, EntryPoint] = {}
        # Entry points serving the API, ping or metrics speak HTTP, not routed TCP.
        self.internal: dict[str, tuple[str, int, set[str]]] = {}
        internal = internal_services(static)
        # With several workers only the first serves the API, ping and metrics.
        for name, services in (internal.items() if worker == 0 else ()):
            address = static.entry_points[name].address if name in static.entry_points else (
                ":8080" if name == "traefik" else "")
            if not address:
                raise ConfigLoadError(f'entryPoint "{name}" (used by {", ".join(sorted(services))})'
                                      " is not defined: add it to entryPoints")
            host, port, _ = parse_entry_point_address(address)
            self.internal[name] = (host, port, services)
        self._internal_servers: list[InternalServer] = []
        # The @internal HTTP services routers may name, on private Unix sockets (see start).
        self._internal_http: dict[str, Handler] | None = None
        self._internal_runners: list[Any] = []
        self._internal_dir: str | None = None
        for name, ep in static.entry_points.items():
            if name in internal:
                continue
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
            entrypoint = EntryPoint(name, host, port, reuse_port=ep.reuse_port or reuse_port,
                                    proxy_protocol=incoming)
            entrypoint.idle_timeout = ep.transport.responding_timeouts.tcp_idle_timeout
            self.entrypoints[name] = entrypoint
        self.access_log: AccessLog | None = None
        self.http_access_log: HTTPAccessLog | None = None
        if static.access_log is not None:
            # One file for both: a line per TCP connection, a line per HTTP request.
            output = LogFile(static.access_log.file_path, static.access_log.buffering_size)
            self.access_log = AccessLog(fmt=static.access_log.format, output=output)
            self.http_access_log = HTTPAccessLog.from_config(static.access_log, output=output)
            for entrypoint in self.entrypoints.values():
                entrypoint.access_log = self.access_log
        self.http_metrics: HTTPMetrics | None = None
        if static.metrics is not None and static.metrics.prometheus is not None:
            # prometheus_client is loaded only for a configuration that exports metrics.
            from switchyard.api.http_metrics import HTTPMetrics

            self.http_metrics = HTTPMetrics.from_config(static.metrics,
                                                        server_states=self._http_server_states)
        self.providers: list[Provider] = build_providers(static)
        self.throttle = static.providers.providers_throttle_duration if static.providers else 2.0
        self.configs: dict[str, DynamicConfig] = {}
        self.issues: dict[str, list[ConfigIssue]] = {}
        self.provider_errors: dict[str, str] = {}
        self.runtime = Runtime()
        self.health = HealthMonitor()
        self.http_health = HTTPHealthMonitor()
        self.reloads = 0
        self.reload_failures = 0
        self.last_reload_success = 0.0
        self.last_reload_failure = 0.0
        self._stopping: asyncio.Event | None = None
        self._watchers: list[asyncio.Task[None]] = []
        self.resolvers: dict[str, CertificateResolver] = {}
        if static.certificates_resolvers:
            from switchyard.tls.acme import build_resolvers  # heavy: only when configured

            built, problems = build_resolvers(static.certificates_resolvers,
                                              entry_points=list(static.entry_points))
            self.resolvers = dict(built)
            for problem in problems:
                log.warning("certificatesResolvers: %s", problem)
        for name, entrypoint in self.entrypoints.items():
            # ACME-TLS/1 hellos are ours to answer unless the entry point lets them
            # through, or there is no TLS-challenge resolver at all.
            if self.resolvers and not static.entry_points[name].allow_acme_by_pass:
                entrypoint.acme_resolvers = list(self.resolvers.values())
        self._rebuild: asyncio.TimerHandle | None = None
        self._building = False
        self.stopping = False
        self._last_apply = 0.0

    def _observe_request(self, record: RequestRecord) -> None:
        """Every served HTTP request: Traefik's HTTP metrics and access log line."""
        if self.http_metrics is not None:
            self.http_metrics.observe(record)
        if self.http_access_log is not None:
            self.http_access_log.record(record)

    def _http_server_states(self) -> list[tuple[str, str, bool]]:
        """(service, server URL, up) of health-checked HTTP servers, for server_up metrics."""
        return [(balancer.name, server.url, server.up)
                for balancer, _ in self.runtime.http.health_checks for server in balancer.servers]

    def challenges(self, entrypoint: str) -> Sequence[ChallengeResponder]:
        """The ACME resolvers answering TLS-ALPN-01 hellos on `entrypoint`."""
        found = self.entrypoints.get(entrypoint)
        return found.acme_resolvers if found is not None else ()

    # -- configuration ----------------------------------------------------

    def load_configs(self) -> tuple[dict[str, DynamicConfig], list[ConfigIssue]]:
        """Every provider's current config; raises ConfigLoadError if one cannot be read."""
        configs: dict[str, DynamicConfig] = {}
        issues: list[ConfigIssue] = []
        for provider in self.providers:
            update = provider.load()
            if update.config is None:
                raise ConfigLoadError(update.error, update.issues)
            configs[provider.name] = update.config
            issues.extend(update.issues)
        return configs, issues

    def publish(self, update: ProviderUpdate) -> None:
        """A provider has news: remember it, then rebuild (throttled) if it is usable."""
        if update.config is None:
            self.provider_errors[update.provider] = update.error
            self.issues[update.provider] = list(update.issues)
            self.reload_failures += 1
            self.last_reload_failure = time.time()
            log.error('provider "%s": configuration not applied, the last good one keeps '
                      "serving: %s", update.provider, update.error)
            return
        self.provider_errors.pop(update.provider, None)
        self.configs[update.provider] = update.config
        self.issues[update.provider] = list(update.issues)
        self._schedule_rebuild()

    def _schedule_rebuild(self) -> None:
        if self._rebuild is not None:
            return  # one rebuild is pending and will see this update too
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last_apply + self.throttle - loop.time())
        self._rebuild = loop.call_later(delay, self._rebuild_now)

    def _rebuild_now(self) -> None:
        loop = asyncio.get_running_loop()
        if self._building:
            # One compile at a time; this update is picked up right after it.
            self._rebuild = loop.call_later(0.05, self._rebuild_now)
            return
        self._rebuild = None
        self._last_apply = loop.time()
        self._building = True
        loop.create_task(self._rebuild_off_loop(
            dict(self.configs), [i for found in self.issues.values() for i in found]))

    async def _rebuild_off_loop(self, configs: dict[str, DynamicConfig],
                                issues: list[ConfigIssue]) -> None:
        """Compile in a worker thread so live relays keep flowing, then swap on the loop."""
        try:
            previous = self.runtime

            def compile_and_describe() -> tuple[Runtime, str]:
                built = build_runtime(self.static, configs, issues, previous=previous,
                                      resolvers=self.resolvers, internal=self._internal_http)
                return built, describe_change(previous, built)  # compares every element

            runtime, change = await asyncio.get_running_loop().run_in_executor(
                None, compile_and_describe)
            self._swap(runtime, change)
        except Exception:
            self.reload_failures += 1
            self.last_reload_failure = time.time()
            log.exception("configuration not applied: compiling it failed")
        finally:
            self._building = False

    def apply(self, configs: Mapping[str, DynamicConfig], issues: list[ConfigIssue]) -> Runtime:
        """Compile and swap now, on the calling thread (start-up and tests)."""
        previous = self.runtime
        runtime = build_runtime(self.static, configs, issues, previous=previous,
                                resolvers=self.resolvers, internal=self._internal_http)
        self._swap(runtime, describe_change(previous, runtime))
        return runtime

    def _swap(self, runtime: Runtime, change: str) -> None:
        """New connections use the new tables; live ones keep the snapshot they started with."""
        for resolver_name, domains in runtime.acme_requests:
            self.resolvers[resolver_name].request(domains)
        for name, entrypoint in self.entrypoints.items():
            table = runtime.tables.get(name)
            if table is not None:
                if table.http is not None and (self.http_metrics or self.http_access_log):
                    table = dataclasses.replace(table, http_settings=dataclasses.replace(
                        table.http_settings, observer=self._observe_request))
                    runtime.tables[name] = table
                entrypoint.table = table
        previous, self.runtime = self.runtime, runtime
        self.reloads += 1
        self.last_reload_success = time.time()
        self.health.update([s for s in runtime.service_objects.values()
                            if isinstance(s, LoadBalancer)])
        self.http_health.update(runtime.http.health_checks)
        if self.http_metrics is not None:
            self.http_metrics.retain(runtime.tables, runtime.http.routers, runtime.http.services)
        for balancer in previous.http.balancers:
            balancer.close()  # idle backend connections of the old generation
        apply_on_change(previous, runtime,
                        [c for ep in self.entrypoints.values() for c in ep.connections])
        kept = {id(service) for service in runtime.service_objects.values()}
        for service in previous.service_objects.values():
            if isinstance(service, LoadBalancer) and id(service) not in kept:
                service.close()  # passive-health returns of a replaced TCP service
        log.info("configuration applied: %s", change)

    def reload(self) -> None:
        """Re-read every provider now (SIGHUP)."""
        for provider in self.providers:
            self.publish(provider.load())

    # -- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        if self._stopping is None:
            self._stopping = asyncio.Event()
        await self._start_internal_http()
        # The first config is applied before listening so no connection meets an empty table.
        for provider in self.providers:
            update = provider.load()
            if update.config is None:
                self.publish(update)
            else:
                self.configs[provider.name] = update.config
                self.issues[provider.name] = list(update.issues)
        self._last_apply = asyncio.get_running_loop().time()
        self.apply(dict(self.configs), [i for found in self.issues.values() for i in found])
        for entrypoint in self.entrypoints.values():
            await entrypoint.start()
        if self.internal:
            from switchyard.api.app import start_internal

            for name, (host, port, services) in self.internal.items():
                self._internal_servers.append(await start_internal(self, name, host, port, services))
        loop = asyncio.get_running_loop()
        self._watchers = [loop.create_task(self._watch(p)) for p in self.providers]
        if self.worker == 0:
            # One process talks to the CA: with workers, a challenge connection
            # could land on a worker that has no pending challenge.
            for resolver in self.resolvers.values():
                resolver.on_change(self._schedule_rebuild)
                self._watchers.append(loop.create_task(resolver.run()))
        # What start-up made (modules, the first configuration) lives as long as the process:
        # kept out of the collector's sweeps, which otherwise walk it on every full collection
        # while connections come and go.
        gc.freeze()

    async def _watch(self, provider: Provider) -> None:
        """Keep the provider's watch running: one that raises is started again, with backoff."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(first=0.5, cap=10.0)
        while True:
            started = loop.time()
            try:
                await provider.watch(self.publish)
                return  # the source cannot change (watching is off)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if loop.time() - started > WATCH_HEALTHY_AFTER:
                    backoff.reset()  # it had been fine for a while: a new incident
                delay = backoff.next_delay()
                log.error('provider "%s": watching failed, restarting it in %.1f s',
                          provider.name, delay, exc_info=not isinstance(error, WatchLost))
                self.publish(ProviderUpdate(provider.name, None, error=(
                    f"watching stopped ({describe_error(error)}); it restarts in {delay:.1f} s "
                    "and changes made meanwhile are read then")))
            await asyncio.sleep(delay)
            # Whatever changed while nobody watched; this also clears the error above.
            self.publish(await loop.run_in_executor(None, provider.load))

    @property
    def internal_servers(self) -> list[InternalServer]:
        """The running API / ping / metrics servers (each has `.port`)."""
        return list(self._internal_servers)

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
        self.stopping = True  # /ping now answers ping.terminatingStatusCode
        for watcher in self._watchers:
            watcher.cancel()
        if self._rebuild is not None:
            self._rebuild.cancel()
        await asyncio.gather(*(self._shutdown_entrypoint(name) for name in self.entrypoints))
        await self.close_internal()
        self.health.stop()
        await self.http_health.stop()
        for balancer in self.runtime.http.balancers:
            balancer.close()
        if self.http_access_log is not None:
            self.http_access_log.flush()
        if self.access_log is not None:
            self.access_log.close()

    async def _start_internal_http(self) -> None:
        """Serve the @internal services this config has (API, dashboard, ping, prometheus) on
        Unix sockets in a directory only this user can enter, for routers that name them."""
        available = internal_http_services(self.static)
        if self._internal_http is not None or not any(
                why is None for name, why in available.items() if name != "noop@internal"):
            self._internal_http = internal_handlers(available, {})
            return
        from switchyard.api.app import start_unix_services

        self._internal_dir = tempfile.mkdtemp(prefix="switchyard-")  # mode 0700
        sockets, self._internal_runners = await start_unix_services(self, self._internal_dir)
        self._internal_http = internal_handlers(available, sockets)

    async def close_internal(self) -> None:
        """Stop the internal entry points and the @internal services' sockets."""
        servers, self._internal_servers = self._internal_servers, []
        for internal in servers:
            await internal.close()
        runners, self._internal_runners = self._internal_runners, []
        for runner in runners:
            await runner.cleanup()
        if self._internal_dir is not None:
            shutil.rmtree(self._internal_dir, ignore_errors=True)
            self._internal_dir = None

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
