"""ipAllowList (and its deprecated alias ipWhiteList): admit listed client IPs only."""

from __future__ import annotations

from collections.abc import Sequence

from switchyard.ipcheck import IPChecker
from switchyard.middlewares.base import Admissible


class IPAllowList:
    """Refuses connections whose client IP is outside `sourceRange` (IPv4 and IPv4-mapped alike)."""

    __slots__ = ("_checker", "kind", "name", "source_range")

    def __init__(self, name: str, source_range: Sequence[str],
                 kind: str = "ipAllowList") -> None:
        if not source_range:
            raise ValueError("sourceRange is empty: list at least one IP or CIDR to allow")
        self.name = name
        self.kind = kind  # or the deprecated ipWhiteList, which behaves the same
        self.source_range = tuple(source_range)
        self._checker = IPChecker(source_range)

    def refusal(self, client_ip: str) -> str | None:
        if self._checker.contains(client_ip):
            return None
        return f"client IP {client_ip} is not in the allow list of {self.name}"

    def enter(self, conn: Admissible) -> None:
        pass
