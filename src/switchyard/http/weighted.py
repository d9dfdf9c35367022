"""The HTTP ``weighted`` service: weighted round robin over child services, optionally sticky."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from switchyard.http.responder import http_error
from switchyard.http.sticky import StickyCookie, StickyTargets

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

__all__ = ["Child", "EarliestDeadline", "WeightedService"]


class Child(Protocol):
    """A service a weighted service splits over: any Handler that says whether it can serve."""

    @property
    def up(self) -> bool: ...

    def handle(self, exchange: Exchange) -> None: ...


class _Up(Protocol):
    @property
    def up(self) -> bool: ...


T = TypeVar("T", bound=_Up)


class EarliestDeadline(Generic[T]):
    """Traefik's HTTP weighted round robin: earliest deadline first, a deadline 1/weight apart.

    Targets with a weight of 0 or less are left out, as Traefik leaves them out. DOWN targets
    keep their place in the schedule (their deadline moves on when passed over), so a target
    coming back is not favoured. Equal deadlines go in the order targets were given.
    """

    __slots__ = ("_heap", "_seq", "targets")

    def __init__(self, targets: Sequence[tuple[T, int]]) -> None:
        self.targets = [target for target, weight in targets if weight > 0]
        # (deadline, order, weight, target): order breaks ties and keeps targets uncompared.
        self._heap: list[tuple[float, int, float, T]] = []
        for order, (target, weight) in enumerate((t, w) for t, w in targets if w > 0):
            self._heap.append((1 / weight, order, float(weight), target))
        heapq.heapify(self._heap)
        self._seq = len(self._heap)

    def has_candidate(self) -> bool:
        return any(target.up for target in self.targets)

    def pick(self) -> T | None:
        """The next UP target, or None when none is UP (Traefik answers 503 then too)."""
        if not self.has_candidate():
            return None
        heap = self._heap
        while True:
            deadline, _, weight, target = heap[0]
            self._seq += 1
            # A new order number after each pick keeps equal deadlines rotating fairly.
            heapq.heapreplace(heap, (deadline + 1 / weight, self._seq, weight, target))
            if target.up:
                return target


class WeightedService:
    """Handler: a child service by weight; ``503 no available server`` when no child is UP.

    A child that is DOWN (``up`` false) is skipped. With ``sticky``, a request whose cookie
    names an UP child goes to it; otherwise the picked child's cookie is set on the response.
    ``children`` are ``(name, handler, weight)``; the name is what the cookie value hashes
    (``services[].name`` as written in the configuration).
    """

    __slots__ = ("_schedule", "_sticky", "name")

    def __init__(self, name: str, children: Sequence[tuple[str, Child, int]], *,
                 sticky: StickyCookie | None = None) -> None:
        self.name = name
        self._schedule = EarliestDeadline([(child, weight) for _, child, weight in children])
        self._sticky = None if sticky is None else StickyTargets(
            sticky, [(child_name, child) for child_name, child, weight in children if weight > 0])

    @property
    def up(self) -> bool:
        return self._schedule.has_candidate()

    def handle(self, exchange: Exchange) -> None:
        sticky = self._sticky
        if sticky is not None:
            child, rewrite = sticky.lookup(exchange.request.headers)
            if child is not None and child.up:
                if rewrite:
                    sticky.stick(exchange, child)
                child.handle(exchange)
                return
        picked = self._schedule.pick()
        if picked is None:
            http_error(exchange, 503, "no available server")
            return
        if sticky is not None:
            sticky.stick(exchange, picked)
        picked.handle(exchange)
