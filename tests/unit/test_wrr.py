"""Weighted round robin: Traefik's interleaving, without its infinite loops."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from switchyard.services.wrr import WeightedRoundRobin


@dataclass(eq=False)
class Node:
    name: str
    up: bool = True


def picks(wrr: WeightedRoundRobin[Node], count: int) -> list[str | None]:
    return [(n.name if (n := wrr.pick()) else None) for _ in range(count)]


def test_interleaving_matches_traefiks_documented_sequence() -> None:
    a, b, c = Node("a"), Node("b"), Node("c")
    wrr = WeightedRoundRobin([(a, 5), (b, 3), (c, 2)])
    assert picks(wrr, 20) == list("aaababcabc") * 2


def test_weight_zero_is_never_picked() -> None:
    wrr = WeightedRoundRobin([(Node("a"), 0), (Node("b"), 1)])
    assert set(picks(wrr, 10)) == {"b"}


def test_all_zero_weights_pick_nothing() -> None:
    assert WeightedRoundRobin([(Node("a"), 0), (Node("b"), 0)]).pick() is None


def test_negative_weights_count_as_zero_instead_of_hanging() -> None:
    assert WeightedRoundRobin([(Node("a"), -1), (Node("b"), -5)]).pick() is None
    assert set(picks(WeightedRoundRobin([(Node("a"), -1), (Node("b"), 2)]), 6)) == {"b"}


def test_only_weight_zero_up_while_positive_is_down_returns_none_instead_of_hanging() -> None:
    wrr = WeightedRoundRobin([(Node("zero"), 0), (Node("down", up=False), 3)])
    assert wrr.pick() is None


def test_down_targets_are_skipped_and_come_back() -> None:
    a, b = Node("a"), Node("b")
    wrr = WeightedRoundRobin([(a, 1), (b, 1)])
    b.up = False
    assert set(picks(wrr, 4)) == {"a"}
    b.up = True
    assert set(picks(wrr, 4)) == {"a", "b"}


def test_no_targets_pick_nothing() -> None:
    assert WeightedRoundRobin([]).pick() is None


@given(st.lists(st.tuples(st.integers(-3, 12), st.booleans()), min_size=1, max_size=8))
def test_a_full_cycle_splits_exactly_by_weight_among_up_targets(
        spec: list[tuple[int, bool]]) -> None:
    nodes = [Node(str(i), up) for i, (_, up) in enumerate(spec)]
    wrr = WeightedRoundRobin([(n, w) for n, (w, _) in zip(nodes, spec, strict=True)])
    eligible = {n.name: w for n, (w, up) in zip(nodes, spec, strict=True) if up and w > 0}
    if not eligible:
        assert wrr.pick() is None
        return
    cycle = sum(eligible.values())
    counts = Counter(picks(wrr, cycle * 3))
    assert counts == Counter({name: w * 3 for name, w in eligible.items()})
