"""retry and circuitBreaker over real sockets: what the client gets, what the backends saw."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import LoopThread
from tests.mwkit import serve
from tests.resiliencekit import ScriptedBackend, refused_port, scripted_backend


@pytest.fixture
def backend() -> Iterator[ScriptedBackend]:
    with scripted_backend() as found:
        yield found


def request(port: int, path: str, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def routers(middlewares: dict[str, str], servers: dict[str, list[str]]) -> str:
    """One router per middleware (``/<name>``, middleware ``mw-<name>``) and its service."""
    lines = ["http:", "  routers:"]
    for name in middlewares:
        lines.append(f"    {name}: {{rule: \"PathPrefix(`/{name}`)\", middlewares: [{name}], "
                     f"service: {name}}}".replace(f"[{name}]", f"[mw-{name}]"))
    lines.append("  middlewares:")
    lines += [f"    mw-{name}: {spec}" for name, spec in middlewares.items()]
    lines.append("  services:")
    for name, urls in servers.items():
        listed = ", ".join(f"{{url: \"{url}\"}}" for url in urls)
        lines.append(f"    {name}: {{loadBalancer: {{servers: [{listed}]}}}}")
    return "\n".join(lines) + "\n"


# -- retry ---------------------------------------------------------------------------------------

def test_retry_goes_on_to_the_server_that_answers(loop_thread: LoopThread, tmp_path: Path,
                                                   backend: ScriptedBackend) -> None:
    dead = f"http://127.0.0.1:{refused_port()}"
    dynamic = routers({"two": "{retry: {attempts: 2}}", "one": "{retry: {attempts: 1}}"},
                      {"two": [dead, backend.url], "one": [dead, backend.url]})
    with serve(loop_thread, tmp_path, dynamic) as ports:
        for _ in range(4):  # whichever server the balancer tries first
            status, _, body = request(ports["web"], "/two/x")
            assert status == 200, body
        assert backend.count == 4
        statuses = sorted(request(ports["web"], "/one/x")[0] for _ in range(4))
        assert statuses == [200, 200, 502, 502]  # one attempt: the dead server's turns fail


def test_retry_of_a_refused_request_sends_its_body_once_to_the_server_that_answers(
        loop_thread: LoopThread, tmp_path: Path, backend: ScriptedBackend) -> None:
    dead = f"http://127.0.0.1:{refused_port()}"
    dynamic = routers({"post": "{retry: {attempts: 2}}"}, {"post": [dead, backend.url]})
    with serve(loop_thread, tmp_path, dynamic) as ports:
        for index in range(2):
            status, _, body = request(ports["web"], "/post", "POST", b"payload-%d" % index)
            assert status == 200, body
    assert [seen.body for seen in backend.seen] == [b"payload-0", b"payload-1"]


def test_only_refused_servers_answer_bad_gateway_after_every_attempt(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{refused_port()}"
    dynamic = routers({"dead": "{retry: {attempts: 3}}"}, {"dead": [dead]})
    with serve(loop_thread, tmp_path, dynamic) as ports:
        status, _, body = request(ports["web"], "/dead")
    assert (status, body) == (502, b"Bad Gateway")


def test_status_retry_counts_attempts_at_the_backend(loop_thread: LoopThread, tmp_path: Path,
                                                     backend: ScriptedBackend) -> None:
    dynamic = routers({"st": '{retry: {attempts: 3, status: ["500-599"]}}'},
                      {"st": [backend.url]})
    with serve(loop_thread, tmp_path, dynamic) as ports:
        backend.reset([503, 502, 200])
        status, _, body = request(ports["web"], "/st")
        assert (status, backend.count) == (200, 3)
        assert body == b"status 200 for GET /st body 0"
        backend.reset([503])
        status, _, body = request(ports["web"], "/st")
        assert (status, backend.count) == (503, 3)  # the last attempt's answer goes through
        assert body == b"status 503 for GET /st body 0"
        backend.reset([404, 200])
        assert request(ports["web"], "/st")[0] == 404  # not a listed status
        assert backend.count == 1


def test_status_retry_leaves_posts_alone_unless_asked_and_replays_their_body(
        loop_thread: LoopThread, tmp_path: Path, backend: ScriptedBackend) -> None:
    dynamic = routers({
        "plain": '{retry: {attempts: 3, status: ["503"]}}',
        "posts": '{retry: {attempts: 3, status: ["503"], retryNonIdempotentMethod: true}}',
    }, {"plain": [backend.url], "posts": [backend.url]})
    with serve(loop_thread, tmp_path, dynamic) as ports:
        backend.reset([503, 200])
        assert request(ports["web"], "/plain", "POST", b"abc")[0] == 503
        assert backend.count == 1
        backend.reset([503, 503, 200])
        assert request(ports["web"], "/plain", "PUT", b"abc")[0] == 200
        assert [seen.body for seen in backend.seen] == [b"abc"] * 3
        backend.reset([503, 200])
        status = request(ports["web"], "/posts", "POST", b"x" * 100_000)[0]
        assert status == 200
        assert [len(seen.body) for seen in backend.seen] == [100_000, 100_000]


def test_a_body_over_max_request_body_bytes_turns_the_status_retry_off(
        loop_thread: LoopThread, tmp_path: Path, backend: ScriptedBackend) -> None:
    dynamic = routers({"small": '{retry: {attempts: 3, status: ["503"], '
                                'maxRequestBodyBytes: 10}}'}, {"small": [backend.url]})
    with serve(loop_thread, tmp_path, dynamic) as ports:
        backend.reset([503, 200])
        status, _, _ = request(ports["web"], "/small", "PUT", b"y" * 70_000)
        assert status == 503
        assert [len(seen.body) for seen in backend.seen] == [70_000]
        backend.reset([503, 200])
        assert request(ports["web"], "/small", "PUT", b"tiny")[0] == 200
        assert backend.count == 2


def test_no_retry_once_the_request_reached_a_server(loop_thread: LoopThread,
                                                    tmp_path: Path) -> None:
    with scripted_backend(mode="cut") as cut, scripted_backend(mode="close") as silent:
        dynamic = routers({"cut": "{retry: {attempts: 3}}", "silent": "{retry: {attempts: 3}}"},
                          {"cut": [cut.url], "silent": [silent.url]})
        with serve(loop_thread, tmp_path, dynamic) as ports:
            conn = http.client.HTTPConnection("127.0.0.1", ports["web"], timeout=10)
            conn.request("GET", "/cut")
            response = conn.getresponse()
            assert response.status == 200  # the response had started: it is cut, not retried
            with pytest.raises(http.client.IncompleteRead):
                response.read()
            conn.close()
            assert request(ports["web"], "/silent")[0] == 502
        assert (cut.count, silent.count) == (1, 1)


def test_initial_interval_spaces_the_attempts(loop_thread: LoopThread, tmp_path: Path,
                                              backend: ScriptedBackend) -> None:
    dynamic = routers({"slow": '{retry: {attempts: 3, initialInterval: 200ms, status: ["503"]}}',
                       "fast": '{retry: {attempts: 3, status: ["503"]}}'},
                      {"slow": [backend.url], "fast": [backend.url]})
    with serve(loop_thread, tmp_path, dynamic) as ports:
        backend.reset([503])
        request(ports["web"], "/slow")
        gaps = [b.at - a.at for a, b in zip(backend.seen, backend.seen[1:], strict=False)]
        assert len(gaps) == 2
        # Each wait is 50-150 % of an interval growing from 200 ms to 400 ms at the last.
        assert 0.1 <= gaps[0] <= 0.35 and 0.14 <= gaps[1] <= 0.5, gaps
        backend.reset([503])
        request(ports["web"], "/fast")
        assert backend.seen[-1].at - backend.seen[0].at < 0.1


def test_timeout_stops_retrying(loop_thread: LoopThread, tmp_path: Path,
                                backend: ScriptedBackend) -> None:
    dynamic = routers({"capped": '{retry: {attempts: 50, initialInterval: 100ms, '
                                 'timeout: 300ms, status: ["503"]}}'}, {"capped": [backend.url]})
    with serve(loop_thread, tmp_path, dynamic) as ports:
        backend.reset([503])
        started = time.monotonic()
        assert request(ports["web"], "/capped")[0] == 503
        assert time.monotonic() - started < 1.5
        assert 2 <= backend.count < 10


def test_retry_restarts_later_middlewares_from_the_original_request(
        loop_thread: LoopThread, tmp_path: Path, backend: ScriptedBackend) -> None:
    dynamic = (routers({"pre": '{retry: {attempts: 3, status: ["503"]}}'}, {"pre": [backend.url]})
               .replace("middlewares: [mw-pre]", "middlewares: [mw-pre, prefix]")
               .replace("  services:", "    prefix: {addPrefix: {prefix: /p}}\n  services:"))
    with serve(loop_thread, tmp_path, dynamic) as ports:
        backend.reset([503, 503, 200])
        assert request(ports["web"], "/pre/x")[0] == 200
    assert [seen.path for seen in backend.seen] == ["/p/pre/x"] * 3


def test_bad_retry_options_disable_the_router(loop_thread: LoopThread, tmp_path: Path,
                                              backend: ScriptedBackend) -> None:
    dynamic = routers({"zero": "{retry: {attempts: 0}}",
                       "nothing": "{retry: {attempts: 2, disableRetryOnNetworkError: true}}",
                       "codes": '{retry: {attempts: 2, status: ["5xx"]}}'},
                      {"zero": [backend.url], "nothing": [backend.url], "codes": [backend.url]})
    with serve(loop_thread, tmp_path, dynamic, api={"insecure": True}) as ports:
        for path in ("/zero", "/nothing", "/codes"):
            assert request(ports["web"], path)[0] == 404
        _, _, listed = request(ports["api"], "/api/http/middlewares")
    text = listed.decode()
    assert "attempts must be 1 or more (got 0)" in text
    assert "nothing left to retry on" in text
    assert "'5xx' is not a status code" in text


# -- circuitBreaker ------------------------------------------------------------------------------

def test_circuit_breaker_trips_on_5xx_answers_falls_back_and_recovers(
        loop_thread: LoopThread, tmp_path: Path, backend: ScriptedBackend) -> None:
    dynamic = routers({"cb": '{circuitBreaker: {expression: "ResponseCodeRatio(500, 600, 0, 600)'
                             ' > 0.5", checkPeriod: 50ms, fallbackDuration: 500ms, '
                             'recoveryDuration: 400ms}}'}, {"cb": [backend.url]})
    with serve(loop_thread, tmp_path, dynamic) as ports:
        backend.reset([200, 200])
        assert [request(ports["web"], "/cb")[0] for _ in range(2)] == [200, 200]
        backend.reset([500])
        time.sleep(0.06)
        assert request(ports["web"], "/cb")[0] == 500  # 1 of 3: checked, not tripped
        time.sleep(0.06)
        assert request(ports["web"], "/cb")[0] == 500  # 2 of 4 is not over 0.5
        time.sleep(0.06)
        assert request(ports["web"], "/cb")[0] == 500  # 3 of 5: tripped
        reached = backend.count
        status, headers, body = request(ports["web"], "/cb")
        assert (status, body) == (503, b"Service Unavailable")
        assert "Content-Type" not in headers  # as Traefik sends it
        assert backend.count == reached
        backend.reset([200])
        time.sleep(0.5)
        statuses = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and statuses[-3:] != [200, 200, 200]:
            statuses.append(request(ports["web"], "/cb")[0])
            time.sleep(0.02)
        assert statuses[0] == 503  # the first request of the recovery is still refused
        assert statuses[-3:] == [200, 200, 200]


def test_circuit_breaker_on_network_errors_answers_its_response_code(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{refused_port()}"
    dynamic = routers({"net": '{circuitBreaker: {expression: "NetworkErrorRatio() > 0.5", '
                              'responseCode: 418}}'}, {"net": [dead]})
    with serve(loop_thread, tmp_path, dynamic) as ports:
        assert request(ports["web"], "/net")[0] == 502
        status, _, body = request(ports["web"], "/net")
    assert (status, body) == (418, b"I'm a teapot")


def test_circuit_breaker_measures_latency(loop_thread: LoopThread, tmp_path: Path) -> None:
    with scripted_backend(delay=0.03) as slow:
        dynamic = routers({"lat": '{circuitBreaker: {expression: '
                                  '"LatencyAtQuantileMS(50.0) > 20"}}'}, {"lat": [slow.url]})
        with serve(loop_thread, tmp_path, dynamic) as ports:
            statuses = [request(ports["web"], "/lat")[0] for _ in range(2)]
    assert statuses == [200, 503]  # the median of one 30 ms answer is over 20 ms


def test_bad_expressions_disable_the_router_with_the_reason(
        loop_thread: LoopThread, tmp_path: Path, backend: ScriptedBackend) -> None:
    dynamic = routers({"bad": '{circuitBreaker: {expression: "NetworkErrorRatio() > 1"}}'},
                      {"bad": [backend.url]})
    with serve(loop_thread, tmp_path, dynamic, api={"insecure": True}) as ports:
        assert request(ports["web"], "/bad")[0] == 404
        _, _, listed = request(ports["api"], "/api/http/routers")
    assert "NetworkErrorRatio is compared with the integer 1" in listed.decode()
