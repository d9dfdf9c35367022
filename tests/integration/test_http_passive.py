"""Passive health checks over real backends: 5xx and refused connections take a server out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from switchyard.http.balancer import LoadBalancer
from switchyard.http.passive import PassiveHealthChecked, failed
from tests.harness import LoopThread
from tests.httpkit import Engine
from tests.namedbackend import NamedBackend, get


@pytest.fixture
def setup(loop_thread: LoopThread) -> Iterator[Any]:
    started: list[Any] = []

    def build(**options: Any) -> tuple[str, NamedBackend, NamedBackend, LoadBalancer]:
        good, bad = NamedBackend(loop_thread, "good"), NamedBackend(loop_thread, "bad")
        balancer = LoadBalancer("app@file", [bad.balanced(), good.balanced()])
        checked = PassiveHealthChecked("app@file", balancer, balancer.servers, **options)
        engine = Engine(loop_thread, checked)
        started.extend([good, bad, engine])
        return engine.url, good, bad, balancer

    yield build
    for thing in started:
        thing.stop() if isinstance(thing, NamedBackend) else thing.close()


def test_what_counts_as_a_failure() -> None:
    assert failed(500) and failed(502) and failed(0)
    assert not failed(200) and not failed(404) and not failed(499)


def test_one_5xx_takes_the_server_out_for_the_window(setup: Any) -> None:
    url, _, bad, balancer = setup(failure_window=0.4)
    bad.status = 500
    first = [get(url) for _ in range(2)]  # round robin: bad first, then good
    assert [(status, body) for status, _, body in first] == [(500, "bad"), (200, "good")]
    assert not balancer.servers[0].up
    assert {get(url)[2] for _ in range(5)} == {"good"}
    bad.status = 200
    time.sleep(0.6)
    assert balancer.servers[0].up
    assert "bad" in {get(url)[2] for _ in range(4)}


def test_refused_connection_counts_as_a_failure(setup: Any) -> None:
    url, _, bad, balancer = setup(failure_window=5)
    bad.stop()
    assert get(url)[0] == 502
    assert not balancer.servers[0].up
    assert {get(url)[2] for _ in range(4)} == {"good"}


def test_4xx_does_not_count_and_a_success_clears_earlier_failures(setup: Any) -> None:
    url, _, bad, balancer = setup(failure_window=5, max_failed_attempts=2)
    bad.status = 404
    for _ in range(6):
        get(url)
    assert balancer.servers[0].up
    bad.status = 500
    get(url), get(url)  # one failure (bad), one success (good)
    bad.status = 200
    get(url), get(url)  # bad succeeds: its failure is forgotten
    bad.status = 500
    get(url), get(url)
    assert balancer.servers[0].up  # one failure since the success, below 2
    get(url), get(url)
    assert not balancer.servers[0].up


def test_with_an_active_check_the_server_stays_out_until_it_says_so(setup: Any) -> None:
    url, _, bad, balancer = setup(failure_window=0.2, active=True)
    bad.status = 503
    get(url)
    assert not balancer.servers[0].up
    time.sleep(0.4)
    assert not balancer.servers[0].up
