"""The weighted HTTP service over real backends: weights, DOWN children, sticky cookies."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from switchyard.http.balancer import LoadBalancer
from switchyard.http.sticky import StickyCookie, cookie_value
from switchyard.http.weighted import EarliestDeadline, WeightedService
from tests.harness import LoopThread
from tests.httpkit import Engine
from tests.namedbackend import NamedBackend, get


class Flag:
    def __init__(self) -> None:
        self.up = True


@pytest.fixture
def start(loop_thread: LoopThread) -> Iterator[Any]:
    started: list[Any] = []

    def backend(name: str, status: int = 200) -> NamedBackend:
        server = NamedBackend(loop_thread, name, status)
        started.append(server)
        return server

    def engine(handler: Any) -> Engine:
        running = Engine(loop_thread, handler)
        started.append(running)
        return running

    yield backend, engine
    for thing in started:
        thing.stop() if isinstance(thing, NamedBackend) else thing.close()


def service_of(*backends: NamedBackend) -> LoadBalancer:
    return LoadBalancer(backends[0].name + "-svc", [b.balanced() for b in backends])


def test_schedule_follows_weights_and_skips_down_targets() -> None:
    a, b, c = Flag(), Flag(), Flag()
    schedule = EarliestDeadline([(a, 3), (b, 1), (c, 0)])
    picks = Counter(id(schedule.pick()) for _ in range(400))
    assert picks == {id(a): 300, id(b): 100}
    a.up = False
    assert {id(schedule.pick()) for _ in range(10)} == {id(b)}
    b.up = False
    assert schedule.pick() is None and not schedule.has_candidate()


def test_requests_split_by_weight_over_child_services(start: Any) -> None:
    backend, engine = start
    one, two = backend("one"), backend("two")
    weighted = WeightedService("split@file", [("one", service_of(one), 3),
                                              ("two", service_of(two), 1)])
    served = engine(weighted)
    bodies = Counter(get(served.url + "/")[2] for _ in range(40))
    assert bodies == {"one": 30, "two": 10}


def test_child_with_no_server_up_is_skipped_and_none_up_is_503(start: Any) -> None:
    backend, engine = start
    one, two = backend("one"), backend("two")
    first, second = service_of(one), service_of(two)
    served = engine(WeightedService("split@file", [("one", first, 1), ("two", second, 1)]))
    first.servers[0].up = False
    assert {get(served.url)[2] for _ in range(6)} == {"two"}
    second.servers[0].up = False
    status, headers, body = get(served.url)
    assert (status, body) == (503, "no available server\n")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"


def test_sticky_cookie_is_set_then_followed(start: Any) -> None:
    backend, engine = start
    one, two = backend("one"), backend("two")
    cookie = StickyCookie("lb", http_only=True, same_site="strict")
    served = engine(WeightedService("split@file", [("one", service_of(one), 1),
                                                   ("two", service_of(two), 1)], sticky=cookie))
    status, headers, body = get(served.url)
    assert status == 200
    assert headers["Set-Cookie"] == f"lb={cookie_value(body)}; Path=/; HttpOnly; SameSite=Strict"
    for _ in range(5):
        again_status, again_headers, again = get(served.url,
                                                 {"Cookie": f"lb={cookie_value(body)}"})
        assert (again_status, again) == (200, body)
        assert again_headers["Set-Cookie"] is None  # a valid cookie is not set again


def test_sticky_cookie_naming_a_down_child_moves_the_client(start: Any) -> None:
    backend, engine = start
    one, two = backend("one"), backend("two")
    first = service_of(one)
    served = engine(WeightedService("split@file", [("one", first, 1),
                                                   ("two", service_of(two), 1)],
                                    sticky=StickyCookie("lb")))
    first.servers[0].up = False
    _, headers, body = get(served.url, {"Cookie": f"lb={cookie_value('one')}"})
    assert body == "two"
    assert headers["Set-Cookie"] == f"lb={cookie_value('two')}; Path=/"


def test_legacy_cookie_is_followed_and_rewritten(start: Any) -> None:
    backend, engine = start
    one, two = backend("one"), backend("two")
    served = engine(WeightedService("split@file", [("one", service_of(one), 1),
                                                   ("two", service_of(two), 1)],
                                    sticky=StickyCookie("lb")))
    for _ in range(3):
        _, headers, body = get(served.url, {"Cookie": "lb=two"})
        assert body == "two"
        assert headers["Set-Cookie"] == f"lb={cookie_value('two')}; Path=/"
