"""Prometheus `/metrics`: a collector that reads traffic counters and the runtime at scrape time."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from switchyard.config.dynamic import TCPMiddleware
from switchyard.observability.stats import DURATION_BUCKETS, STATS, Traffic
from switchyard.services import LoadBalancer

if TYPE_CHECKING:
    from switchyard.api.instance import RunningInstance

_V = TypeVar("_V")


@dataclass(slots=True)
class Totals:
    """Connections and bytes of one element, live connections' bytes included."""

    open: int = 0
    total: int = 0
    bytes_in: int = 0  # client -> backend
    bytes_out: int = 0  # backend -> client

    def as_json(self) -> dict[str, int]:
        return {"openConnections": self.open, "totalConnections": self.total,
                "bytesIn": self.bytes_in, "bytesOut": self.bytes_out}


@dataclass(slots=True)
class TrafficSnapshot:
    """Per entry point, router, service and (service, server) totals at one instant."""

    entrypoints: defaultdict[str, Totals]
    routers: defaultdict[str, Totals]
    services: defaultdict[str, Totals]
    servers: defaultdict[tuple[str, str], Totals]


def _totals(traffic: Traffic) -> Totals:
    return Totals(traffic.open, traffic.total, traffic.bytes_in, traffic.bytes_out)


def traffic_snapshot(app: RunningInstance) -> TrafficSnapshot:
    """STATS plus the bytes live connections have moved so far.

    The data plane adds a connection's bytes to STATS only when it ends, so a
    long-lived stream would otherwise show nothing. Adding the live part here,
    on the event loop, keeps the sum monotonic: a connection's bytes move from
    "live" to "finished" in one step between two scrapes.
    """
    snap = TrafficSnapshot(
        defaultdict(Totals, {k: _totals(v) for k, v in STATS.entrypoints.items()}),
        defaultdict(Totals, {k: _totals(v) for k, v in STATS.routers.items()}),
        defaultdict(Totals, {k: _totals(v) for k, v in STATS.services.items()}),
        defaultdict(Totals, {k: _totals(v) for k, v in STATS.servers.items()}),
    )
    for entrypoint in app.entrypoints.values():
        for conn in entrypoint.connections:
            record = conn.record
            sizes = (record.bytes_in, record.bytes_out)
            targets = [snap.entrypoints[entrypoint.name]]
            # Same condition as the data plane's own accounting at the end of a connection.
            if record.routed:
                targets += [snap.routers[record.router], snap.services[record.service],
                            snap.servers[(record.service, record.server)]]
            for totals in targets:
                totals.bytes_in += sizes[0]
                totals.bytes_out += sizes[1]
    return snap


def effective_middleware_kind(config: TCPMiddleware) -> str:
    """The type a middleware acts as: the last one set wins, as when it is built."""
    kinds = config.kinds
    return kinds[-1] if kinds else ""


_REJECTION_REASONS = {"inFlightConn": "too_many_connections",
                      "ipWhiteList": "ip_not_allowed", "ipAllowList": "ip_not_allowed",
                      "rateLimit": "rate_limited"}

class SwitchyardCollector:
    """Builds every metric family from STATS and the current Runtime on each scrape.

    Nothing is recorded on the data path: the data plane already keeps plain
    integer counters, and this turns them into Prometheus families when asked.
    """

    def __init__(self, app: RunningInstance) -> None:
        self.app = app

    def collect(self) -> Iterable[Metric]:
        yield from self._config_families()
        yield from self._traffic_families()
        yield from self._health_and_rejections()

    def _config_families(self) -> Iterator[Metric]:
        app = self.app
        yield CounterMetricFamily("traefik_config_reloads",
                                  "Config reloads (applied configurations).", value=app.reloads)
        yield CounterMetricFamily("traefik_config_reloads_failure",
                                  "Config reloads that failed (a provider's config could not "
                                  "be used; the last good one kept serving).",
                                  value=app.reload_failures)
        yield GaugeMetricFamily("traefik_config_last_reload_success",
                                "Last successful config reload, as a Unix timestamp.",
                                value=app.last_reload_success)
        yield GaugeMetricFamily("traefik_config_last_reload_failure",
                                "Last failed config reload, as a Unix timestamp.",
                                value=app.last_reload_failure)

    def _traffic_families(self) -> Iterator[Metric]:
        app = self.app
        snap = traffic_snapshot(app)
        runtime = app.runtime
        # Known elements get a zero series before their first connection, so
        # dashboards and alerts see them from the start.
        for name in app.entrypoints:
            snap.entrypoints.setdefault(name, Totals())
        for name, status in runtime.routers.items():
            if status.enabled:
                snap.routers.setdefault(name, Totals())
        for name, service in runtime.service_objects.items():
            snap.services.setdefault(name, Totals())
            if isinstance(service, LoadBalancer):
                for server in service.servers:
                    snap.servers.setdefault((name, server.address), Totals())

        open_eps = GaugeMetricFamily("traefik_open_connections",
                                     "How many open connections exist, by entry point and "
                                     "protocol.", labels=["entrypoint", "protocol"])
        for name, totals in sorted(snap.entrypoints.items()):
            open_eps.add_metric([name, "TCP"], totals.open)
        yield open_eps

        levels = (
            ("entrypoint", ("entrypoint",), _by_labels(snap.entrypoints),
             _by_labels(STATS.entrypoints)),
            ("router", ("router",), _by_labels(snap.routers), _by_labels(STATS.routers)),
            ("service", ("service",), _by_labels(snap.services), _by_labels(STATS.services)),
            ("server", ("service", "server"), _by_labels(snap.servers),
             _by_labels(STATS.servers)),
        )
        for level, labels, per_element, finished in levels:
            prefix = f"traefik_tcp_{level}"
            total = CounterMetricFamily(f"{prefix}_connections",
                                        f"TCP connections handled, by {level}.", labels=labels)
            opened = GaugeMetricFamily(f"{prefix}_open_connections",
                                       f"TCP connections open now, by {level}.", labels=labels)
            received = CounterMetricFamily(
                f"{prefix}_received_bytes",
                f"Bytes received from clients (client to backend), by {level}; includes "
                "connections still open.", labels=labels)
            sent = CounterMetricFamily(
                f"{prefix}_sent_bytes",
                f"Bytes sent to clients (backend to client), by {level}; includes "
                "connections still open.", labels=labels)
            for values, totals in sorted(per_element.items()):
                total.add_metric(values, totals.total)
                opened.add_metric(values, totals.open)
                received.add_metric(values, totals.bytes_in)
                sent.add_metric(values, totals.bytes_out)
            yield total
            if level != "entrypoint":  # traefik_open_connections already has it
                yield opened
            yield received
            yield sent
            yield _duration_histogram(prefix, level, labels, finished)

    def _health_and_rejections(self) -> Iterator[Metric]:
        runtime = self.app.runtime
        up = GaugeMetricFamily("traefik_service_server_up",
                               "Current server status (0 = DOWN, 1 = UP).",
                               labels=["service", "url"])
        for name, service in sorted(runtime.service_objects.items()):
            if isinstance(service, LoadBalancer):
                for server in service.servers:
                    up.add_metric([name, server.address], 1 if server.up else 0)
        yield up

        ejections = CounterMetricFamily(
            "switchyard_tcp_service_server_passive_ejections",
            "Times passive health took a server out (failed dials or resets within "
            "failureWindow), by service and server.", labels=["service", "url"])
        for name, service in sorted(runtime.service_objects.items()):
            if isinstance(service, LoadBalancer) and service.failures is not None:
                for server in service.servers:
                    ejections.add_metric([name, server.address],
                                         service.failures.ejections.get(server.address, 0))
        yield ejections

        rejections = CounterMetricFamily(
            "traefik_tcp_middleware_rejections",
            "Connections a middleware refused, by entry point, router, middleware and reason.",
            labels=["entrypoint", "router", "middleware", "reason"])
        for (entrypoint, router, middleware), count in sorted(STATS.rejections.items()):
            status = runtime.middlewares.get(middleware)
            kind = effective_middleware_kind(status.config) if status is not None else ""
            rejections.add_metric([entrypoint, router, middleware,
                                   _REJECTION_REASONS.get(kind, "unknown")], count)
        yield rejections

        closes = CounterMetricFamily(
            "traefik_tcp_entrypoint_closed_connections",
            "Connections ended, by entry point and why (normal, client_closed, no_route, "
            "rejected, dial_failed, ...).", labels=["entrypoint", "reason"])
        for (entrypoint, kind), count in sorted(STATS.closes.items()):
            closes.add_metric([entrypoint, kind or "unknown"], count)
        yield closes


def _by_labels(source: Mapping[str, _V] | Mapping[tuple[str, str], _V]
               ) -> dict[tuple[str, ...], _V]:
    """Element keys as label value tuples: "r@file" -> ("r@file",)."""
    return {key if isinstance(key, tuple) else (key,): value for key, value in source.items()}


def _duration_histogram(prefix: str, level: str, labels: tuple[str, ...],
                        finished: dict[tuple[str, ...], Traffic]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(f"{prefix}_connection_duration_seconds",
                                   f"How long finished TCP connections lasted, by {level}.",
                                   labels=labels)
    for values, traffic in sorted(finished.items()):
        cumulative, buckets = 0, []
        for bound, count in zip(DURATION_BUCKETS, traffic.duration_counts, strict=False):
            cumulative += count
            buckets.append((repr(bound), cumulative))
        buckets.append(("+Inf", sum(traffic.duration_counts)))
        family.add_metric(values, buckets, sum_value=traffic.duration_sum)
    return family


class MergedCollector:
    """Collectors served as one: a family several of them yield is printed once.

    The TCP collector and the HTTP metrics both have ``traefik_service_server_up``; two
    families of one name would make the exposition invalid, so their samples are joined
    under the first one's help and type.
    """

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for collector in self.collectors:
            for family in collector.collect():
                first = merged.setdefault(family.name, family)
                if first is not family:
                    first.samples.extend(family.samples)
        return merged.values()


def metrics_registry(app: RunningInstance, *extra: Collector) -> CollectorRegistry:
    """A registry of its own per process object, so tests can run several side by side.

    ``extra`` collectors (e.g. switchyard.api.http_metrics.HTTPMetrics) are served beside the
    TCP families, merged with them where a family has the same name.
    """
    registry = CollectorRegistry()
    tcp = SwitchyardCollector(app)
    registry.register(MergedCollector(tcp, *extra) if extra else tcp)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
