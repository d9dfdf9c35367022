"""Python work per proxied HTTP/1.1 request, counted in bytecodes: a figure load does not blur.

One request at a time goes, in this process and without sockets, through the whole HTTP/1.1
path a keep-alive request takes: HTTPServerConnection (httptools, forwarded headers),
EntryRouter (a ``PathPrefix(`/`)`` router), the load balancer, ReverseProxy and a pooled
UpstreamConnection, whose backend answer (nginx's shape, 100 bytes) is fed back by hand. The
transports are stand-ins that drop what is written. With ``sys.settrace`` counting opcode and
call events, the figures are the same from run to run, so a change of a few per cent shows
where bench/http_cpu.py's CPU time per request cannot resolve it; opcodes are not time (C
calls cost more than a LOAD_FAST), so judge large changes with bench/http_cpu.py.

    python bench/http_opcodes.py             # opcodes and Python calls per request
    python bench/http_opcodes.py --detail 30 # ... and the functions that run the most
    python bench/http_opcodes.py --time      # µs per request in-process (noisy when loaded)
    python bench/http_opcodes.py --garbage   # objects per request left to the cycle collector
    python bench/http_opcodes.py --chain     # through the chain row's three middlewares
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from switchyard.config.http import validate_http_section
from switchyard.http.balancer import LoadBalancer
from switchyard.http.build import build_http
from switchyard.http.handler import ConnectionInfo
from switchyard.http.server import HTTPServerConnection, ServerSettings
from switchyard.http.upstream import UpstreamConnection

REQUEST = (b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
           b"User-Agent: h2load nghttp2/1.52.0\r\nAccept: */*\r\n\r\n")
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 02 Dec 2025 02:00:00 GMT\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Length: 100\r\n"
            b"Connection: keep-alive\r\n\r\n" + b"x" * 100)


class NullTransport:
    """Takes writes and drops them; counts them so the run can check responses went out."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


#: The middlewares of bench/configs/dynamic-chain.yml (issue #12's chain row).
CHAIN = {
    "bench-header": {"headers": {"customRequestHeaders": {"X-Bench": "chain"}}},
    "loopback-only": {"ipAllowList": {"sourceRange": ["127.0.0.1/32"]}},
    "never-limit": {"rateLimit": {"average": 1000000, "burst": 1000000}},
}


def request_path(chain: bool = False) -> Callable[[], None]:
    """A function that sends one request through and feeds its response back; with ``chain``
    the router has the chain row's three middlewares."""
    router_config: dict[str, Any] = {"entryPoints": ["web"], "rule": "PathPrefix(`/`)",
                                     "service": "s"}
    if chain:
        router_config["middlewares"] = list(CHAIN)
    section, errors = validate_http_section({
        "routers": {"r": router_config},
        "middlewares": CHAIN if chain else {},
        "services": {"s": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:9"}]}}}})
    if errors:
        raise RuntimeError(f"bad benchmark config: {errors}")
    built = build_http({"file": section}, ["web"], default_entrypoints=["web"],
                       tls_options=["default"])
    router = built.entry_routers["web"]
    balancer = next(iter(router.plain)).handler
    while not isinstance(balancer, LoadBalancer):  # down the middlewares to the service
        balancer = balancer.next  # type: ignore[attr-defined]
    pool = balancer.servers[0].proxy.pool
    upstream = UpstreamConnection(pool, asyncio.get_running_loop())
    upstream.connection_made(NullTransport())  # type: ignore[arg-type]
    pool.release(upstream)
    info = ConnectionInfo(entry_point="web", client_ip="127.0.0.1", client_port=40000,
                          local_ip="127.0.0.1", local_port=8080)
    client = HTTPServerConnection(router, info, ServerSettings())
    transport = NullTransport()
    client.connection_made(transport)  # type: ignore[arg-type]

    def one() -> None:
        client.data_received(REQUEST)
        upstream.data_received(RESPONSE)

    for _ in range(200):
        one()
    if transport.writes < 200:
        raise RuntimeError("the responses did not reach the client")
    return one


def count(one: Callable[[], None], requests: int, detail: int) -> None:
    opcodes = calls = 0
    per_function: collections.Counter[tuple[str, str]] = collections.Counter()

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal opcodes, calls
        frame.f_trace_opcodes = True
        if event == "opcode":
            opcodes += 1
            if detail:
                code = frame.f_code
                per_function[Path(code.co_filename).name, code.co_qualname] += 1
        elif event == "call":
            calls += 1
        return tracer

    sys.settrace(tracer)
    try:
        for _ in range(requests):
            one()
    finally:
        sys.settrace(None)
    print(f"{opcodes / requests:.0f} opcodes, {calls / requests:.1f} Python calls per request")
    for (filename, name), found in per_function.most_common(detail):
        print(f"{found / requests:8.1f}  {filename}:{name}")


def timed(one: Callable[[], None], requests: int) -> None:
    runs = []
    for _ in range(25):
        start = time.process_time()
        for _ in range(requests):
            one()
        runs.append((time.process_time() - start) / requests * 1e6)
    runs.sort()
    print(f"{runs[0]:.2f} µs per request (least of 25 runs; 5th {runs[4]:.2f})")


def garbage(one: Callable[[], None], requests: int) -> None:
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(requests):
            one()
        found = gc.collect()
        kinds = collections.Counter(type(thing).__qualname__ for thing in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    print(f"{found / requests:.1f} objects per request left to the cycle collector"
          + (f": {dict(kinds.most_common(8))}" if kinds else ""))


async def main(args: argparse.Namespace) -> None:
    one = request_path(args.chain)
    if args.time:
        timed(one, args.requests)
    elif args.garbage:
        garbage(one, args.requests)
    else:
        count(one, args.requests, args.detail)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--detail", type=int, default=0, metavar="N",
                        help="also list the N functions that run the most opcodes")
    parser.add_argument("--time", action="store_true", help="time requests instead")
    parser.add_argument("--garbage", action="store_true",
                        help="count what the cycle collector would have to free")
    parser.add_argument("--chain", action="store_true",
                        help="through headers, ipAllowList and rateLimit (the chain row)")
    import uvloop

    uvloop.run(main(parser.parse_args()))
