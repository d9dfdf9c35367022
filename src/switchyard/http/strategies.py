"""Load-balancing strategies of an HTTP loadBalancer (``strategy``) and the balancer using them."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from switchyard.http.responder import http_error
from switchyard.http.sticky import StickyCookie, StickyTargets
from switchyard.http.weighted import EarliestDeadline
from switchyard.services.strategies import hrw_score, two_choices

if TYPE_CHECKING:
    from switchyard.http.balancer import BalancedServer
    from switchyard.http.exchange import Exchange
    from switchyard.http.handler import ResponseWriter
    from switchyard.http.message import ResponseHead

__all__ = [
    "HighestRandomWeight",
    "LeastTime",
    "Picker",
    "PowerOfTwoChoices",
    "StrategyBalancer",
    "WeightedRoundRobin",
    "hrw_score",
    "picker_for",
]

class Picker(Protocol):
    """Chooses the server for one request among the candidates (UP, never empty)."""

    #: Whether servers with a weight of 0 or less are left out (all but p2c, as in Traefik).
    skips_zero_weight: bool

    def pick(self, candidates: Sequence[BalancedServer], exchange: Exchange) -> BalancedServer:
        ...


class WeightedRoundRobin:
    """``wrr`` as Traefik's HTTP balancer schedules it (earliest deadline first)."""

    skips_zero_weight = True

    def __init__(self, servers: Sequence[BalancedServer]) -> None:
        self._schedule = EarliestDeadline([(server, server.weight) for server in servers])

    def pick(self, candidates: Sequence[BalancedServer], exchange: Exchange) -> BalancedServer:
        picked = self._schedule.pick()
        return candidates[0] if picked is None else picked


class PowerOfTwoChoices:
    """``p2c``: two different servers at random, the one with fewer requests in flight
    (the first drawn on a tie). Weights play no part, as in Traefik."""

    skips_zero_weight = False

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, candidates: Sequence[BalancedServer], exchange: Exchange) -> BalancedServer:
        count = len(candidates)
        if count == 1:
            return candidates[0]
        first, second = two_choices(self._rng, count)
        one, two = candidates[first], candidates[second]
        return two if two.open_requests < one.open_requests else one


class HighestRandomWeight:
    """``hrw``: the server with the highest score for the client's IP (the connection's peer,
    not X-Forwarded-For, as Traefik takes it). A server going DOWN moves only its clients."""

    skips_zero_weight = True

    def pick(self, candidates: Sequence[BalancedServer], exchange: Exchange) -> BalancedServer:
        key = exchange.info.client_ip
        best, best_score = candidates[0], 0.0
        for server in candidates:
            score = hrw_score(key, server.url, server.weight)
            if score > best_score:
                best, best_score = server, score
        return best


class LeastTime:
    """``leasttime``: the lowest ``average time to first byte x (1 + in flight) / weight``.

    The average is over a server's last 100 response heads, in whole milliseconds, timed from
    the pick to the head reaching the client side; a server without samples scores 0. Equal
    scores go by earliest deadline first, as in Traefik.
    """

    skips_zero_weight = True
    SAMPLES = 100

    def __init__(self, servers: Sequence[BalancedServer]) -> None:
        self._times: dict[int, deque[int]] = {
            id(server): deque(maxlen=self.SAMPLES) for server in servers}
        self._deadlines: dict[int, float] = {}
        deadline = 0.0
        for server in servers:
            if server.weight > 0:
                # Staggered as Traefik adds them: each one 1/weight after the previous.
                deadline += 1 / server.weight
                self._deadlines[id(server)] = deadline

    def average(self, server: BalancedServer) -> float:
        samples = self._times[id(server)]
        return sum(samples) / len(samples) if samples else 0.0

    def pick(self, candidates: Sequence[BalancedServer], exchange: Exchange) -> BalancedServer:
        if len(candidates) == 1:
            chosen = candidates[0]
        else:
            best = float("inf")
            tied: list[BalancedServer] = []
            for server in candidates:
                score = self.average(server) * (1 + server.open_requests) / server.weight
                if score < best:
                    best, tied = score, [server]
                elif score == best:
                    tied.append(server)
            chosen = tied[0] if len(tied) == 1 else self._earliest(tied)
        exchange.writer = _FirstByteTimer(exchange.writer, self._times[id(chosen)])
        return chosen

    def _earliest(self, tied: Sequence[BalancedServer]) -> BalancedServer:
        chosen = min(tied, key=lambda server: self._deadlines[id(server)])
        self._deadlines[id(chosen)] += 1 / chosen.weight
        return chosen


class _FirstByteTimer:
    """ResponseWriter: records the time until the response head as one sample."""

    __slots__ = ("_next", "_samples", "_started")

    def __init__(self, next_writer: ResponseWriter, samples: deque[int]) -> None:
        self._next = next_writer
        self._samples = samples
        self._started = time.monotonic()

    def start(self, head: ResponseHead) -> None:
        self._samples.append(int((time.monotonic() - self._started) * 1000))
        self._next.start(head)

    def write(self, chunk: bytes) -> None:
        self._next.write(chunk)

    def end(self) -> None:
        self._next.end()

    def abort(self) -> None:
        self._next.abort()


def picker_for(strategy: str, servers: Sequence[BalancedServer]) -> Picker:
    """The picker for a ``loadBalancer.strategy`` value; ValueError for others."""
    name = strategy.lower() or "wrr"
    if name == "wrr":
        return WeightedRoundRobin(servers)
    if name == "p2c":
        return PowerOfTwoChoices()
    if name == "hrw":
        return HighestRandomWeight()
    if name == "leasttime":
        return LeastTime(servers)
    raise ValueError(f'unsupported load-balancer strategy "{strategy}"')


class StrategyBalancer:
    """Handler: the HTTP loadBalancer with a strategy and optional sticky cookie.

    As LoadBalancer: ``503 no available server`` when no candidate is UP. With ``sticky`` (all
    strategies but hrw in Traefik), a cookie naming an UP server (by URL) sends the request
    there; otherwise the picked server's cookie is set on the response.
    """

    __slots__ = ("_sticky", "name", "picker", "servers")

    def __init__(self, name: str, servers: Sequence[BalancedServer], picker: Picker, *,
                 sticky: StickyCookie | None = None) -> None:
        self.name = name
        self.picker = picker
        self.servers = [server for server in servers
                        if server.weight > 0 or not picker.skips_zero_weight]
        self._sticky = None if sticky is None else StickyTargets(
            sticky, [(server.url, server) for server in self.servers])

    @property
    def up(self) -> bool:
        return any(server.up for server in self.servers)

    def handle(self, exchange: Exchange) -> None:
        exchange.service = self.name
        sticky = self._sticky
        if sticky is not None:
            server, rewrite = sticky.lookup(exchange.request.headers)
            if server is not None and server.up:
                if rewrite:
                    sticky.stick(exchange, server)
                server.proxy.handle(exchange)
                return
        candidates = [server for server in self.servers if server.up]
        if not candidates:
            http_error(exchange, 503, "no available server")
            return
        picked = self.picker.pick(candidates, exchange)
        if sticky is not None:
            sticky.stick(exchange, picked)
        picked.proxy.handle(exchange)

    def close(self) -> None:
        """Drop the idle backend connections (the service left the configuration)."""
        for server in self.servers:
            server.proxy.close()
