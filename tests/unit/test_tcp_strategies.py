"""TCP balancing strategies over servers: weights, leastConn, p2c, hrw, retries' exclusions."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchyard.services import DEFAULT_TRANSPORT, LoadBalancer, Server
from switchyard.services.loadbalancer import PassiveSettings
from switchyard.services.strategies import (
    HighestRandomWeight,
    PowerOfTwoChoices,
    strategy_name,
)


def servers(*weights: int) -> list[Server]:
    return [Server(f"127.0.0.1:{9000 + i}", "127.0.0.1", 9000 + i, weight=w)
            for i, w in enumerate(weights)]


def names(balancer: LoadBalancer, count: int, client_ip: str = "10.0.0.1") -> list[str]:
    found = []
    for _ in range(count):
        picked = balancer.pick(client_ip)
        assert picked is not None
        found.append(picked[0].address[-1])
    return found


def test_weights_interleave_as_traefiks_round_robin() -> None:
    balancer = LoadBalancer("s", servers(3, 1), DEFAULT_TRANSPORT)
    assert names(balancer, 8) == list("00010001")


def test_weight_zero_is_never_picked_and_all_zero_is_no_server() -> None:
    balancer = LoadBalancer("s", servers(0, 2), DEFAULT_TRANSPORT)
    assert set(names(balancer, 6)) == {"1"}
    assert LoadBalancer("s", servers(0, 0), DEFAULT_TRANSPORT).pick() is None
    assert not LoadBalancer("s", servers(0, 0), DEFAULT_TRANSPORT).up


def test_least_conn_takes_the_emptiest_and_breaks_ties_by_round_robin() -> None:
    pool = servers(1, 1, 1)
    balancer = LoadBalancer("s", pool, DEFAULT_TRANSPORT, strategy="leastConn")
    pool[0].open, pool[1].open, pool[2].open = 4, 1, 1
    assert names(balancer, 4) == list("1212")
    pool[2].open = 0
    assert names(balancer, 2) == list("22")


def test_p2c_takes_the_less_busy_of_two_and_ignores_weights() -> None:
    pool = servers(0, 1)
    pool[1].open = 3
    picker = PowerOfTwoChoices(pool, random.Random(7))
    assert {picker.pick("", ()).address for _ in range(20)} == {pool[0].address}  # type: ignore[union-attr]


def test_p2c_peek_leaves_the_random_state_alone() -> None:
    pool = servers(1, 1, 1, 1)
    balancer = LoadBalancer("s", pool, DEFAULT_TRANSPORT, strategy="p2c")
    for _ in range(30):
        looked = balancer.peek("10.0.0.1")
        assert balancer.pick("10.0.0.1") == looked


def clients(count: int) -> list[str]:
    return [f"10.{i // 250}.{i % 250}.{i % 7 + 1}" for i in range(count)]


def test_hrw_keeps_clients_and_moves_only_those_of_a_server_that_goes() -> None:
    pool = servers(1, 1, 1, 1)
    first = {ip: HighestRandomWeight(pool).pick(ip, ()) for ip in clients(400)}
    again = {ip: HighestRandomWeight(servers(1, 1, 1, 1)).pick(ip, ()) for ip in clients(400)}
    assert {ip: s.address for ip, s in first.items() if s} == {
        ip: s.address for ip, s in again.items() if s}  # a rebuild hashes alike
    share = Counter(s.address for s in first.values() if s)
    assert min(share.values()) > 400 / 4 * 0.6
    pool[2].up = False  # DOWN: only its clients move
    after = {ip: HighestRandomWeight(pool).pick(ip, ()) for ip in clients(400)}
    moved = [ip for ip in first if first[ip] is not after[ip]]
    assert moved and all(first[ip] is pool[2] for ip in moved)


def test_hrw_is_the_score_the_http_side_computes() -> None:
    from switchyard.http.strategies import hrw_score as http_score
    from switchyard.services.strategies import hrw_score

    assert hrw_score is http_score


@given(strategy=st.sampled_from(["wrr", "p2c", "hrw", "leastConn"]),
       weights=st.lists(st.sampled_from([0, 1, 3]), min_size=1, max_size=5),
       tried=st.sets(st.integers(0, 4)))
def test_no_strategy_picks_an_excluded_down_or_weightless_server(
        strategy: str, weights: list[int], tried: set[int]) -> None:
    pool = servers(*weights)
    pool[0].up = False
    exclude = [pool[i] for i in tried if i < len(pool)]
    balancer = LoadBalancer("s", pool, DEFAULT_TRANSPORT, strategy=strategy)
    picked = balancer.pick("10.0.0.1", exclude)
    possible = [s for s in pool if s.up and s not in exclude
                and (s.weight > 0 or strategy == "p2c")]
    if not possible:
        assert picked is None
    else:
        assert picked is not None and picked[0] in possible


def test_strategy_names_take_any_case_and_refuse_others() -> None:
    assert strategy_name("") == "wrr"
    assert strategy_name("LEASTCONN") == "leastConn"
    with pytest.raises(ValueError, match="unknown strategy"):
        strategy_name("roundrobin")


def test_passive_failures_take_a_server_out_for_the_window_then_back() -> None:
    async def run() -> list[bool]:
        pool = servers(1, 1)
        LoadBalancer("s", pool, DEFAULT_TRANSPORT,
                     passive=PassiveSettings(failure_window=0.1, max_failed_attempts=2))
        states = []
        pool[0].outcome(failed=True)
        states.append(pool[0].up)  # one failure of two: still in
        pool[0].outcome(failed=False)
        pool[0].outcome(failed=True)
        states.append(pool[0].up)  # a success cleared the first
        pool[0].outcome(failed=True)
        states.append(pool[0].up)  # two within the window: out
        await asyncio.sleep(0.15)
        states.append(pool[0].up)  # back after the window
        return states

    assert asyncio.run(run()) == [True, True, False, True]
