"""bench/compare.py's pure parts: load-tool summaries, paired ratios, run order, the tables."""

from __future__ import annotations

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
