"""ipAllowList, inFlightReq and rateLimit over real sockets: who gets in, who gets 403 or 429."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import LoopThread, http_server
from tests.mwkit import echo_backend, echoed, serve

TRUSTING = {"web": {"forwardedHeaders": {"insecure": True}}}


@pytest.fixture(scope="module")
def echo() -> Iterator[int]:
    with echo_backend() as port:
        yield port


@pytest.fixture(scope="module")
def shared_loop() -> Iterator[LoopThread]:
    """One loop for the Switchyard that several tests of a group share (starting it costs)."""
    loop = LoopThread()
    yield loop
    loop.stop()


def _get(port: int, path: str = "/", headers: dict[str, str] | None = None,
         method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _dynamic(middlewares: dict[str, Any], backend: int) -> str:
    """One router per middleware, at /<name>, in front of ``backend``."""
    routers = {name: {"rule": f"PathPrefix(`/{name}`)", "service": "app", "middlewares": [name]}
               for name in middlewares}
    routers["plain"] = {"rule": "PathPrefix(`/plain`)", "service": "app"}
    return json.dumps({"http": {
        "routers": routers, "middlewares": middlewares,
        "services": {"app": {"loadBalancer": {
            "servers": [{"url": f"http://127.0.0.1:{backend}"}]}}}}})


# -- ipAllowList ----------------------------------------------------------------------------------

ALLOW = {
    "loopback": {"ipAllowList": {"sourceRange": ["127.0.0.1/32"]}},
    "tennet": {"ipAllowList": {"sourceRange": ["10.0.0.0/8"]}},
    "teapot": {"ipAllowList": {"sourceRange": ["10.0.0.0/8"], "rejectStatusCode": 418}},
    "nocontent": {"ipAllowList": {"sourceRange": ["10.0.0.0/8"], "rejectStatusCode": 204}},
    "depth": {"ipAllowList": {"sourceRange": ["10.0.0.0/8"], "ipStrategy": {"depth": 2}}},
    "excluded": {"ipAllowList": {"sourceRange": ["10.0.0.0/8"],
                                 "ipStrategy": {"excludedIPs": ["192.168.0.0/16"]}}},
    "both": {"ipAllowList": {"sourceRange": ["10.0.0.0/8"],
                             "ipStrategy": {"depth": 1, "excludedIPs": ["192.168.0.0/16"]}}},
    "subnet": {"ipAllowList": {"sourceRange": ["2001:db8::"],
                               "ipStrategy": {"depth": 1, "ipv6Subnet": 64}}},
    "legacy": {"ipWhiteList": {"sourceRange": ["10.0.0.0/8"]}},
    "oldcode": {"ipWhiteList": {"sourceRange": ["10.0.0.0/8"], "rejectStatusCode": 404}},
    "badrange": {"ipAllowList": {"sourceRange": ["10.0.0.0/33"]}},
    "empty": {"ipAllowList": {"sourceRange": []}},
    "badcode": {"ipAllowList": {"sourceRange": ["10.0.0.1"], "rejectStatusCode": 999}},
    "badsubnet": {"ipAllowList": {"sourceRange": ["10.0.0.1"],
                                  "ipStrategy": {"ipv6Subnet": 129}}},
}


@pytest.fixture(scope="module")
def allow(shared_loop: LoopThread, tmp_path_factory: pytest.TempPathFactory,
          echo: int) -> Iterator[dict[str, int]]:
    with serve(shared_loop, tmp_path_factory.mktemp("allow"), _dynamic(ALLOW, echo),
               api={"insecure": True},
               entrypoint_options=TRUSTING) as ports:
        yield ports


def test_a_listed_client_reaches_the_service(allow: dict[str, int]) -> None:
    status, _, body = _get(allow["web"], "/loopback/x")
    assert status == 200
    assert echoed(body)["target"] == "/loopback/x"


def test_an_unlisted_client_gets_403_forbidden_with_no_content_type(
        allow: dict[str, int]) -> None:
    status, headers, body = _get(allow["web"], "/tennet")
    assert (status, body) == (403, b"Forbidden")
    assert headers["content-length"] == "9"
    assert "content-type" not in headers


def test_reject_status_code_chooses_the_refusal_and_its_text(allow: dict[str, int]) -> None:
    assert _get(allow["web"], "/teapot")[::2] == (418, b"I'm a teapot")
    status, headers, body = _get(allow["web"], "/nocontent")
    assert (status, body) == (204, b"")
    assert "content-type" not in headers


def test_without_forwarded_for_the_peer_address_is_checked_even_with_depth(
        allow: dict[str, int]) -> None:
    # No X-Forwarded-For: the depth strategy finds nothing, which is never allowed.
    assert _get(allow["web"], "/depth")[0] == 403


@pytest.mark.parametrize(("forwarded", "expected"), [
    ("10.1.1.1, 192.168.0.1", 200),     # depth 2 is the second from the right
    ("192.168.0.1, 10.1.1.1", 403),
    ("8.8.8.8, 10.1.1.1, 192.168.0.1", 200),
    ("10.1.1.1", 403),                  # fewer entries than the depth
])
def test_depth_counts_forwarded_for_entries_from_the_right(
        allow: dict[str, int], forwarded: str, expected: int) -> None:
    assert _get(allow["web"], "/depth", {"X-Forwarded-For": forwarded})[0] == expected


@pytest.mark.parametrize(("forwarded", "expected"), [
    ("10.1.1.1, 192.168.0.5, 192.168.7.7", 200),  # the excluded proxies are skipped
    ("8.8.8.8, 10.1.1.1", 200),                   # the right-most not excluded is used
    ("10.1.1.1, 8.8.8.8", 403),
    ("192.168.0.1, 192.168.0.2", 403),            # every entry excluded: no address
])
def test_excluded_ips_skip_trusted_proxies_from_the_right(
        allow: dict[str, int], forwarded: str, expected: int) -> None:
    assert _get(allow["web"], "/excluded", {"X-Forwarded-For": forwarded})[0] == expected


def test_depth_takes_precedence_over_excluded_ips(allow: dict[str, int]) -> None:
    # With excludedIPs alone 10.1.1.1 would be picked; depth 1 picks the excluded proxy.
    assert _get(allow["web"], "/both", {"X-Forwarded-For": "10.1.1.1, 192.168.0.5"})[0] == 403
    assert _get(allow["web"], "/both", {"X-Forwarded-For": "192.168.0.5, 10.1.1.1"})[0] == 200


def test_ipv6_subnet_folds_an_address_onto_its_subnet(allow: dict[str, int]) -> None:
    assert _get(allow["web"], "/subnet", {"X-Forwarded-For": "2001:db8::abcd"})[0] == 200
    assert _get(allow["web"], "/subnet", {"X-Forwarded-For": "2001:db8:0:1::1"})[0] == 403


def test_an_untrusted_peer_cannot_claim_an_address_with_forwarded_for(
        loop_thread: LoopThread, tmp_path: Path, echo: int) -> None:
    # Without forwardedHeaders trust the entry point drops X-Forwarded-For before the middleware.
    with serve(loop_thread, tmp_path, _dynamic({"depth": ALLOW["depth"]}, echo)) as ports:
        assert _get(ports["web"], "/depth", {"X-Forwarded-For": "10.1.1.1, 10.2.2.2"})[0] == 403


def test_deprecated_ip_white_list_still_works_and_always_answers_403(
        allow: dict[str, int]) -> None:
    assert _get(allow["web"], "/legacy")[::2] == (403, b"Forbidden")


def test_bad_allow_lists_disable_their_routers_with_a_message_naming_the_key(
        allow: dict[str, int]) -> None:
    for path in ("/badrange", "/empty", "/badcode", "/badsubnet", "/oldcode"):
        assert _get(allow["web"], path)[0] == 404, path
    assert _get(allow["web"], "/plain")[0] == 200
    routers = json.loads(_get(allow["api"], "/api/http/routers")[2])
    errors = {router["name"]: " ".join(router.get("error", [])) for router in routers}
    assert "sourceRange" in errors["badrange@file"] and "10.0.0.0/33" in errors["badrange@file"]
    assert "sourceRange is empty" in errors["empty@file"]
    assert "rejectStatusCode" in errors["badcode@file"] and "999" in errors["badcode@file"]
    assert "ipv6Subnet" in errors["badsubnet@file"]
    assert "ipAllowList" in errors["oldcode@file"]


# -- inFlightReq ----------------------------------------------------------------------------------


class Gate:
    """A backend whose /slow requests wait until the gate opens; anything else answers at once."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.arrived = threading.Semaphore(0)
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if "/slow" in self.path:
                    gate.arrived.release()
                    gate.opened.wait(10)
                body = self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.handler = Handler

    def wait_arrivals(self, count: int) -> None:
        for _ in range(count):
            assert self.arrived.acquire(timeout=5), "the slow request did not reach the backend"


@pytest.fixture
def gate() -> Iterator[tuple[Gate, int]]:
    found = Gate()
    with http_server(found.handler) as port:
        try:
            yield found, port
        finally:
            found.opened.set()


INFLIGHT = {
    "byhost": {"inFlightReq": {"amount": 2}},
    "bytenant": {"inFlightReq": {"amount": 1,
                                 "sourceCriterion": {"requestHeaderName": "X-Tenant"}}},
    "none": {"inFlightReq": {"amount": 0}},
    "twoways": {"inFlightReq": {"amount": 1, "sourceCriterion": {
        "requestHost": True, "requestHeaderName": "X-Tenant"}}},
}


@pytest.fixture
def inflight(loop_thread: LoopThread, tmp_path: Path,
             gate: tuple[Gate, int]) -> Iterator[dict[str, int]]:
    with serve(loop_thread, tmp_path, _dynamic(INFLIGHT, gate[1]),
               api={"insecure": True}) as ports:
        yield ports


@contextlib.contextmanager
def _held(port: int, path: str, count: int, headers: str = "") -> Iterator[list[socket.socket]]:
    """``count`` requests for ``path`` sent and left waiting on their answers; on leaving, the
    clients go away abruptly (a reset, as a killed client does)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: app.test\r\n{headers}\r\n".encode())
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()


def test_requests_over_the_amount_get_429_while_the_first_are_in_flight(
        inflight: dict[str, int], gate: tuple[Gate, int]) -> None:
    backend, _ = gate
    with _held(inflight["web"], "/byhost/slow", 2) as socks:
        backend.wait_arrivals(2)
        status, headers, body = _get(inflight["web"], "/byhost/fast", {"Host": "app.test"})
        assert (status, body) == (429, b"max connections reached: 2")
        assert "content-type" not in headers
        # Another host is another source (the default criterion is the request host).
        assert _get(inflight["web"], "/byhost/fast", {"Host": "other.test"})[0] == 200
        backend.opened.set()
        for sock in socks:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
    # The slots were given back when the responses ended.
    assert _get(inflight["web"], "/byhost/fast", {"Host": "app.test"})[0] == 200


def test_a_client_that_goes_away_gives_its_slot_back_before_the_backend_answers(
        inflight: dict[str, int], gate: tuple[Gate, int]) -> None:
    backend, _ = gate
    with _held(inflight["web"], "/byhost/slow", 2):
        backend.wait_arrivals(2)
        assert _get(inflight["web"], "/byhost/fast", {"Host": "app.test"})[0] == 429
    # Both clients closed; the backend is still holding their requests.
    deadline = time.monotonic() + 5
    while _get(inflight["web"], "/byhost/fast", {"Host": "app.test"})[0] != 200:
        assert time.monotonic() < deadline, "the slots of the departed clients were kept"
        time.sleep(0.02)
    assert not backend.opened.is_set()


def test_a_header_criterion_counts_each_value_apart(
        inflight: dict[str, int], gate: tuple[Gate, int]) -> None:
    backend, _ = gate
    with _held(inflight["web"], "/bytenant/slow", 1, "X-Tenant: a\r\n"):
        backend.wait_arrivals(1)
        assert _get(inflight["web"], "/bytenant/fast", {"X-Tenant": "a"})[0] == 429
        assert _get(inflight["web"], "/bytenant/fast", {"X-Tenant": "b"})[0] == 200
        # No header at all is a source of its own, the empty one.
        assert _get(inflight["web"], "/bytenant/fast")[0] == 200


def test_amount_zero_refuses_every_request_as_traefik_does(inflight: dict[str, int]) -> None:
    assert _get(inflight["web"], "/none")[::2] == (429, b"max connections reached: 0")


def test_two_source_criteria_at_once_disable_the_router(inflight: dict[str, int]) -> None:
    assert _get(inflight["web"], "/twoways")[0] == 404
    routers = json.loads(_get(inflight["api"], "/api/http/routers")[2])
    error = next(" ".join(r.get("error", [])) for r in routers if r["name"] == "twoways@file")
    assert "mutually exclusive" in error and "requestHeaderName" in error


# -- rateLimit ------------------------------------------------------------------------------------

LIMITS = {
    "burst": {"rateLimit": {"average": 1, "burst": 3}},
    "slow": {"rateLimit": {"average": 1, "period": "2s"}},
    "off": {"rateLimit": {"average": 0, "burst": 1}},
    "tenant": {"rateLimit": {"average": 1, "period": "1m", "burst": 1,
                             "sourceCriterion": {"requestHeaderName": "X-Tenant"}}},
    "waits": {"rateLimit": {"average": 4, "burst": 1}},
    "negative": {"rateLimit": {"average": 1, "period": "-1s"}},
}


@pytest.fixture(scope="module")
def limited(shared_loop: LoopThread, tmp_path_factory: pytest.TempPathFactory,
            echo: int) -> Iterator[dict[str, int]]:
    with serve(shared_loop, tmp_path_factory.mktemp("limits"), _dynamic(LIMITS, echo),
               api={"insecure": True}) as ports:
        yield ports


def test_a_burst_passes_then_429_then_a_token_comes_back_after_the_period(
        limited: dict[str, int]) -> None:
    statuses = [_get(limited["web"], "/burst")[0] for _ in range(3)]
    assert statuses == [200, 200, 200]
    status, headers, body = _get(limited["web"], "/burst")
    assert (status, body) == (429, b"Too Many Requests")
    assert headers["retry-after"] == "1"
    assert headers["x-retry-in"].endswith("ms")  # just under a second, as a Go duration
    assert "content-type" not in headers
    time.sleep(1.05)
    assert _get(limited["web"], "/burst")[0] == 200


def test_period_stretches_the_refill_retry_after_says_how_long(limited: dict[str, int]) -> None:
    assert _get(limited["web"], "/slow")[0] == 200
    status, headers, _ = _get(limited["web"], "/slow")
    assert status == 429
    assert headers["retry-after"] == "2"


def test_average_zero_turns_limiting_off(limited: dict[str, int]) -> None:
    assert {_get(limited["web"], "/off")[0] for _ in range(10)} == {200}


def test_each_source_has_its_own_bucket(limited: dict[str, int]) -> None:
    assert _get(limited["web"], "/tenant", {"X-Tenant": "a"})[0] == 200
    assert _get(limited["web"], "/tenant", {"X-Tenant": "a"})[0] == 429
    assert _get(limited["web"], "/tenant", {"X-Tenant": "b"})[0] == 200


def test_a_request_that_would_wait_briefly_is_held_then_served(limited: dict[str, int]) -> None:
    # 4 a second: a token every 250 ms, and waiting up to 125 ms is allowed.
    assert _get(limited["web"], "/waits")[0] == 200
    time.sleep(0.16)  # about 0.64 of a token is back: the next waits the rest
    started = time.monotonic()
    assert _get(limited["web"], "/waits")[0] == 200
    assert time.monotonic() - started < 0.5


def test_a_negative_period_disables_the_router(limited: dict[str, int]) -> None:
    assert _get(limited["web"], "/negative")[0] == 404
    routers = json.loads(_get(limited["api"], "/api/http/routers")[2])
    error = next(" ".join(r.get("error", [])) for r in routers if r["name"] == "negative@file")
    assert "period" in error and "-1s" in error
