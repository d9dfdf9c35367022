"""Traefik's HTTP metric families from RequestRecords: names, labels, values, options."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from switchyard.api.http_metrics import (
    HTTPMetrics,
    PrometheusOptions,
    grpc_code,
    request_protocol,
)
from switchyard.api.metrics import MergedCollector
from switchyard.config.static import Metrics
from switchyard.http.handler import RequestRecord

ROUTER = "app@file"
SERVICE = "app@file"
SERVER = "http://127.0.0.1:8081"


def record(**changes: Any) -> RequestRecord:
    """A proxied GET as the engine records it, with ``changes``."""
    fields: dict[str, Any] = {
        "entry_point": "web", "router": ROUTER, "service": SERVICE, "server": SERVER,
        "method": "GET", "path": "/", "protocol": "HTTP/1.1", "status": 200,
        "request_bytes": 0, "response_bytes": 10, "duration": 0.05, "client_ip": "127.0.0.1",
        "client_port": 40000, "tls": False, "closed_by": ""}
    return RequestRecord(**{**fields, **changes})


def metrics(**options: Any) -> HTTPMetrics:
    add_internals = options.pop("add_internals", False)
    server_states = options.pop("server_states", None)
    return HTTPMetrics(PrometheusOptions.model_validate(options), add_internals=add_internals,
                       server_states=server_states)


def exposition(collector: HTTPMetrics) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def samples(collector: HTTPMetrics) -> dict[str, list[Sample]]:
    """Samples of the text exposition, parsed back, by sample name."""
    found: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(exposition(collector)):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def only(collector: HTTPMetrics, name: str) -> Sample:
    found = samples(collector)[name]
    assert len(found) == 1, found
    return found[0]


def test_a_request_is_counted_under_traefiks_entry_point_names_and_labels() -> None:
    collector = metrics()
    collector.observe(record(request_bytes=7, response_bytes=11))
    found = samples(collector)
    labels = {"code": "200", "entrypoint": "web", "method": "GET", "protocol": "http"}
    assert found["traefik_entrypoint_requests_total"] == [
        Sample("traefik_entrypoint_requests_total", labels, 1.0)]
    assert found["traefik_entrypoint_requests_bytes_total"][0].value == 7
    assert found["traefik_entrypoint_responses_bytes_total"][0].value == 11
    assert found["traefik_entrypoint_request_duration_seconds_count"][0].labels == labels


def test_families_are_those_traefik_shows_by_default_entry_points_and_services() -> None:
    collector = metrics()
    collector.observe(record())
    names = set(samples(collector))
    assert {name for name in names if name.endswith("_total")} == {
        "traefik_entrypoint_requests_total", "traefik_entrypoint_requests_bytes_total",
        "traefik_entrypoint_responses_bytes_total", "traefik_service_requests_total",
        "traefik_service_requests_bytes_total", "traefik_service_responses_bytes_total"}
    assert "traefik_entrypoint_request_duration_seconds_bucket" in names
    assert "traefik_service_request_duration_seconds_bucket" in names


def test_label_names_print_in_sorted_order_as_traefiks_go_client_prints_them() -> None:
    collector = metrics(addRoutersLabels=True)
    collector.observe(record())
    text = exposition(collector)
    assert ('traefik_entrypoint_requests_total{code="200",entrypoint="web",method="GET",'
            'protocol="http"} 1.0') in text
    assert ('traefik_router_requests_total{code="200",method="GET",protocol="http",'
            'router="app@file",service="app@file"} 1.0') in text
    assert ('traefik_service_requests_total{code="200",method="GET",protocol="http",'
            'service="app@file"} 1.0') in text


def test_router_families_appear_only_with_add_routers_labels() -> None:
    without = metrics()
    without.observe(record())
    assert not any(name.startswith("traefik_router_") for name in samples(without))
    with_routers = metrics(addRoutersLabels=True)
    with_routers.observe(record())
    sample = only(with_routers, "traefik_router_requests_total")
    assert sample.labels == {"code": "200", "method": "GET", "protocol": "http",
                             "router": ROUTER, "service": SERVICE}


def test_entry_point_and_service_families_can_be_switched_off() -> None:
    collector = metrics(addEntryPointsLabels="false", addServicesLabels=False)
    collector.observe(record())
    assert samples(collector) == {}


def test_a_request_no_router_matched_counts_only_at_its_entry_point() -> None:
    collector = metrics(addRoutersLabels=True)
    collector.observe(record(router="", service="", server="", status=404))
    names = set(samples(collector))
    assert only(collector, "traefik_entrypoint_requests_total").labels["code"] == "404"
    assert not any(name.startswith(("traefik_router_", "traefik_service_")) for name in names)


def test_service_counts_only_requests_that_reached_a_server_of_the_balancer() -> None:
    collector = metrics(addRoutersLabels=True)
    collector.observe(record(server="", status=503))  # no server up
    collector.observe(record(service="blue@file", router_service="split@file"))
    found = samples(collector)
    assert [s.labels["service"] for s in found["traefik_service_requests_total"]] == [
        "blue@file"]
    # The router's series name the service the router points at, as Traefik's do.
    assert sorted(s.labels["service"] for s in found["traefik_router_requests_total"]) == [
        "app@file", "split@file"]


def test_duration_histogram_has_traefiks_default_buckets_cumulated() -> None:
    collector = metrics()
    for duration in (0.05, 0.1, 0.2, 2.0, 9.0):
        collector.observe(record(duration=duration))
    buckets = {s.labels["le"]: s.value
               for s in samples(collector)["traefik_entrypoint_request_duration_seconds_bucket"]}
    assert buckets == {"0.1": 2, "0.3": 3, "1.2": 3, "5": 4, "+Inf": 5}
    total = only(collector, "traefik_entrypoint_request_duration_seconds_sum").value
    assert total == pytest.approx(11.35)
    assert only(collector, "traefik_entrypoint_request_duration_seconds_count").value == 5


def test_buckets_come_from_the_prometheus_options_also_as_a_flag_string() -> None:
    collector = metrics(buckets="0.5,1")
    collector.observe(record(duration=0.7))
    buckets = {s.labels["le"]: s.value
               for s in samples(collector)["traefik_entrypoint_request_duration_seconds_bucket"]}
    assert buckets == {"0.5": 0, "1": 1, "+Inf": 1}


def test_status_codes_are_label_strings_and_series_are_kept_apart() -> None:
    collector = metrics()
    collector.observe(record(status=200))
    collector.observe(record(status=200))
    collector.observe(record(status=502))
    values = {s.labels["code"]: s.value
              for s in samples(collector)["traefik_entrypoint_requests_total"]}
    assert values == {"200": 2, "502": 1}


def test_client_gone_before_any_response_counts_as_499() -> None:
    collector = metrics()
    collector.observe(record(status=0, closed_by="client", response_bytes=0))
    assert only(collector, "traefik_entrypoint_requests_total").labels["code"] == "499"


@pytest.mark.parametrize(("method", "label"), [
    ("GET", "GET"), ("PATCH", "PATCH"), ("PRI", "PRI"), ("PROPFIND", "EXTENSION_METHOD"),
    ("get", "EXTENSION_METHOD")])
def test_methods_outside_the_http_verbs_count_as_extension_method(method: str,
                                                                 label: str) -> None:
    collector = metrics()
    collector.observe(record(method=method))
    assert only(collector, "traefik_entrypoint_requests_total").labels["method"] == label


@pytest.mark.parametrize(("headers", "protocol"), [
    ([], "http"),
    ([(b"Connection", b"keep-alive, Upgrade"), (b"Upgrade", b"WebSocket")], "websocket"),
    ([(b"Connection", b"upgrade")], "http"),
    ([(b"Upgrade", b"websocket")], "http"),
    ([(b"accept", b"text/html, text/event-stream")], "sse"),
    ([(b"Accept", b"text/event-stream;q=0.9")], "http"),
    ([(b"Content-Type", b"application/grpc-web+proto")], "grpc-web"),
    ([(b"Content-Type", b"application/grpc")], "grpc"),
    ([(b"Content-Type", b"Application/grpc")], "http"),
    # Only the first field of a name counts, as with Go's Header.Get.
    ([(b"Accept", b"*/*"), (b"Accept", b"text/event-stream")], "http"),
])
def test_protocol_label_is_derived_from_the_request_fields(headers: list[tuple[bytes, bytes]],
                                                           protocol: str) -> None:
    assert request_protocol(headers) == protocol
    collector = metrics()
    collector.observe(record(request_headers=headers))
    assert only(collector, "traefik_entrypoint_requests_total").labels["protocol"] == protocol


def test_a_record_without_request_headers_counts_as_plain_http() -> None:
    collector = metrics()
    collector.observe(record())
    assert only(collector, "traefik_entrypoint_requests_total").labels["protocol"] == "http"


@pytest.mark.parametrize(("response", "trailers", "code"), [
    ([(b"grpc-status", b"0")], [], 0),
    ([], [(b"Grpc-Status", b"14")], 14),
    ([(b"grpc-status", b'"NOT_FOUND"')], [], 5),
    ([(b"grpc-status", b"17")], [], 2),
    ([(b"grpc-status", b"oops")], [], 2),
    ([], [], 2),
])
def test_grpc_requests_are_labelled_with_the_grpc_status(response: list[tuple[bytes, bytes]],
                                                         trailers: list[tuple[bytes, bytes]],
                                                         code: int) -> None:
    grpc = record(request_headers=[(b"content-type", b"application/grpc")],
                  response_headers=response, response_trailers=trailers)
    assert grpc_code(grpc) == code
    collector = metrics()
    collector.observe(grpc)
    sample = only(collector, "traefik_entrypoint_requests_total")
    assert (sample.labels["code"], sample.labels["protocol"]) == (str(code), "grpc")


def test_tls_requests_are_counted_by_traefiks_version_and_go_cipher_names() -> None:
    collector = metrics(addRoutersLabels=True)
    collector.observe(record(tls=True, tls_version="TLSv1.2",
                             tls_cipher="ECDHE-RSA-AES128-GCM-SHA256"))
    collector.observe(record())  # plain HTTP: not in the TLS families
    tls = {"tls_version": "1.2", "tls_cipher": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}
    assert only(collector, "traefik_entrypoint_requests_tls_total").labels == {
        "entrypoint": "web", **tls}
    assert only(collector, "traefik_router_requests_tls_total").labels == {
        "router": ROUTER, "service": SERVICE, **tls}
    assert only(collector, "traefik_service_requests_tls_total").labels == {
        "service": SERVICE, **tls}


def test_a_tls_request_without_its_negotiated_details_reads_unknown() -> None:
    collector = metrics()
    collector.observe(record(tls=True))
    assert only(collector, "traefik_entrypoint_requests_tls_total").labels == {
        "entrypoint": "web", "tls_version": "unknown", "tls_cipher": "unknown"}


def test_requests_to_internal_services_count_only_with_add_internals() -> None:
    internal = {"router": "ping@internal", "service": "ping@internal", "server": ""}
    hidden = metrics()
    hidden.observe(record(**internal))
    assert samples(hidden) == {}
    shown = metrics(add_internals=True)
    shown.observe(record(**internal))
    assert only(shown, "traefik_entrypoint_requests_total").value == 1


def test_header_labels_extend_requests_total_only() -> None:
    collector = metrics(addRoutersLabels=True, headerLabels={"useragent": "User-Agent"})
    collector.observe(record(request_headers=[(b"user-agent", b"curl/8")]))
    collector.observe(record())
    found = samples(collector)
    agents = sorted(s.labels["useragent"] for s in found["traefik_entrypoint_requests_total"])
    assert agents == ["", "curl/8"]
    assert all("useragent" in s.labels for s in found["traefik_router_requests_total"])
    assert all("useragent" in s.labels for s in found["traefik_service_requests_total"])
    assert "useragent" not in found["traefik_entrypoint_requests_bytes_total"][0].labels
    assert [s.value for s in found["traefik_entrypoint_requests_bytes_total"]] == [0]


def test_a_header_label_named_like_a_traefik_label_is_refused() -> None:
    with pytest.raises(ValueError, match="headerLabels: method is already a label"):
        metrics(headerLabels={"method": "X-Method"})


def test_nothing_is_shown_before_the_first_request() -> None:
    assert samples(metrics(addRoutersLabels=True)) == {}


def test_server_up_lists_the_states_it_is_given() -> None:
    states = [("app@file", "http://10.0.0.2:80", False), ("app@file", "http://10.0.0.1:80", True)]
    collector = metrics(server_states=lambda: states)
    found = samples(collector)["traefik_service_server_up"]
    assert [(s.labels, s.value) for s in found] == [
        ({"service": "app@file", "url": "http://10.0.0.1:80"}, 1),
        ({"service": "app@file", "url": "http://10.0.0.2:80"}, 0)]


def test_options_come_from_the_static_metrics_section() -> None:
    config = Metrics.model_validate({"addInternals": True, "prometheus": {
        "entryPoint": "metrics", "addrouterslabels": "true", "buckets": [1, 2]}})
    collector = HTTPMetrics.from_config(config)
    assert collector.add_internals is True
    assert collector.router is not None
    assert collector.buckets == (1.0, 2.0)


def test_a_family_two_collectors_yield_is_exposed_once_with_both_samples() -> None:
    class TCPServers:
        def collect(self) -> list[Metric]:
            up = GaugeMetricFamily("traefik_service_server_up", "TCP servers.",
                                   labels=["service", "url"])
            up.add_metric(["db@file", "10.0.0.9:5432"], 1)
            return [up]

    http = metrics(server_states=lambda: [("app@file", "http://10.0.0.1:80", True)])
    registry = CollectorRegistry()
    registry.register(MergedCollector(TCPServers(), http))
    text = generate_latest(registry).decode()
    assert text.count("# TYPE traefik_service_server_up gauge") == 1
    families = [f for f in text_string_to_metric_families(text)
                if f.name == "traefik_service_server_up"]
    assert [s.labels["service"] for s in families[0].samples] == ["db@file", "app@file"]


def test_series_of_elements_a_new_configuration_lacks_are_forgotten() -> None:
    collector = metrics(addRoutersLabels=True, headerLabels={"agent": "User-Agent"})
    collector.observe(record(tls=True))
    collector.observe(record(router="old@file", service="gone@file", tls=True))
    collector.observe(record(entry_point="closed"))
    collector.retain(entry_points={"web"}, routers={ROUTER}, services={SERVICE})
    found = samples(collector)
    for name in ("traefik_entrypoint_requests_total", "traefik_router_requests_total",
                 "traefik_service_requests_total", "traefik_router_requests_tls_total",
                 "traefik_service_responses_bytes_total"):
        assert {(s.labels.get("entrypoint", "web"), s.labels.get("router", ROUTER),
                 s.labels.get("service", SERVICE))
                for s in found[name]} == {("web", ROUTER, SERVICE)}, name


def test_a_websocket_upgrade_counts_with_code_0_as_traefik_does() -> None:
    collector = metrics()
    collector.observe(record(status=101, request_headers=[
        (b"Connection", b"keep-alive, Upgrade"), (b"Upgrade", b"websocket")]))
    sample = only(collector, "traefik_entrypoint_requests_total")
    assert (sample.labels["code"], sample.labels["protocol"]) == ("0", "websocket")


def test_a_router_counts_a_middlewares_answer_under_the_routers_service() -> None:
    collector = metrics(addRoutersLabels=True)
    collector.observe(record(status=401, service="", server="", router_service=SERVICE))
    sample = only(collector, "traefik_router_requests_total")
    assert (sample.labels["code"], sample.labels["service"]) == ("401", SERVICE)
    assert "traefik_service_requests_total" not in samples(collector)
