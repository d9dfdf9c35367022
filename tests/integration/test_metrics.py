"""Prometheus `/metrics` after real traffic, read back with prometheus_client's own parser."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from switchyard.server import Switchyard
from tests.harness import (
    Backends,
    LoopThread,
    connect,
    read_lines,
    read_until_closed,
    start_router,
    stop_router,
)

# Names are unique to this module: the traffic counters are per process, shared by all tests.
DYNAMIC = """
tcp:
  routers:
    metered:
      rule: "HostSNI(`*`)"
      service: metered-svc
      entryPoints: [metered-ep]
    guarded:
      rule: "HostSNI(`*`)"
      service: metered-svc
      entryPoints: [guarded-ep]
      middlewares: [office-only]
  middlewares:
    office-only:
      ipAllowList:
        sourceRange: ["10.0.0.0/8"]
  services:
    metered-svc:
      loadBalancer:
        servers:
          - address: "127.0.0.1:{port}"
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Scraper:
    app: Switchyard
    port: int

    def scrape(self) -> Samples:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain")
            text = r.read().decode()
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def wait_closed(self, entrypoint: str) -> Samples:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            samples = self.scrape()
            if value(samples, "traefik_open_connections", entrypoint=entrypoint,
                     protocol="TCP") == 0:
                return samples
            time.sleep(0.02)
        raise AssertionError(f"connections on {entrypoint} did not close")


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def growth(after: Samples, before: Samples, name: str, **labels: str) -> float:
    """How much a counter grew; series absent before count from zero."""
    key = (name, frozenset(labels.items()))
    return after[key] - before.get(key, 0.0)


@pytest.fixture
def scraper(loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> Iterator[Scraper]:
    port = backends.whoami("metered")
    app = start_router(loop_thread, tmp_path, DYNAMIC.format(port=port),
                       entrypoints={"metered-ep": "127.0.0.1:0", "guarded-ep": "127.0.0.1:0",
                                    "traefik": "127.0.0.1:0"},
                       metrics={"prometheus": {}})
    try:
        # The object start_internal returned; Switchyard keeps it to close it on shutdown.
        yield Scraper(app, int(app.internal_servers[0].port))
    finally:
        stop_router(loop_thread, app)


def exchange(port: int, payload: bytes) -> int:
    """Send `payload` through whoami's echo; return every byte received."""
    with connect(port) as conn:
        received = len("\n".join(read_lines(conn, 2))) + 1
        conn.sendall(payload)
        echoed = b""
        while len(echoed) < len(payload):
            echoed += conn.recv(65536)
        assert echoed == payload
        return received + len(echoed)


def test_byte_and_connection_counters_add_up_to_the_traffic_sent(scraper: Scraper) -> None:
    port = scraper.app.entrypoints["metered-ep"].port
    before = scraper.wait_closed("metered-ep")
    payloads = [b"x" * 70_000, b"y" * 1234, b"z"]
    received = sum(exchange(port, p) for p in payloads)
    sent = sum(len(p) for p in payloads)
    samples = scraper.wait_closed("metered-ep")
    [server] = [dict(labels)["url"] for name, labels in samples
                if name == "traefik_service_server_up"
                and ("service", "metered-svc@file") in labels]
    for level, labels in (("entrypoint", {"entrypoint": "metered-ep"}),
                          ("router", {"router": "metered@file"}),
                          ("service", {"service": "metered-svc@file"}),
                          ("server", {"service": "metered-svc@file", "server": server})):
        prefix = f"traefik_tcp_{level}"
        assert growth(samples, before, f"{prefix}_received_bytes_total", **labels) == sent
        assert growth(samples, before, f"{prefix}_sent_bytes_total", **labels) == received
        assert growth(samples, before, f"{prefix}_connections_total", **labels) == 3
        assert growth(samples, before, f"{prefix}_connection_duration_seconds_count",
                      **labels) == 3
        assert growth(samples, before, f"{prefix}_connection_duration_seconds_bucket",
                      le="+Inf", **labels) == 3
        assert growth(samples, before, f"{prefix}_connection_duration_seconds_sum",
                      **labels) > 0
    assert value(samples, "traefik_tcp_router_open_connections", router="metered@file") == 0
    # Every connection ended once, whichever side closed first.
    closed = sum(v - before.get((name, labels), 0.0) for (name, labels), v in samples.items()
                 if name == "traefik_tcp_entrypoint_closed_connections_total"
                 and ("entrypoint", "metered-ep") in labels)
    assert closed == 3


def test_open_connection_counts_and_bytes_show_before_it_ends(scraper: Scraper) -> None:
    port = scraper.app.entrypoints["metered-ep"].port
    before = scraper.wait_closed("metered-ep")
    start = value(before, "traefik_tcp_router_received_bytes_total", router="metered@file")
    with connect(port) as conn:
        read_lines(conn, 2)
        conn.sendall(b"live!")
        assert conn.recv(5) == b"live!"
        during = scraper.scrape()
        assert value(during, "traefik_open_connections", entrypoint="metered-ep",
                     protocol="TCP") == 1
        assert value(during, "traefik_tcp_router_open_connections", router="metered@file") == 1
        assert value(during, "traefik_tcp_router_received_bytes_total",
                     router="metered@file") == start + 5
    after = scraper.wait_closed("metered-ep")
    # Counters stay monotonic when the live bytes move into the finished totals.
    assert value(after, "traefik_tcp_router_received_bytes_total",
                 router="metered@file") == start + 5


def test_refused_connection_counts_as_rejection_by_reason(scraper: Scraper) -> None:
    port = scraper.app.entrypoints["guarded-ep"].port
    before = scraper.scrape()
    assert read_until_closed(connect(port)) == b""
    samples = scraper.wait_closed("guarded-ep")
    assert growth(samples, before, "traefik_tcp_middleware_rejections_total",
                  entrypoint="guarded-ep", router="guarded@file",
                  middleware="office-only@file", reason="ip_not_allowed") == 1
    assert growth(samples, before, "traefik_tcp_entrypoint_closed_connections_total",
                  entrypoint="guarded-ep", reason="rejected") == 1
    assert growth(samples, before, "traefik_tcp_router_connections_total",
                  router="guarded@file") == 0


def test_server_health_and_config_reload_metrics(scraper: Scraper) -> None:
    samples = scraper.scrape()
    [(server, up)] = [(dict(labels)["url"], v) for (name, labels), v in samples.items()
                      if name == "traefik_service_server_up"]
    assert server.startswith("127.0.0.1:") and up == 1
    assert value(samples, "traefik_config_reloads_total") == 1
    assert value(samples, "traefik_config_reloads_failure_total") == 0
    assert abs(value(samples, "traefik_config_last_reload_success") - time.time()) < 60
    assert value(samples, "traefik_config_last_reload_failure") == 0
