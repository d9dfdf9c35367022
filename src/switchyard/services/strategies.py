"""Balancing strategies of a TCP loadBalancer (``strategy``), and the arithmetic HTTP shares.

``hrw_score`` and ``two_choices`` carry no protocol: the HTTP strategies use them too, so a
client hashes to the same server name and p2c draws the same way on both sides.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from math import log
from typing import Protocol

from switchyard.config.dynamic import TCP_STRATEGIES as STRATEGIES
from switchyard.services.wrr import WeightedRoundRobin

__all__ = [
    "STRATEGIES",
    "Balanced",
    "HighestRandomWeight",
    "LeastConnections",
    "PowerOfTwoChoices",
    "RoundRobin",
    "Strategy",
    "hrw_score",
    "strategy_for",
    "strategy_name",
    "two_choices",
]

_FNV64A_OFFSET = 0xCBF29CE484222325
_FNV64_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1

def hrw_score(key: str, name: str, weight: int) -> float:
    """Traefik's rendezvous score of a server for a client: FNV-1a of key+name mapped to
    (0, 1), then ``weight / -ln(score)``."""
    value = _FNV64A_OFFSET
    for byte in (key + name).encode():
        value = ((value ^ byte) * _FNV64_PRIME) & _MASK64
    score = float(value) / 2.0**64
    if score <= 0.0:
        return 0.0
    if score >= 1.0:  # Go divides by -0 here: minus infinity, never chosen
        return float("-inf")
    return weight / -log(score)


def two_choices(rng: random.Random, count: int) -> tuple[int, int]:
    """Two different indices below ``count`` (at least 2), drawn as Traefik's p2c draws them."""
    first, second = rng.randrange(count), rng.randrange(count)
    if second == first:
        second = (second + 1) % count
    return first, second


class Balanced(Protocol):
    """A server as a strategy sees it: health, weight, address and open connections."""

    @property
    def up(self) -> bool: ...
    @property
    def weight(self) -> int: ...
    @property
    def address(self) -> str: ...
    @property
    def open(self) -> int: ...


class Strategy(Protocol):
    """Picks a server for a client; ``exclude`` holds servers already tried (retries).

    ``peek`` answers what ``pick`` would, leaving every rotation and random state as it is
    (``explain`` and the data plane must agree).
    """

    name: str

    def pick(self, client_ip: str, exclude: Collection[Balanced]) -> Balanced | None: ...
    def peek(self, client_ip: str, exclude: Collection[Balanced]) -> Balanced | None: ...


def _outside(exclude: Collection[Balanced]) -> Callable[[Balanced], bool] | None:
    return None if not exclude else (lambda server: server not in exclude)


class RoundRobin:
    """``wrr``: Traefik's interleaved weighted round robin, as its weighted TCP service runs."""

    __slots__ = ("_wrr",)
    name = "wrr"

    def __init__(self, servers: Sequence[Balanced]) -> None:
        self._wrr: WeightedRoundRobin[Balanced] = WeightedRoundRobin(
            [(server, server.weight) for server in servers])

    def pick(self, client_ip: str, exclude: Collection[Balanced]) -> Balanced | None:
        # Nothing to exclude but on a retry: the default strategy's first pick skips the hop.
        return self._wrr.pick(_outside(exclude) if exclude else None)

    def peek(self, client_ip: str, exclude: Collection[Balanced]) -> Balanced | None:
        return self._wrr.peek(_outside(exclude))


class LeastConnections:
    """``leastConn``: the UP server with the fewest open connections; ties go by ``wrr``.

    Weight 0 takes a server out, as in ``wrr``; other weights only order the ties.
    """

    __slots__ = ("_servers", "_wrr")
    name = "leastConn"

    def __init__(self, servers: Sequence[Balanced]) -> None:
        self._servers = [server for server in servers if server.weight > 0]
        self._wrr: WeightedRoundRobin[Balanced] = WeightedRoundRobin(
            [(server, server.weight) for server in servers])

    def _fewest(self, exclude: Collection[Balanced]) -> Callable[[Balanced], bool] | None:
        counts = [s.open for s in self._servers if s.up and s not in exclude]
        if not counts:
            return None
        fewest = min(counts)
        return lambda server: server.open == fewest and server not in exclude

    def pick(self, client_ip: str, exclude: Collection[Balanced]) -> Balanced | None:
        accept = self._fewest(exclude)
        return None if accept is None else self._wrr.pick(accept)

    def peek(self, client_ip: str, exclude: Collection[Balanced]) -> Balanced | None:
        accept = self._fewest(exclude)
        return None if accept is None else self._wrr.peek(accept)


class PowerOfTwoChoices:
    """``p2c``: two different UP servers at random, the one with fewer open connections (the
    first drawn on a tie). Weights play no part, as in Traefik's HTTP p2c."""

    __slots__ = ("_rng", "_servers")
    name = "p2c"

    def __init__(self, servers: Sequence[Balanced], rng: random.Random | None = None) -> None:
        self._servers = list(servers)
        self._rng = rng or random.Random()

    def pick(self, client_ip: str, exclude: Collection[Balanced]) -> Balanced | None:
        candidates = [s for s in self._servers if s.up and s not in exclude]
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        first, second = two_choices(self._rng, len(candidates))
        one, two = candidates[first], candidates[second]
        return two if two.open < one.open else one

    def peek(self, client_ip: str, exclude: Collection[Balanced]) -> Balanced | None:
        state = self._rng.getstate()
        try:
            return self.pick(client_ip, exclude)
        finally:
            self._rng.setstate(state)


class HighestRandomWeight:
    """``hrw``: the UP server scoring highest for the client IP (rendezvous hashing on the
    server's address), so a server that goes DOWN or away moves only its own clients."""

    __slots__ = ("_servers",)
    name = "hrw"

    def __init__(self, servers: Sequence[Balanced]) -> None:
        self._servers = [server for server in servers if server.weight > 0]

    def pick(self, client_ip: str, exclude: Collection[Balanced]) -> Balanced | None:
        best: Balanced | None = None
        best_score = 0.0
        for server in self._servers:
            if not server.up or server in exclude:
                continue
            if best is None:
                best = server  # as the HTTP side: the first one unless another scores above 0
            score = hrw_score(client_ip, server.address, server.weight)
            if score > best_score:
                best, best_score = server, score
        return best

    peek = pick


def strategy_name(value: str) -> str:
    """The documented spelling of a ``loadBalancer.strategy`` value ("" is wrr); ValueError
    for values no strategy has."""
    for name in STRATEGIES:
        if name.lower() == (value.lower() or "wrr"):
            return name
    raise ValueError(f'unknown strategy "{value}": use one of {", ".join(STRATEGIES)}')


_BY_NAME: dict[str, Callable[[Sequence[Balanced]], Strategy]] = {
    "wrr": RoundRobin, "leastConn": LeastConnections, "p2c": PowerOfTwoChoices,
    "hrw": HighestRandomWeight}


def strategy_for(value: str, servers: Sequence[Balanced]) -> Strategy:
    """The strategy for a ``loadBalancer.strategy`` value over ``servers``."""
    return _BY_NAME[strategy_name(value)](servers)
