"""Live traffic counters the data plane bumps per connection and exporters read."""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from dataclasses import dataclass, field

from switchyard.observability.record import ConnectionRecord

# Connection duration buckets in seconds: short TCP exchanges to long-lived streams.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0, 900.0, 3600.0)


@dataclass(slots=True)
class Traffic:
    """Counters for one entry point, router, service or server."""

    open: int = 0
    total: int = 0
    bytes_in: int = 0  # client -> backend
    bytes_out: int = 0  # backend -> client
    duration_sum: float = 0.0
    duration_counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))

    def finished(self, duration: float, bytes_in: int, bytes_out: int) -> None:
        self.open -= 1
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out
        self.duration_sum += duration
        self.duration_counts[bisect.bisect_left(DURATION_BUCKETS, duration)] += 1


class TrafficStats:
    """Per entry point, router, service and server counters; rejections and close reasons."""

    def __init__(self) -> None:
        self.entrypoints: defaultdict[str, Traffic] = defaultdict(Traffic)
        self.routers: defaultdict[str, Traffic] = defaultdict(Traffic)
        self.services: defaultdict[str, Traffic] = defaultdict(Traffic)
        self.servers: defaultdict[tuple[str, str], Traffic] = defaultdict(Traffic)
        # (entry point, router, middleware) -> refused connections
        self.rejections: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        # (entry point, close kind) -> connections
        self.closes: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.spliced = 0  # connections relayed with os.splice

    def accepted(self, entrypoint: str) -> None:
        traffic = self.entrypoints[entrypoint]
        traffic.open += 1
        traffic.total += 1

    def routed(self, router: str, service: str, server: str) -> None:
        for traffic in (self.routers[router], self.services[service],
                        self.servers[(service, server)]):
            traffic.open += 1
            traffic.total += 1

    def moved(self, service: str, old: str, new: str) -> None:
        """A retried dial: the connection is open on server `new` instead of `old`."""
        self.servers[(service, old)].open -= 1
        traffic = self.servers[(service, new)]
        traffic.open += 1
        traffic.total += 1

    def finished(self, record: ConnectionRecord) -> None:
        """A connection ended: its bytes and duration go to every level it reached."""
        # Called for every connection: the record's helpers are inlined (no enum `.value`
        # property, no `routed` property), which is measurable per connection.
        duration = time.monotonic() - record.started
        bytes_in, bytes_out = record.bytes_in, record.bytes_out
        self.entrypoints[record.entrypoint].finished(duration, bytes_in, bytes_out)
        reason = record.reason
        self.closes[(record.entrypoint, reason._value_ if reason is not None else "normal")] += 1
        if record.server:  # routed
            for traffic in (self.routers[record.router], self.services[record.service],
                            self.servers[(record.service, record.server)]):
                traffic.finished(duration, bytes_in, bytes_out)

    def rejected(self, entrypoint: str, router: str, middleware: str) -> None:
        self.rejections[(entrypoint, router, middleware)] += 1


STATS = TrafficStats()
