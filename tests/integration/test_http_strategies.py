"""Load-balancing strategies: p2c, hrw and leasttime pickers, and the balancer serving them."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from switchyard.http.sticky import StickyCookie, cookie_value
from switchyard.http.strategies import (
    HighestRandomWeight,
    LeastTime,
    PowerOfTwoChoices,
    StrategyBalancer,
    hrw_score,
    picker_for,
)
from tests.harness import LoopThread
from tests.httpkit import Engine
from tests.namedbackend import NamedBackend, get


def stub(url: str, weight: int = 1, open_requests: int = 0) -> Any:
    return SimpleNamespace(url=url, weight=weight, open_requests=open_requests, up=True)


def client(ip: str) -> Any:
    return SimpleNamespace(info=SimpleNamespace(client_ip=ip), writer=None)


@pytest.fixture
def start(loop_thread: LoopThread) -> Iterator[Any]:
    started: list[Any] = []

    def backends(*names: str) -> list[NamedBackend]:
        made = [NamedBackend(loop_thread, name) for name in names]
        started.extend(made)
        return made

    def engine(handler: Any) -> str:
        started.append(Engine(loop_thread, handler))
        return str(started[-1].url)

    yield backends, engine
    for thing in started:
        thing.stop() if isinstance(thing, NamedBackend) else thing.close()


def test_p2c_takes_the_less_busy_of_two_different_servers() -> None:
    idle, busy = stub("idle"), stub("busy", open_requests=5)
    picker = PowerOfTwoChoices(random.Random(1))
    assert {picker.pick([idle, busy], client("1.2.3.4")).url for _ in range(50)} == {"idle"}
    third = stub("third", open_requests=1)
    picks = Counter(picker.pick([idle, busy, third], client("x")).url for _ in range(300))
    assert picks["busy"] == 0 and picks["idle"] > picks["third"] > 0


def test_hrw_score_is_fnv1a_mapped_as_traefik_maps_it() -> None:
    # FNV-1a 64 of "10.0.0.1http://a": computed independently below.
    value = 0xCBF29CE484222325
    for byte in b"10.0.0.1http://a":
        value = ((value ^ byte) * 0x100000001B3) % (1 << 64)

    assert hrw_score("10.0.0.1", "http://a", 3) == 3 / -math.log(value / 2**64)


def test_hrw_keeps_clients_and_moves_only_those_of_a_down_server() -> None:
    servers = [stub(f"http://10.0.0.{n}:80") for n in range(1, 5)]
    picker = HighestRandomWeight()
    clients = [f"192.168.{n // 250}.{n % 250}" for n in range(400)]
    before = {ip: picker.pick(servers, client(ip)).url for ip in clients}
    assert before == {ip: picker.pick(servers, client(ip)).url for ip in clients}
    assert len(set(before.values())) == 4
    gone = servers[1].url
    after = {ip: picker.pick([s for s in servers if s.url != gone], client(ip)).url
             for ip in clients}
    moved = {ip for ip in clients if before[ip] != after[ip]}
    assert moved == {ip for ip in clients if before[ip] == gone}


def test_leasttime_prefers_fast_servers_and_breaks_ties_by_deadline(start: Any) -> None:
    backends, engine = start
    fast, slow = backends("fast", "slow")
    slow.delay = 0.05
    servers = [slow.balanced(), fast.balanced()]
    picker = LeastTime(servers)
    url = engine(StrategyBalancer("lt@file", servers, picker))
    first = [get(url)[2] for _ in range(2)]
    assert sorted(first) == ["fast", "slow"]  # no samples: both score 0, by deadline
    assert picker.average(servers[0]) >= 50
    assert {get(url)[2] for _ in range(10)} == {"fast"}


def test_balancer_answers_503_when_nothing_is_up_and_p2c_keeps_zero_weights(
        start: Any) -> None:
    backends, engine = start
    one, two = backends("one", "two")
    servers = [one.balanced(weight=0), two.balanced()]
    p2c = StrategyBalancer("p@file", servers, picker_for("p2c", servers))
    hrw = StrategyBalancer("h@file", servers, picker_for("hrw", servers))
    assert len(p2c.servers) == 2 and len(hrw.servers) == 1
    url = engine(hrw)
    assert get(url)[2] == "two"
    servers[1].up = False
    assert get(url)[:3:2] == (503, "no available server\n")
    with pytest.raises(ValueError, match='unsupported load-balancer strategy "rr"'):
        picker_for("rr", servers)


def test_wrr_strategy_with_sticky_cookie_by_server_url(start: Any) -> None:
    backends, engine = start
    one, two = backends("one", "two")
    servers = [one.balanced(), two.balanced()]
    url = engine(StrategyBalancer("w@file", servers, picker_for("wrr", servers),
                                  sticky=StickyCookie("srv", secure=True)))
    _, headers, body = get(url)
    chosen = {"one": one, "two": two}[body]
    assert headers["Set-Cookie"] == f"srv={cookie_value(chosen.url)}; Path=/; Secure"
    cookie = {"Cookie": f"srv={cookie_value(chosen.url)}"}
    assert {get(url, cookie)[2] for _ in range(5)} == {body}
