"""Pure Python against the mypyc build: µs to parse a ClientHello, and to parse and route one.

Each tree is measured in a child process of its own, so the two never share a module: the
pure side is this checkout's ``src/`` copied without any compiled module, the compiled side
the tree ``make compiled-tree`` leaves in build/compiled, or ``src/`` itself after ``make
compiled`` (pass ``--compiled src``). No sockets: a real ClientHello from Python's ssl goes
through the calls the data plane makes (``Preamble.feed``, then ``decide``), on an entry
point with 1,000 passthrough `HostSNI` routers, 10 `HostSNIRegexp` and 10 `ClientIP`
routers, and an `ipAllowList` on every router.

    make compiled-tree && python bench/compiled.py   # both trees, a table of µs per call
    python bench/compiled.py --compiled src          # after `make compiled`
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ROUTERS = 1_000
# Many short rounds, best kept: on a loaded machine some rounds run without being preempted.
CALLS = 2_000
ROUNDS = 40
REPS = 3  # child processes per tree, alternated
CLIENT = ("192.0.2.10", 40000)
SNI = "host-421.example.com"

CASES = {
    "hello": "parse a ClientHello (read_client_hello)",
    "preamble": "the preamble: ClientHello to routing metadata (Preamble.feed)",
    "route": "route its metadata (decide: table, allow list, server pick)",
    "parse_route": "parse and route one (Preamble.feed + decide)",
    "proxy_v1": "read a PROXY v1 header",
    "proxy_v2": "read a PROXY v2 header",
    "rule": "parse a rule, as a reload does per router (parse_rule)",
}
RULE = "HostSNI(`a.example.com`) || (HostSNIRegexp(`^b-[0-9]+\\.example\\.com$`) && ALPN(`h2`))"


def client_hello(server_name: str) -> bytes:
    """The first flight Python's ssl (OpenSSL) sends: TLS 1.3, SNI, ALPN h2 and http/1.1."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2", "http/1.1"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def dynamic_config() -> dict[str, Any]:
    tls = {"passthrough": True}
    common = {"service": "backend", "tls": tls, "middlewares": ["office"]}
    routers: dict[str, Any] = {
        f"host-{i}": {"rule": f"HostSNI(`host-{i}.example.com`)", **common} for i in range(ROUTERS)
    }
    for i in range(10):
        routers[f"tenant-{i}"] = {"rule": f"HostSNIRegexp(`^tenant-{i}\\.example\\.org$`)",
                                  **common}
        routers[f"office-{i}"] = {"rule": f"ClientIP(`10.{i}.0.0/16`)", **common}
    return {"tcp": {
        "routers": routers,
        "middlewares": {"office": {"ipAllowList": {"sourceRange": ["192.0.2.0/24", "10.0.0.0/8"]}}},
        "services": {"backend": {"loadBalancer": {"servers": [{"address": "127.0.0.1:9"},
                                                              {"address": "127.0.0.1:10"}]}}},
    }}


def best_us(call: Callable[[], object]) -> float:
    """Best of ROUNDS passes of CALLS calls: the one least disturbed by other work."""
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter_ns()
        for _ in range(CALLS):
            call()
        best = min(best, (time.perf_counter_ns() - start) / CALLS)
    return best / 1000


def measure() -> dict[str, Any]:
    """In the child: every case on the tree first on sys.path."""
    import switchyard
    from switchyard.build import build_runtime
    from switchyard.compiled import compiled_modules
    from switchyard.config.loader import load_dynamic_from_dict, static_from_dict
    from switchyard.proxy.decision import Action, decide
    from switchyard.proxy.preamble import Peeked, Preamble
    from switchyard.proxy.proxyproto import build_v1, build_v2, read_proxy_header
    from switchyard.rules import parse_rule
    from switchyard.tls.clienthello import read_client_hello

    static, _ = static_from_dict({"entryPoints": {"websecure": {"address": ":8443"}}}, "bench")
    dynamic, issues = load_dynamic_from_dict(dynamic_config(), "file")
    runtime = build_runtime(static, {"file": dynamic}, issues)
    if runtime.problems():
        raise SystemExit("the benchmark config has problems:\n" + "\n".join(runtime.problems()))
    table = runtime.tables["websecure"]
    hello = client_hello(SNI)

    def peek() -> Peeked:
        event = Preamble(CLIENT).feed(hello)
        assert isinstance(event, Peeked)
        return event

    meta = peek().meta

    def parse_route() -> object:
        return decide(table, Preamble(CLIENT).feed(hello).meta)  # type: ignore[union-attr]

    # A benchmark of wrong answers is worthless: check the route once.
    decision = decide(table, meta)
    if decision.action is not Action.FORWARD or decision.route is None or (
            decision.route.name != "host-421@file"):
        raise SystemExit(f"routed wrongly: {decision}")
    v1 = build_v1(("203.0.113.7", 51234), ("192.0.2.1", 443))
    v2 = build_v2(("2001:db8::7", 51234), ("2001:db8::1", 443))
    calls: dict[str, Callable[[], object]] = {
        "hello": lambda: read_client_hello(hello),
        "preamble": peek,
        "route": lambda: decide(table, meta),
        "parse_route": parse_route,
        "proxy_v1": lambda: read_proxy_header(v1),
        "proxy_v2": lambda: read_proxy_header(v2),
        "rule": lambda: parse_rule(RULE),
    }
    return {"tree": str(Path(switchyard.__file__).parents[1]), "hello_bytes": len(hello),
            "compiled": compiled_modules(),
            "us": {name: best_us(call) for name, call in calls.items()}}


def has_compiled(tree: Path) -> bool:
    return any(tree.joinpath("switchyard").rglob("*.so"))


def run_child(tree: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, __file__, "--measure"], env=env, check=True,
                         capture_output=True, text=True, cwd=tree).stdout
    result: dict[str, Any] = json.loads(out)
    if Path(result["tree"]).resolve() != tree.resolve():
        raise SystemExit(f"the child imported switchyard from {result['tree']}, not {tree}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--compiled", type=Path, default=ROOT / "build" / "compiled",
                        help="a tree holding the compiled modules [default: build/compiled]")
    parser.add_argument("--reps", type=int, default=REPS,
                        help=f"child processes per tree [default: {REPS}]")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure()))
        return
    if not has_compiled(args.compiled):
        raise SystemExit(f"no compiled modules under {args.compiled}: build them with "
                         "`make compiled-tree` (or `make compiled`, then --compiled src)")
    runs: dict[str, list[dict[str, Any]]] = {"pure": [], "compiled": []}
    with tempfile.TemporaryDirectory() as scratch:
        pure_tree = Path(scratch)
        shutil.copytree(ROOT / "src" / "switchyard", pure_tree / "switchyard",
                        ignore=shutil.ignore_patterns("*.so", "__pycache__"))
        for _ in range(args.reps):  # alternated, so that a change in load hits both trees
            runs["pure"].append(run_child(pure_tree))
            runs["compiled"].append(run_child(args.compiled))
    pure, compiled = runs["pure"][0], runs["compiled"][0]
    print(f"ClientHello of {pure['hello_bytes']} bytes; {ROUTERS} + 20 TLS routers; "
          f"best of {args.reps} x {ROUNDS} x {CALLS:,} calls per tree, alternated; "
          f"Python {sys.version.split()[0]}")
    print(f"compiled modules: {', '.join(compiled['compiled'])}\n")
    print("| µs per call | pure Python | mypyc | speed-up |")
    print("|---|---|---|---|")
    for name, what in CASES.items():
        slow = min(run["us"][name] for run in runs["pure"])
        fast = min(run["us"][name] for run in runs["compiled"])
        print(f"| {what} | {slow:.2f} | {fast:.2f} | {slow / fast:.1f}x |")


if __name__ == "__main__":
    main()
