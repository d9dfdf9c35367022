"""The mirroring HTTP service over real backends: shares, discarded answers, bodies."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from switchyard.http.balancer import LoadBalancer
from switchyard.http.mirroring import Mirror, MirroringService
from tests.harness import LoopThread
from tests.httpkit import Engine
from tests.namedbackend import NamedBackend, get


@pytest.fixture
def trio(loop_thread: LoopThread) -> Iterator[tuple[NamedBackend, NamedBackend, NamedBackend]]:
    made = (NamedBackend(loop_thread, "main"), NamedBackend(loop_thread, "half", 500),
            NamedBackend(loop_thread, "all"))
    yield made
    for backend in made:
        backend.stop()


def wait_for(condition: Any) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def lb(backend: NamedBackend) -> LoadBalancer:
    return LoadBalancer(backend.name + "@file", [backend.balanced()])


def test_mirrors_get_their_share_and_their_answers_are_dropped(
        loop_thread: LoopThread, trio: tuple[NamedBackend, NamedBackend, NamedBackend]) -> None:
    main, half, every = trio
    service = MirroringService("m@file", lb(main), [Mirror(lb(half), 50), Mirror(lb(every), 100)])
    engine = Engine(loop_thread, service)
    try:
        answers = [get(engine.url + f"/r{n}?q=1") for n in range(4)]
        assert [(status, body) for status, _, body in answers] == [(200, "main")] * 4
        wait_for(lambda: every.hits == 4 and half.hits == 2)
        assert every.paths == ["/r0?q=1", "/r1?q=1", "/r2?q=1", "/r3?q=1"]
        assert half.paths == ["/r0?q=1", "/r2?q=1"]  # count x 100 < total x percent
    finally:
        engine.close()


def test_requests_with_a_body_are_served_but_not_mirrored(
        loop_thread: LoopThread, trio: tuple[NamedBackend, NamedBackend, NamedBackend]) -> None:
    main, _, every = trio
    engine = Engine(loop_thread, MirroringService("m@file", lb(main), [Mirror(lb(every), 100)]))
    try:
        request = urllib.request.Request(engine.url + "/post", data=b"payload", method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.read() == b"main"
        get(engine.url + "/after")
        wait_for(lambda: every.hits == 1)
        assert every.paths == ["/after"]
    finally:
        engine.close()


def test_percent_outside_0_to_100_is_refused() -> None:
    with pytest.raises(ValueError, match="percent must be between 0 and 100"):
        Mirror(MirroringService("x", None, []), 101)  # type: ignore[arg-type]
