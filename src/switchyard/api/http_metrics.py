"""Traefik's HTTP metrics: requests, durations and sizes per entry point, router and service.

``HTTPMetrics.observe`` is an HTTP entry point's observer: it gets one RequestRecord per
served request and only bumps plain counters in dicts keyed by label values. The same object
is a prometheus_client collector that turns those counters into Traefik's families when
scraped: ``traefik_{entrypoint,router,service}_requests_total``,
``..._requests_tls_total``, ``..._request_duration_seconds``, ``..._requests_bytes_total``,
``..._responses_bytes_total`` and ``traefik_service_server_up``, with Traefik's label names
(printed in sorted order, as Traefik's Go client prints them).

Which requests count where, as in Traefik: every request at its entry point; at a router
when one matched (``addRoutersLabels``); at a service only when a server was picked, under the
load balancer that picked it, and once more for each other request a middleware sent to a
service (``record.attempts``: attempts a retry dropped, pages the errors middleware fetched).
Requests to ``@internal`` services count nowhere unless ``metrics.addInternals``. A response
that switched protocols (WebSocket) has code ``0``, as Go's hijacked connection hides its 101.

``protocol`` (websocket, sse, grpc-web, grpc, http) comes from the request's Connection,
Upgrade, Accept and Content-Type fields, and a gRPC request's ``code`` from the response's
``grpc-status``; TLS requests count in ``..._requests_tls_total`` by Traefik's names of the
negotiated version and cipher suite.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from pydantic import BeforeValidator, Field

from switchyard.config.dynamic import TraefikModel
from switchyard.observability.http_record import (
    HeaderFields,
    first_value,
    is_internal,
    router_service,
    status_code,
    tls_names,
)

if TYPE_CHECKING:
    from switchyard.config.static import Metrics
    from switchyard.http.handler import RequestRecord

__all__ = ["DEFAULT_BUCKETS", "HTTPMetrics", "PrometheusOptions", "ServerStates",
           "grpc_code", "request_protocol"]

#: Traefik's request duration buckets, in seconds.
DEFAULT_BUCKETS = (0.1, 0.3, 1.2, 5.0)

#: Lists (service, server URL, up) for ``traefik_service_server_up``, read at scrape time.
ServerStates = Callable[[], Iterable[tuple[str, str, bool]]]

# Methods Traefik keeps as they are; any other is counted as EXTENSION_METHOD so that clients
# cannot grow the number of series without bound.
_METHODS = {method: method for method in (
    "HEAD", "GET", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "PRI")}

_GRPC_PROTOCOLS = frozenset({"grpc", "grpc-web"})
_GRPC_UNKNOWN = 2
_GRPC_CODE_NAMES = {f'"{name}"': code for code, name in enumerate((
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED"))}


def _float_list(value: Any) -> Any:
    if isinstance(value, str):  # a command-line flag: "0.1,0.3,1.2,5"
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class PrometheusOptions(TraefikModel):
    """The keys of ``metrics.prometheus`` that shape the HTTP families."""

    add_entry_points_labels: bool = True
    add_routers_labels: bool = False
    add_services_labels: bool = True
    buckets: Annotated[list[float], BeforeValidator(_float_list)] = Field(
        default_factory=lambda: list(DEFAULT_BUCKETS))
    header_labels: dict[str, str] = Field(default_factory=dict)


class _Series:
    """Counters of one label set: requests, body bytes both ways, duration histogram."""

    __slots__ = ("buckets", "count", "duration_sum", "request_bytes", "response_bytes")

    def __init__(self, slots: int) -> None:
        self.count = 0
        self.request_bytes = 0
        self.response_bytes = 0
        self.duration_sum = 0.0
        self.buckets = [0] * slots  # per bucket, not cumulative; the last one is +Inf


class _Level:
    """The entry point, router or service families: label names and counters by label values."""

    __slots__ = ("description", "headed", "labels", "name", "series", "tls", "tls_labels")

    def __init__(self, name: str, description: str, labels: tuple[str, ...],
                 tls_labels: tuple[str, ...]) -> None:
        self.name = name
        self.description = description
        self.labels = labels  # sorted, as the keys of `series` are ordered
        self.tls_labels = tls_labels
        self.series: dict[tuple[str, ...], _Series] = {}
        self.tls: dict[tuple[str, ...], int] = {}
        # requests_total with headerLabels: base label values + header values -> requests
        self.headed: dict[tuple[str, ...], int] = {}


class HTTPMetrics:
    """Counts served HTTP requests (``observe``) and exposes them as Traefik's families.

    Register it on a CollectorRegistry, e.g. through ``metrics_registry(app, http_metrics)``.
    ``server_states`` feeds ``traefik_service_server_up``; Traefik shows that family only for
    servers with a health check, so list those.
    """

    def __init__(self, options: PrometheusOptions | None = None, *, add_internals: bool = False,
                 server_states: ServerStates | None = None) -> None:
        options = options if options is not None else PrometheusOptions()
        self.add_internals = add_internals
        self.server_states = server_states
        self.buckets = tuple(sorted(set(options.buckets)))
        self.header_labels = dict(options.header_labels)
        # The header fields to read, as lower-case names, in the order of header_labels.
        self._header_names = tuple(name.lower().encode("latin-1")
                                   for name in self.header_labels.values())
        self.entrypoint = (_Level("entrypoint", "an entry point", ("code", "entrypoint",
                                  "method", "protocol"), ("entrypoint", "tls_cipher",
                                  "tls_version"))
                           if options.add_entry_points_labels else None)
        self.router = (_Level("router", "a router", ("code", "method", "protocol", "router",
                              "service"), ("router", "service", "tls_cipher", "tls_version"))
                       if options.add_routers_labels else None)
        self.service = (_Level("service", "a service (the load balancer that picked a server)",
                               ("code", "method", "protocol", "service"),
                               ("service", "tls_cipher", "tls_version"))
                        if options.add_services_labels else None)
        for level in (self.entrypoint, self.router, self.service):
            clash = set(self.header_labels) & set(level.labels) if level else set()
            if level is not None and clash:
                raise ValueError(f"metrics.prometheus.headerLabels: {', '.join(sorted(clash))} "
                                 f"is already a label of traefik_{level.name}_requests_total; "
                                 "choose another label name")

    @classmethod
    def from_config(cls, metrics: Metrics, server_states: ServerStates | None = None
                    ) -> HTTPMetrics:
        """From the static ``metrics`` section (its ``prometheus`` keys and ``addInternals``)."""
        options = PrometheusOptions.model_validate(metrics.prometheus or {})
        return cls(options, add_internals=metrics.add_internals, server_states=server_states)

    # -- per request ---------------------------------------------------------------------------

    def observe(self, record: RequestRecord) -> None:
        """Count one served request (an entry point's Observer)."""
        if not record.metrics or not self.add_internals and is_internal(record):
            return
        fields = record.request_headers
        protocol = request_protocol(fields)
        code = str(grpc_code(record) if protocol in _GRPC_PROTOCOLS else status_code(record))
        method = _METHODS.get(record.method, "EXTENSION_METHOD")
        headers = (tuple((first_value(fields, name) or b"").decode("latin-1")
                         for name in self._header_names)
                   if self._header_names else None)
        tls = tls_names(record) if record.tls else None
        if self.entrypoint is not None:
            entry_point = record.entry_point
            self._add(self.entrypoint, (code, entry_point, method, protocol),
                      record.request_bytes, record.response_bytes, record.duration, headers)
            if tls is not None:
                self._add_tls(self.entrypoint, (entry_point, tls[1], tls[0]))
        if self.router is not None and record.router:
            router, service = record.router, router_service(record)
            self._add(self.router, (code, method, protocol, router, service),
                      record.request_bytes, record.response_bytes, record.duration, headers)
            if tls is not None:
                self._add_tls(self.router, (router, service, tls[1], tls[0]))
        if self.service is not None:
            # Attempts a retry dropped reached a server too: Traefik counts each at its service.
            for attempt in record.attempts:
                self._add_service(attempt.service, str(attempt.status), method, protocol,
                                  attempt.request_bytes, attempt.response_bytes,
                                  attempt.duration, headers, tls)
            if record.server:
                self._add_service(record.service, code, method, protocol, record.request_bytes,
                                  record.response_bytes, record.duration, headers, tls)

    def _add_service(self, service: str, code: str, method: str, protocol: str,
                     request_bytes: int, response_bytes: int, duration: float,
                     headers: tuple[str, ...] | None, tls: tuple[str, str] | None) -> None:
        assert self.service is not None
        self._add(self.service, (code, method, protocol, service), request_bytes,
                  response_bytes, duration, headers)
        if tls is not None:
            self._add_tls(self.service, (service, tls[1], tls[0]))

    def _add(self, level: _Level, key: tuple[str, ...], request_bytes: int, response_bytes: int,
             duration: float, headers: tuple[str, ...] | None) -> None:
        series = level.series.get(key)
        if series is None:
            series = level.series[key] = _Series(len(self.buckets) + 1)
        series.count += 1
        series.request_bytes += request_bytes
        series.response_bytes += response_bytes
        series.duration_sum += duration
        series.buckets[bisect.bisect_left(self.buckets, duration)] += 1
        if headers is not None:
            headed = key + headers
            level.headed[headed] = level.headed.get(headed, 0) + 1

    @staticmethod
    def _add_tls(level: _Level, key: tuple[str, ...]) -> None:
        level.tls[key] = level.tls.get(key, 0) + 1

    # -- per configuration ---------------------------------------------------------------------

    def retain(self, entry_points: Collection[str], routers: Collection[str],
               services: Collection[str]) -> None:
        """Forget the series of entry points, routers and services a new configuration lacks.

        Traefik drops them too, so a removed router does not stay on /metrics until a restart.
        """
        kept = {"entrypoint": entry_points, "router": routers, "service": services}
        for level in (self.entrypoint, self.router, self.service):
            if level is not None:
                _forget(level.series, level.labels, kept)
                _forget(level.tls, level.tls_labels, kept)
                _forget(level.headed, level.labels, kept)

    # -- per scrape ----------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        families: list[Metric] = []
        for level in (self.entrypoint, self.router, self.service):
            if level is not None:
                families += self._level_families(level)
        if self.service is not None and self.server_states is not None:
            up = GaugeMetricFamily("traefik_service_server_up",
                                   "Whether a server of a service is up (1) or down (0).",
                                   labels=["service", "url"])
            for service, url, is_up in sorted(self.server_states()):
                up.add_metric([service, url], 1 if is_up else 0)
            families.append(up)
        # Go's client prints families by name and leaves out those without a series.
        yield from sorted((family for family in families if family.samples), key=_full_name)

    def _level_families(self, level: _Level) -> list[Metric]:
        prefix, where = f"traefik_{level.name}", level.description
        labels = list(level.labels)
        total = CounterMetricFamily(f"{prefix}_requests_total",
                                    f"HTTP requests served by {where}, by status code, method "
                                    "and protocol.", labels=self._total_labels(level))
        tls = CounterMetricFamily(f"{prefix}_requests_tls_total",
                                  f"HTTPS requests served by {where}, by TLS version and "
                                  "cipher suite.", labels=list(level.tls_labels))
        duration = HistogramMetricFamily(f"{prefix}_request_duration_seconds",
                                         f"Time to serve a request on {where}, by status "
                                         "code, method and protocol.", labels=labels)
        received = CounterMetricFamily(f"{prefix}_requests_bytes_total",
                                       f"Request body bytes received by {where}, by status "
                                       "code, method and protocol.", labels=labels)
        sent = CounterMetricFamily(f"{prefix}_responses_bytes_total",
                                   f"Response body bytes sent by {where}, by status code, "
                                   "method and protocol.", labels=labels)
        for key, series in sorted(level.series.items()):
            values = list(key)
            if not self._header_names:
                total.add_metric(values, series.count)
            cumulative, buckets = 0, []
            for bound, count in zip(self.buckets, series.buckets, strict=False):
                cumulative += count
                buckets.append((_go_float(bound), cumulative))
            buckets.append(("+Inf", series.count))
            duration.add_metric(values, buckets, sum_value=series.duration_sum)
            received.add_metric(values, series.request_bytes)
            sent.add_metric(values, series.response_bytes)
        if self._header_names:
            names = level.labels + tuple(self.header_labels)
            order = [names.index(name) for name in self._total_labels(level)]
            for headed, count in sorted(level.headed.items()):
                total.add_metric([headed[i] for i in order], count)
        for key, count in sorted(level.tls.items()):
            tls.add_metric(list(key), count)
        return [total, tls, duration, received, sent]

    def _total_labels(self, level: _Level) -> list[str]:
        return sorted((*level.labels, *self.header_labels))


def _forget(counters: dict[tuple[str, ...], Any], labels: tuple[str, ...],
            kept: dict[str, Collection[str]]) -> None:
    checks = [(index, kept[name]) for index, name in enumerate(labels) if name in kept]
    for key in [key for key in counters if any(key[i] not in names for i, names in checks)]:
        del counters[key]


def request_protocol(fields: HeaderFields) -> str:
    """Traefik's ``protocol`` label for a request with these header fields.

    Each test reads the first field of its name only, as Go's ``Header.Get`` does; one pass
    over the fields finds all four.
    """
    connection = upgrade = accept = content_type = None
    for name, value in fields:
        size = len(name)
        if size == 10:
            if connection is None and name.lower() == b"connection":
                connection = value
        elif size == 7:
            if upgrade is None and name.lower() == b"upgrade":
                upgrade = value
        elif size == 6:
            if accept is None and name.lower() == b"accept":
                accept = value
        elif size == 12 and content_type is None and name.lower() == b"content-type":
            content_type = value
    if _lists(connection, b"upgrade") and _lists(upgrade, b"websocket"):
        return "websocket"
    if _lists(accept, b"text/event-stream"):
        return "sse"
    if content_type is not None:
        if content_type.startswith(b"application/grpc-web"):
            return "grpc-web"
        if content_type.startswith(b"application/grpc"):
            return "grpc"
    return "http"


def grpc_code(record: RequestRecord) -> int:
    """A gRPC request's status: ``grpc-status`` of the response head or, as gRPC sends it
    after the messages, of its trailers; else 2 (Unknown)."""
    value = first_value(record.response_headers, b"grpc-status")
    if value is None:
        value = first_value(record.response_trailers, b"grpc-status")
    return _GRPC_UNKNOWN if value is None else _parse_grpc_status(value.decode("latin-1"))


def _parse_grpc_status(text: str) -> int:
    # grpc-go's Code.UnmarshalJSON: a number below 17 or a quoted name; anything else Unknown.
    if text.isascii() and text.isdigit():
        code = int(text)
        return code if code < len(_GRPC_CODE_NAMES) else _GRPC_UNKNOWN
    return _GRPC_CODE_NAMES.get(text, _GRPC_UNKNOWN)


def _lists(value: bytes | None, token: bytes) -> bool:
    return value is not None and any(part.strip().lower() == token for part in value.split(b","))


def _go_float(value: float) -> str:
    """A bucket bound as Go prints it: ``5``, not ``5.0``."""
    return repr(float(value)).removesuffix(".0")


def _full_name(family: Metric) -> str:
    return family.name + "_total" if family.type == "counter" else family.name
