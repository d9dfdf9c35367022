"""How routers use HTTP middlewares: declared order, chains, provider references, bad references."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import LoopThread
from tests.mwkit import echo_backend, echoed, serve


@pytest.fixture
def echo() -> Iterator[int]:
    with echo_backend() as port:
        yield port


DYNAMIC = """
http:
  routers:
    ordered:
      rule: "PathPrefix(`/ordered`)"
      middlewares: [first, second]
      service: echo
    chained:
      rule: "PathPrefix(`/chained`)"
      middlewares: [both]
      service: echo
    missing:
      rule: "PathPrefix(`/missing`)"
      middlewares: [nosuch]
      service: echo
    looping:
      rule: "PathPrefix(`/looping`)"
      middlewares: [loop-a]
      service: echo
    untyped:
      rule: "PathPrefix(`/untyped`)"
      middlewares: [empty]
      service: echo
    two-types:
      rule: "PathPrefix(`/two`)"
      middlewares: [double]
      service: echo
    healthy:
      rule: "PathPrefix(`/healthy`)"
      service: echo
  middlewares:
    first: {{addPrefix: {{prefix: "/one"}}}}
    second: {{addPrefix: {{prefix: "/two"}}}}
    both: {{chain: {{middlewares: [second, first@file]}}}}
    loop-a: {{chain: {{middlewares: [loop-b]}}}}
    loop-b: {{chain: {{middlewares: [loop-a]}}}}
    empty: {{}}
    double: {{addPrefix: {{prefix: "/x"}}, stripPrefix: {{prefixes: ["/y"]}}}}
  services:
    echo: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{echo}"}}]}}}}
"""


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def ports(loop_thread: LoopThread, tmp_path: Path, echo: int) -> Iterator[dict[str, int]]:
    with serve(loop_thread, tmp_path, DYNAMIC.format(echo=echo),
               api={"insecure": True}) as found:
        yield found


def test_middlewares_run_in_declared_order_the_first_outermost(ports: dict[str, int]) -> None:
    status, body = _get(ports["web"], "/ordered/x")
    assert status == 200
    # first adds /one, then second adds /two in front of that.
    assert echoed(body)["target"] == "/two/one/ordered/x"


def test_a_chain_runs_its_middlewares_in_its_order_with_provider_references(
        ports: dict[str, int]) -> None:
    status, body = _get(ports["web"], "/chained/x")
    assert status == 200
    assert echoed(body)["target"] == "/one/two/chained/x"


@pytest.mark.parametrize("path", ["/missing", "/looping", "/untyped", "/two"])
def test_a_router_with_a_bad_middleware_is_disabled_and_the_rest_still_route(
        ports: dict[str, int], path: str) -> None:
    assert _get(ports["web"], path)[0] == 404
    assert _get(ports["web"], "/healthy")[0] == 200


def test_the_api_names_each_middleware_problem(ports: dict[str, int]) -> None:
    status, body = _get(ports["api"], "/api/http/routers")
    assert status == 200
    errors = {router["name"]: router.get("error", []) for router in json.loads(body)}
    assert errors["missing@file"] == ['middleware "nosuch@file" does not exist']
    assert errors["looping@file"] == [
        ('could not instantiate middleware loop-a@file: recursion detected in '
        'looping@file->loop-a@file->loop-b@file->loop-a@file')]
    assert errors["untyped@file"] == [
        ('invalid middleware "empty@file" configuration: invalid middleware type or middleware '
        'does not exist')]
    assert errors["two-types@file"] == [
        ('invalid middleware "double@file" configuration: cannot create middleware: multi-types '
        'middleware not supported, consider declaring two different pieces of middleware '
        'instead (addPrefix, stripPrefix)')]
    assert errors["ordered@file"] == []
