"""The failover HTTP service over real backends: main, fallback, both down."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from switchyard.config.http import HTTPService
from switchyard.http.balancer import LoadBalancer
from switchyard.http.failover import FailoverService, reports_health
from tests.harness import LoopThread
from tests.httpkit import Engine
from tests.namedbackend import NamedBackend, get


@pytest.fixture
def pair(loop_thread: LoopThread) -> Iterator[tuple[LoadBalancer, LoadBalancer]]:
    main, spare = NamedBackend(loop_thread, "main"), NamedBackend(loop_thread, "spare")
    yield (LoadBalancer("main@file", [main.balanced()]),
           LoadBalancer("spare@file", [spare.balanced()]))
    main.stop()
    spare.stop()


@pytest.fixture
def serve(loop_thread: LoopThread) -> Iterator[Any]:
    engines: list[Engine] = []

    def start(handler: Any) -> str:
        engines.append(Engine(loop_thread, handler))
        return engines[-1].url

    yield start
    for engine in engines:
        engine.close()


def test_main_serves_while_up_then_fallback(serve: Any,
                                            pair: tuple[LoadBalancer, LoadBalancer]) -> None:
    main, spare = pair
    url = serve(FailoverService("fo@file", main, spare))
    assert get(url)[2] == "main"
    main.servers[0].up = False
    assert get(url)[2] == "spare"
    main.servers[0].up = True
    assert get(url)[2] == "main"


def test_both_down_is_503_when_the_fallback_is_watched(
        serve: Any, pair: tuple[LoadBalancer, LoadBalancer]) -> None:
    main, spare = pair
    failover = FailoverService("fo@file", main, spare, watch_fallback=True)
    url = serve(failover)
    main.servers[0].up = spare.servers[0].up = False
    assert not failover.up
    status, _, body = get(url)
    assert (status, body) == (503, "Service Unavailable\n")


def test_unwatched_fallback_answers_for_itself(serve: Any,
                                               pair: tuple[LoadBalancer, LoadBalancer]) -> None:
    main, spare = pair
    url = serve(FailoverService("fo@file", main, spare))
    main.servers[0].up = spare.servers[0].up = False
    # Without healthCheck: {} Traefik never learns the fallback's state: its balancer answers.
    assert get(url)[:3:2] == (503, "no available server\n")


def test_only_health_checked_services_report_their_state() -> None:
    def service(raw: dict[str, Any]) -> HTTPService:
        return HTTPService.model_validate(raw)

    servers = {"servers": [{"url": "http://127.0.0.1:1"}]}
    assert reports_health(service({"loadBalancer": {**servers, "healthCheck": {"path": "/"}}}))
    assert not reports_health(service({"loadBalancer": servers}))
    assert not reports_health(service({"loadBalancer": {**servers, "passiveHealthCheck": {}}}))
    assert reports_health(service({"weighted": {"services": [], "healthCheck": {}}}))
    assert not reports_health(service({"failover": {"service": "a", "fallback": "b"}}))
