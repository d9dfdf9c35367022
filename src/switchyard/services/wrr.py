"""Traefik's interleaved weighted round robin, without its infinite loops."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import gcd
from typing import Generic, Protocol, TypeVar


class Target(Protocol):
    """Anything a balancer can hand a connection to: a server or a child service."""

    @property
    def up(self) -> bool: ...


T = TypeVar("T", bound=Target)


class WeightedRoundRobin(Generic[T]):
    """The LVS interleaved WRR that Traefik uses, made total.

    Traefik's loop spins forever when no UP target can ever reach the current
    weight (all weights negative, or only weight-0 targets UP while a positive
    one is DOWN). Here negative weights count as 0 and a pick first checks that
    some UP target has a positive weight, so `pick` always returns.
    """

    __slots__ = ("_cw", "_gcd", "_index", "_max", "_targets", "_weights")

    def __init__(self, targets: Sequence[tuple[T, int]]) -> None:
        self._targets = [target for target, _ in targets]
        self._weights = [max(weight, 0) for _, weight in targets]
        # Max and gcd range over all targets, DOWN ones included, as in Traefik:
        # that keeps the interleaving sequence stable while health flips.
        self._max = max(self._weights, default=0)
        positive = [w for w in self._weights if w > 0]
        self._gcd = gcd(*positive) if positive else 0
        self._index = -1
        self._cw = 0

    @property
    def targets(self) -> list[T]:
        return list(self._targets)

    def has_candidate(self, accept: Callable[[T], bool] | None = None) -> bool:
        """True when some UP target has a positive weight (a pick can succeed).

        `accept`, when given, narrows the targets further (the same as in `pick`).
        """
        return any(w > 0 and t.up and (accept is None or accept(t))
                   for t, w in zip(self._targets, self._weights, strict=True))

    def pick(self, accept: Callable[[T], bool] | None = None) -> T | None:
        """The next target, or None when no UP target has a positive weight.

        With `accept`, targets it refuses are passed over as DOWN ones are: the
        rotation moves on past them (least-connections ties, retries elsewhere).
        """
        if self._max == 0:
            return None
        checked = False
        steps = 2 * len(self._targets)
        while True:
            found = self._step(steps, accept)
            if found is not None or checked:
                return found
            # Nothing in a couple of rounds: check once whether anything can be
            # picked at all (Traefik spins forever here), then keep stepping; a
            # full cycle is bounded and reaches every positive-weight target.
            if not self.has_candidate(accept):
                return None
            checked = True
            steps = len(self._targets) * (self._max // self._gcd)

    def peek(self, accept: Callable[[T], bool] | None = None) -> T | None:
        """What `pick` would return now, leaving the rotation where it is."""
        index, cw = self._index, self._cw
        try:
            return self.pick(accept)
        finally:
            self._index, self._cw = index, cw

    def _step(self, steps: int, accept: Callable[[T], bool] | None) -> T | None:
        n = len(self._targets)
        targets, weights = self._targets, self._weights
        for _ in range(steps):
            self._index = (self._index + 1) % n
            if self._index == 0:
                self._cw -= self._gcd
                if self._cw <= 0:
                    self._cw = self._max
            weight = weights[self._index]
            target = targets[self._index]
            if weight >= self._cw and target.up and (accept is None or accept(target)):
                return target
        return None
