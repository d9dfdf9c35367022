"""Malformed list parameters answer 400 with a message, never 500, over real HTTP."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Backends, LoopThread, start_router, stop_router

DYNAMIC = """
tcp:
  routers:
    a: {{rule: "HostSNI(`a.test`)", service: app, tls: {{passthrough: true}}}}
    b: {{rule: "HostSNI(`b.test`)", service: app, tls: {{passthrough: true}}}}
    c: {{rule: "HostSNI(`*`)", service: app}}
  middlewares:
    limit: {{inFlightConn: {{amount: 10}}}}
  services:
    app: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{port}"}}]}}}}
"""

LISTS = ["/api/tcp/routers", "/api/tcp/services", "/api/tcp/middlewares", "/api/entrypoints",
         "/api/tcp/connections"]
GO_INT_MAX = 2**63 - 1


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Api:
    port: int

    def get(self, target: str) -> Answer:
        """GET ``target`` exactly as written: no client-side quoting or normalising."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.putrequest("GET", target, skip_accept_encoding=True)
            conn.endheaders()
            response = conn.getresponse()
            raw = response.read()
            headers = dict(response.headers)
        finally:
            conn.close()
        is_json = headers.get("Content-Type", "").startswith("application/json")
        return Answer(response.status, headers, json.loads(raw) if is_json else raw.decode())


@pytest.fixture
def api(loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> Iterator[Api]:
    app = start_router(loop_thread, tmp_path, DYNAMIC.format(port=backends.whoami("app")),
                       entrypoints={"ep": "127.0.0.1:0", "traefik": "127.0.0.1:0"},
                       api={"insecure": True})
    try:
        yield Api(app.internal_servers[0].port)
    finally:
        stop_router(loop_thread, app)


MALFORMED = {
    "letters": "abc",
    "negative": "-1",
    "zero": "0",
    "negative zero": "-0",
    "decimal": "1.5",
    "exponent": "1e3",
    "leading space": "%201",
    "trailing space": "1%20",
    "underscore": "1_000",
    "Arabic-Indic digit": "%D9%A3",
    "fullwidth digit": "%EF%BC%91",
    "not UTF-8": "%ff",
    "NUL": "%00",
    "sign only": "%2B",
    "a raw plus, which a query string reads as a space": "+2",
    "hex": "0x10",
    "just past int64": str(GO_INT_MAX + 1),
    "4,301 digits": "9" * 4301,
    "4,301 digits, negative": "-" + "9" * 4301,
    "7,000 digits": "1" * 7000,
}


@pytest.mark.parametrize("value", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("key", ["page", "per_page"])
def test_a_malformed_page_parameter_is_a_400_that_says_what_to_write(
        api: Api, key: str, value: str) -> None:
    answer = api.get(f"/api/tcp/routers?{key}={value}")

    assert answer.status == 400, answer
    message = answer.body["message"]
    assert message.startswith(f"invalid request: {key}: "), message  # Traefik's own start
    assert f"{key} must be a whole number from 1 to {GO_INT_MAX}" in message
    assert len(message) < 200  # thousands of digits are not echoed back


def test_out_of_range_numbers_are_reported_as_go_clamps_them(api: Api) -> None:
    assert api.get(f"/api/tcp/routers?page={'9' * 4301}").body["message"].startswith(
        f"invalid request: page: {GO_INT_MAX};")
    assert api.get(f"/api/tcp/routers?per_page=-{'9' * 30}").body["message"].startswith(
        f"invalid request: per_page: {-GO_INT_MAX - 1};")
    assert api.get("/api/tcp/routers?page=abc").body["message"].startswith(
        "invalid request: page: 0;")


@pytest.mark.parametrize("path", LISTS)
def test_every_list_endpoint_validates_its_pages(api: Api, path: str) -> None:
    for query in ("page=" + "9" * 4301, "per_page=" + "9" * 4301, "per_page=0", "page=x"):
        answer = api.get(f"{path}?{query}")
        assert answer.status == 400, (path, query, answer)
        assert answer.headers["Content-Type"].startswith("application/json")
    assert api.get(path).status == 200


def test_a_page_past_the_end_is_a_400_naming_the_pages_there_are(api: Api) -> None:
    answer = api.get("/api/tcp/routers?per_page=2&page=3")

    assert answer.status == 400
    assert answer.body["message"] == ("invalid request: page: 3, per_page: 2; there are 3 items"
                                      " at 2 per page, so page must be from 1 to 2")
    empty = api.get("/api/tcp/connections?page=2")
    assert empty.status == 400
    assert empty.body["message"].endswith("there are no items at 100 per page, so page must be 1")


def test_pages_far_past_the_end_are_a_400_not_an_overflow(api: Api) -> None:
    for query in (f"page={GO_INT_MAX}", f"page={2**62}&per_page=4",
                  f"page={GO_INT_MAX}&per_page={GO_INT_MAX}"):
        answer = api.get(f"/api/tcp/routers?{query}")
        assert answer.status == 400, (query, answer)
        assert "so page must be" in answer.body["message"]


ACCEPTED = {
    "the largest int64 per page": (f"per_page={GO_INT_MAX}", ["a@file", "b@file", "c@file"]),
    "leading zeros": ("per_page=0002", ["a@file", "b@file"]),
    "thousands of leading zeros": ("per_page=" + "0" * 5000 + "1", ["a@file"]),
    "a plus sign": ("page=%2B2&per_page=2", ["c@file"]),
    "empty values mean the default": ("page=&per_page=", ["a@file", "b@file", "c@file"]),
    "the first of repeated values": ("per_page=1&per_page=abc", ["a@file"]),
}


@pytest.mark.parametrize("query,names", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_values_gos_atoi_accepts_are_accepted(api: Api, query: str, names: list[str]) -> None:
    answer = api.get(f"/api/tcp/routers?{query}")

    assert answer.status == 200, answer
    assert [router["name"] for router in answer.body] == names


def test_unknown_sort_keys_and_directions_are_not_errors_as_in_traefik(api: Api) -> None:
    # Traefik sorts by name for an unknown sortBy, and descending for any direction but "asc".
    by_name = api.get("/api/tcp/routers?sortBy=%ff%00nonsense")
    assert by_name.status == 200
    assert [r["name"] for r in by_name.body] == ["a@file", "b@file", "c@file"]
    sideways = api.get("/api/tcp/routers?direction=sideways")
    assert [r["name"] for r in sideways.body] == ["c@file", "b@file", "a@file"]


def test_the_api_keeps_answering_after_malformed_queries(api: Api) -> None:
    for _ in range(20):
        assert api.get("/api/tcp/services?per_page=" + "7" * 5000).status == 400
    assert api.get("/api/overview").status == 200
