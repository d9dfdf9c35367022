"""bench/compare.py's pure parts: load-tool summaries, paired ratios, run order, the tables;
and its idle-connection count against a small real HTTP server on loopback."""

from __future__ import annotations

import gc
import json
import os
import resource
import socket
import subprocess
import sys
import time
import warnings
from argparse import Namespace
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.benchkit import compare

WRK = """\
Running 1s test @ http://127.0.0.1:41000/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  500.00us  10.00ms   90.00%
    Req/Sec    40.00k     1.00k   42.00k    80.00%
  Latency Distribution
     50%  850.00us
     75%    1.30ms
     90%    1.60ms
     99%    3.20ms
  40123 requests in 1.00s, 10.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:  40100.50
Transfer/sec:     10.00MB
"""

H2LOAD = """\
starting benchmark...
spawning thread #0: 10 total client(s). Timing-based test with 0s of warm-up time and 1s of \
main duration for measurements.
TLS Protocol: TLSv1.3
Cipher: TLS_AES_256_GCM_SHA384
Server Temp Key: X25519 253 bits
Application protocol: h2
finished in 1.00s, 22243.50 req/s, 3.84MB/s
requests: 22243 total, 22343 started, 22243 done, 22240 succeeded, 3 failed, 1 errored, \
2 timeout
status codes: 22240 2xx, 0 3xx, 4 4xx, 1 5xx
traffic: 7.68MB (8052447) total, 2.67MB (2802681) headers (space savings 37.00%), 4.24MB \
(4448700) data
"""


def runs(*rates: float | None) -> list[object]:
    return [compare.Run(rate=rate, work=1.0, rep=rep)
            for rep, rate in enumerate(rates) if rate is not None]


def test_wrk_summary_gives_rate_requests_percentiles_and_every_failure() -> None:
    run = compare.parse_wrk(WRK)
    assert (run.rate, run.work, run.p50_ms, run.p99_ms) == (40100.5, 40123, 0.85, 3.2)
    assert run.errors == 3 + 2 + 7  # socket errors and non-2xx responses


def test_wrk_without_a_summary_is_a_failed_run() -> None:
    with pytest.raises(RuntimeError, match="wrk failed"):
        compare.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused", status=1)


def test_h2load_summary_counts_failed_errored_timed_out_and_non_2xx_requests() -> None:
    run = compare.parse_h2load(H2LOAD)
    assert (run.rate, run.work) == (22243.5, 22243)
    assert run.errors == 3 + 1 + 2 + 4 + 1
    assert run.p50_ms is None  # h2load prints no percentiles


def test_h2load_run_that_fell_back_to_http_1_is_refused() -> None:
    with pytest.raises(RuntimeError, match="did not negotiate h2"):
        compare.parse_h2load(H2LOAD.replace("Application protocol: h2", "No protocol negotiated"))


def test_ratio_pairs_runs_of_the_same_repetition() -> None:
    # Repetition 2 of the denominator has no partner and is left out: (20/10, 30/10) -> 2.5.
    assert compare.paired_ratio(runs(20, 30), runs(10, 10, 99), compare.rate_of) == 2.5
    assert compare.paired_ratio(runs(20, None, 30), runs(None, 10, 15), compare.rate_of) == 2.0


def test_ratio_without_a_pair_is_missing_rather_than_zero() -> None:
    assert compare.paired_ratio(runs(20), runs(None, 10), compare.rate_of) is None
    assert compare.format_ratio(None) == "–"


@given(st.lists(st.tuples(st.floats(1, 1e6), st.floats(1, 1e6)), min_size=1, max_size=9)
       .filter(lambda pairs: len(pairs) % 2 == 1))
def test_swapping_the_paths_inverts_the_paired_ratio(pairs: list[tuple[float, float]]) -> None:
    top, bottom = runs(*(a for a, _ in pairs)), runs(*(b for _, b in pairs))
    forward = compare.paired_ratio(top, bottom, compare.rate_of)
    backward = compare.paired_ratio(bottom, top, compare.rate_of)
    assert forward * backward == pytest.approx(1.0)


def test_each_repetition_starts_with_another_proxy_and_direct_stays_first() -> None:
    firsts = [compare.order_of(compare.TARGETS, rep)[1] for rep in range(4)]
    assert sorted(firsts) == sorted(compare.PROXIES)
    assert all(compare.order_of(compare.TARGETS, rep)[0] == "direct" for rep in range(4))
    assert compare.order_of(compare.ROUTERS, 1) == ["switchyard", "traefik"]


def test_any_two_proxies_run_in_both_orders_over_the_default_repetitions() -> None:
    # A pure rotation kept every neighbour in the same order: with the speed of the
    # machine drifting up during a run, the baseline (always right after Switchyard) won.
    paths = (*compare.TARGETS, "baseline")
    proxies = [p for p in paths if p != "direct"]

    def first_in(a: str, b: str, reps: int) -> int:
        return sum(order.index(a) < order.index(b)
                   for order in (compare.order_of(paths, rep) for rep in range(reps)))

    pairs = [(a, b) for a in proxies for b in proxies if a < b]
    assert all(0 < first_in(a, b, 3) < 3 for a, b in pairs)
    assert all(first_in(a, b, 2 * len(proxies)) == len(proxies) for a, b in pairs)


def test_every_row_runs_on_its_own_and_the_chain_brings_its_baseline() -> None:
    assert [w.key for w in compare.selected(["http-keepalive"])] == ["http-keepalive"]
    assert [w.key for w in compare.selected(["chain-keepalive"])] == [
        compare.CHAIN_BASELINE, "chain-keepalive"]
    assert len(compare.selected(None)) == len(compare.WORKLOADS)


def test_http_rows_have_no_direct_column_and_the_chain_only_the_two_routers() -> None:
    tables = {w.table: w.paths for w in compare.WORKLOADS}
    assert tables == {"tcp": compare.TARGETS, "http": compare.PROXIES,
                      "chain": ("traefik", "switchyard")}


def _bench(**missing: dict[str, str]) -> object:
    bench = compare.Bench(fleet=None, root=Path("/nonexistent"))
    ports = {route: 1 for route in compare.ROUTES}
    for name in compare.TARGETS:
        bench.targets[name] = compare.Target(name, dict(ports), missing=missing.get(name, {}))
    return bench


def test_a_route_switchyard_refused_says_n_a_in_its_cells_and_the_notes_say_why() -> None:
    reason = "`switchyard check`: middleware \"never-limit@file\" ... does not exist"
    bench = _bench(switchyard={"chain": reason})
    plain, chain = compare.BY_KEY[compare.CHAIN_BASELINE], compare.BY_KEY["chain-keepalive"]
    results = {(plain.key, path): [compare.Run(rate=1000.0 * (i + 1), work=1000.0,
                                               cpu_seconds=0.1)] for i, path in
               enumerate(compare.PROXIES)}
    results[(chain.key, "traefik")] = [compare.Run(rate=1500.0, work=1500.0, cpu_seconds=0.18)]
    text = compare.Report(results, [plain, chain], bench).text()
    assert "| Switchyard | n/a | n/a | n/a | n/a | n/a | n/a |" in text
    # Traefik: 1.5k with the chain over 3.0k plain; CPU 120 µs over 100 µs per request.
    assert "| Traefik | 3.0k | 1.5k | 0.50 | 100 µs/req | 120 µs/req | 1.20 |" in text
    assert f"Switchyard, n/a on HTTP router + headers, ipAllowList, rateLimit, keep-alive: " \
           f"{reason}" in text
    # Switchyard's plain router row still counts: 4.0k against HAProxy's 1.0k.
    assert "| HTTP router keep-alive (req/s) | 1.0k | 2.0k | 3.0k | 4.0k | 4.00 | 1.33 |" in text


def test_a_row_no_path_can_run_is_n_a_everywhere_with_one_note() -> None:
    bench = _bench()
    h2 = compare.BY_KEY["h2-tls"]
    bench.unavailable[h2.key] = "no h2load (apt-get install nghttp2-client)"
    text = compare.Report({}, [h2], bench).text()
    assert f"| {h2.title} | n/a | n/a | n/a | n/a | – | – |" in text
    assert "HTTP/2 over TLS, 10 connections x 10 streams: n/a, no h2load" in text


def test_cells_whose_runs_had_errors_carry_a_dagger() -> None:
    bench = _bench()
    workload = compare.BY_KEY["http-keepalive"]
    results = {(workload.key, path): [compare.Run(rate=2000.0, work=2000.0, errors=int(
        path == "traefik"))] for path in compare.TARGETS}
    text = compare.Report(results, [workload], bench).text()
    assert "| 2.0k | 2.0k | 2.0k | 2.0k† | 2.0k | 1.00 | 1.00 |" in text
    assert "† some runs had socket errors or non-2xx responses" in text


def test_a_baseline_tree_is_one_more_column_with_its_own_ratio(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "src" / "switchyard").mkdir(parents=True)
    (tmp_path / "src" / "switchyard" / "__init__.py").write_text("")
    for name in ("PROXIES", "ROUTERS", "TARGETS", "BASELINE_SRC", "SWITCHYARD_WORKERS"):
        monkeypatch.setattr(compare, name, getattr(compare, name))  # restored afterwards
    compare.parse_args(["--baseline", str(tmp_path)])
    assert compare.BASELINE_SRC == tmp_path.resolve() / "src"
    assert compare.PROXIES[-1] == "baseline" and compare.ROUTERS[-1] == "baseline"
    workload = compare.BY_KEY["http-close"]
    rates = {"direct": 4000.0, "haproxy": 2000.0, "nginx": 2000.0, "traefik": 1000.0,
             "switchyard": 1800.0, "baseline": 2000.0}
    results = {(workload.key, path): [compare.Run(rate=rate, work=rate)]
               for path, rate in rates.items()}
    text = compare.Report(results, [workload], _bench()).text()
    assert "| Switchyard | Switchyard baseline | Switchyard/HAProxy | Switchyard/Traefik | " \
           "Switchyard/baseline |" in text
    assert f"| {workload.title} | 4.0k | 2.0k | 2.0k | 1.0k | 1.8k | 2.0k | 0.90 | 1.80 | 0.90 |" \
        in text


def test_a_baseline_without_a_switchyard_source_tree_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        compare.parse_args(["--baseline", str(tmp_path)])
    assert "baseline" not in compare.PROXIES and compare.BASELINE_SRC is None


# --- memory per idle connection -------------------------------------------------------------

OK = f"HTTP/1.1 200 OK\r\nContent-Length: {len(compare.BODY)}\r\n\r\n{compare.BODY}".encode()


def test_the_option_defaults_to_a_thousand_connections_and_zero_skips() -> None:
    assert compare.parse_args([]).idle_connections == 1000
    assert compare.parse_args(["--idle-connections", "0"]).idle_connections == 0
    assert compare.parse_args(["--idle-connections", "250"]).idle_connections == 250
    with pytest.raises(SystemExit):
        compare.parse_args(["--idle-connections", "-1"])


def test_the_sentence_gives_each_proxy_measured_in_table_order_and_why_one_is_missing() -> None:
    text = compare.idle_sentence({"switchyard": 4.63, "haproxy": 3.31, "nginx": 9.6},
                                 {"traefik": "connect: Connection refused"}, 1000)
    assert text.startswith("Per idle connection (1,000 held open at once")
    assert text.endswith(": HAProxy 3.3 KiB, nginx stream 9.6 KiB, Traefik n/a (connect: "
                         "Connection refused), Switchyard 4.6 KiB.")
    assert compare.idle_sentence({}, {}, 0) == ""


def test_the_figure_follows_rest_rss_in_the_report_and_goes_into_the_json(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _bench()
    bench.rest_rss_mb.update(haproxy=20.0, switchyard=63.0)
    bench.idle_connections = 1000
    bench.idle_rss_kib.update(haproxy=3.1, switchyard=2.14)
    text = compare.Report({}, [compare.BY_KEY["http-keepalive"]], bench).text()
    assert ("Resident memory at rest (started, one request per route): HAProxy 20 MB, "
            "Switchyard 63 MB. Per idle connection (1,000 held open") in text
    assert "HAProxy 3.1 KiB, Switchyard 2.1 KiB." in text
    monkeypatch.setattr(compare, "RESULTS", tmp_path)
    saved = json.loads(compare.save_raw({}, Namespace(reps=1, seconds=1), bench).read_text())
    assert saved["idle_connections"] == 1000
    assert saved["idle_rss_kib"] == {"haproxy": 3.1, "switchyard": 2.14}


def test_without_a_measurement_the_rest_line_stands_alone() -> None:
    bench = _bench()
    bench.rest_rss_mb.update(nginx=15.0)
    text = compare.Report({}, [compare.BY_KEY["http-keepalive"]], bench).text()
    assert "\nResident memory at rest (started, one request per route): nginx 15 MB.\n" in text
    assert "Per idle connection" not in text


def test_the_lowest_limit_lowers_the_count_for_every_proxy_and_says_so() -> None:
    caps = {"HAProxy's maxconn": 4032, "nginx's worker_connections": 480,
            "this script's open-file limit": 960}
    count, note = compare.fit_idle_count(1000, caps)
    assert count == 480
    assert "nginx's worker_connections leaves room for 480; holding 480" in note
    assert compare.fit_idle_count(400, caps) == (400, "")
    count, note = compare.fit_idle_count(1000, {"this script's open-file limit": -10})
    assert count == 0 and "skipping" in note


def test_the_shipped_configs_leave_room_for_a_thousand_idle_connections() -> None:
    assert compare.config_number("haproxy.cfg", "maxconn") == 4096
    assert compare.config_number("nginx-proxy.conf", "worker_connections") == 16384
    assert compare.config_number("haproxy.cfg", "no_such_directive") is None
    assert compare.open_files_limit(os.getpid()) == compare.open_files_limit()


@pytest.mark.parametrize("partial", [OK[:10], OK[:OK.index(b"\r\n\r\n") + 2], OK[:-1]])
def test_a_response_is_done_only_with_its_whole_body(partial: bytes) -> None:
    assert compare.keepalive_response_done(OK)
    assert not compare.keepalive_response_done(partial)


@pytest.mark.parametrize(("response", "error"), [
    (OK.replace(b"200 OK", b"502 Bad Gateway"), "unexpected response"),
    (OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"), "Connection: close"),
    (OK.replace(b"Content-Length: 100", b"Transfer-Encoding: chunked"), "Content-Length"),
    (OK[:-1] + b"y", "unexpected body"),
])
def test_a_response_that_cannot_leave_an_idle_keep_alive_connection_is_refused(
        response: bytes, error: str) -> None:
    with pytest.raises(RuntimeError, match=error):
        compare.keepalive_response_done(response)


# A tiny keep-alive HTTP server in a child process, so this process holds only the clients'
# sockets: the reply given in hex for `GET /` as compare.py sends it (on the first `good`
# connections; a 503 on later ones), 400 for anything else; a request with
# `Connection: close` is answered, then the connection is closed.
SERVER = """
import itertools, socketserver, sys
REPLY = bytes.fromhex(sys.argv[1])
GOOD = int(sys.argv[2])
ACCEPTED = itertools.count()
EXPECTED = b"GET / HTTP/1.1\\r\\nHost: localhost"

class Answer(socketserver.BaseRequestHandler):
    def handle(self):
        reply = REPLY if next(ACCEPTED) < GOOD else REPLY.replace(b"200 OK", b"503 Busy")
        buffered = b""
        while chunk := self.request.recv(4096):
            buffered += chunk
            while b"\\r\\n\\r\\n" in buffered:
                head, buffered = buffered.split(b"\\r\\n\\r\\n", 1)
                first = head.split(b"\\r\\nConnection")[0]
                self.request.sendall(reply if first == EXPECTED else
                                     b"HTTP/1.1 400 Bad Request\\r\\nContent-Length: 0\\r\\n\\r\\n")
                if b"connection: close" in head.lower():
                    return

class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    request_queue_size = 128

server = Server(("127.0.0.1", 0), Answer)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


Serve = Callable[..., tuple[int, "subprocess.Popen[str]"]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Starts a server answering with the given reply: its port and process; stopped after."""
    started: list[subprocess.Popen[str]] = []

    def start(reply: bytes = OK, good: int = 1 << 30) -> tuple[int, subprocess.Popen[str]]:
        proc = subprocess.Popen([sys.executable, "-c", SERVER, reply.hex(), str(good)],
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout is not None
        return int(proc.stdout.readline()), proc

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(10)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_twenty_connections_are_held_open_and_idle_after_one_request_each(serve: Serve) -> None:
    port, _ = serve()
    before = _open_fds()
    held = compare.hold_idle(port, 20, timeout=10, in_flight=8)
    try:
        assert len(held) == 20 and _open_fds() == before + 20
        assert compare.count_idle(held) == 20
        # One more request that asks the server to close: that one is no longer idle.
        held[7].setblocking(True)
        held[7].sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        deadline = time.monotonic() + 5
        while compare.count_idle(held) != 19 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert compare.count_idle(held) == 19
    finally:
        for sock in held:
            sock.close()
    assert _open_fds() == before


def test_the_cost_per_idle_connection_is_read_from_the_rss_of_this_process_tree(serve: Serve) -> None:
    port, server = serve()
    tree, child = (compare.ProcessMeter(pid).memory_mb("VmRSS") for pid in (os.getpid(), server.pid))
    assert tree > child > 0  # the tree is this process and the server
    before = _open_fds()
    cost = compare.idle_cost_kib(os.getpid(), port, 20, pause=0.05)
    # 20 server threads (stacks, sockets) and 20 client sockets: more memory, yet far from 1 MiB
    # a connection.
    assert 0 < cost < 1024
    assert _open_fds() == before  # every connection closed again


@pytest.mark.parametrize("good", [0, 12])
def test_a_wrong_answer_fails_the_measurement_and_leaves_no_socket_open(serve: Serve,
                                                                        good: int) -> None:
    port, _ = serve(good=good)  # 503 from the connection after the `good` first ones on
    before = _open_fds()
    # A socket left to the garbage collector would close too, but with a ResourceWarning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(RuntimeError, match="unexpected response b'HTTP/1.1 503"):
            compare.hold_idle(port, 20, timeout=10, in_flight=1)  # one at a time: 12 held first
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert _open_fds() == before


def test_a_port_nobody_listens_on_fails_at_once() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        before = _open_fds()
        with pytest.raises(ConnectionRefusedError):
            compare.hold_idle(port, 5, timeout=5)
        assert _open_fds() == before


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # released: nothing listens there


def test_each_running_proxy_gets_a_figure_or_the_reason_it_has_none(serve: Serve) -> None:
    port, server = serve()
    bench = compare.Bench(fleet=compare.Fleet(), root=Path("/nonexistent"))
    # The test server stands in for Switchyard; "HAProxy" runs but its route refuses.
    bench.targets["switchyard"] = compare.Target("switchyard", {"http": port}, proc=server)
    bench.targets["haproxy"] = compare.Target("haproxy", {"http": _refused_port()},
                                              proc=server)
    bench.targets["nginx"] = compare.Target("nginx", {"http": port})  # not running: skipped
    bench.targets["traefik"] = compare.Target("traefik", {"http": port}, proc=server,
                                              broken="exited with status 2 during bulk-1")
    bench.measure_idle(20, settle=0)
    assert bench.idle_connections == 20
    assert set(bench.idle_rss_kib) == {"switchyard"} and bench.idle_rss_kib["switchyard"] > 0
    assert set(bench.idle_failed) == {"haproxy"} and "refused" in bench.idle_failed["haproxy"]


def test_a_proxy_with_few_open_files_lowers_the_count_it_is_measured_with() -> None:
    limit = 200

    def few_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    sleeper = subprocess.Popen(["sleep", "30"], preexec_fn=few_files)  # noqa: PLW1509
    try:
        bench = compare.Bench(fleet=compare.Fleet(), root=Path("/nonexistent"))
        bench.targets["nginx"] = compare.Target("nginx", {"http": 1}, proc=sleeper)
        caps = bench.idle_caps(["nginx"])
        assert caps["nginx stream's open-file limit"] == (limit - compare.FD_MARGIN) // 2
        assert caps["nginx's worker_connections"] == (16384 - compare.FD_MARGIN) // 2
        assert "HAProxy's maxconn" not in caps  # HAProxy is not measured here
        count, note = compare.fit_idle_count(1000, caps)
        assert count == 68 and "nginx stream's open-file limit" in note
    finally:
        sleeper.terminate()
        sleeper.wait(10)
