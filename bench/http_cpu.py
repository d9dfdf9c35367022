"""Switchyard's CPU time per HTTP/1.1 request through an HTTP router, on a fixed request count.

Request rates swing with whatever else the machine runs; the CPU time a process spends on a
fixed amount of work swings much less. So this script runs Switchyard as ``switchyard run`` in
a process of its own, one HTTP router (``PathPrefix(`/`)``, no middlewares) on a plain and on a
TLS-terminating entry point, in front of the 100-byte nginx backend of
bench/configs/nginx-backend.conf, drives a fixed number of requests through it, and reads
Switchyard's utime and stime from /proc/<pid>/stat before and after. The figure is µs of CPU
per request, the median over ``--rounds`` runs (with the spread, and user/system apart).

Cases (``--cases``, comma-separated; all by default):

* ``keepalive``      plain HTTP/1.1, ``h2load --h1 -n N -c C``: C connections kept alive
* ``keepalive-tls``  the same over TLS (Switchyard terminates it)
* ``newconn``        a new connection per request: ``ab -n N/3 -c C`` (HTTP/1.0, no -k)
* ``newconn-tls``    the same over TLS, a full handshake each time (ab does not resume)
* ``keepalive-chain`` ``keepalive`` through the chain row's ``headers``, ``ipAllowList`` and
  ``rateLimit`` (bench/configs/dynamic-chain.yml; issue #12: at most 15% over ``keepalive``)
* ``tcp-newconn``    a TCP router (``HostSNI(`*`)`` behind an ``ipAllowList``, as the bench's
  plain route), a new connection per request (``ab``)
* ``tcp-keepalive``  the same router, keep-alive (``h2load --h1``): the relay's cost per
  request and response, with no accept or dial in it
* ``tcp-keepalive-term`` a TCP router that terminates TLS, keep-alive (``h2load --h1``)
* ``tcp-newconn-pass`` a TCP router passing TLS through to nginx's HTTPS port, a new connection
  (and a full handshake) per request (``ab``)
* ``tcp-keepalive-pass`` the same router, keep-alive: TLS records relayed as they come

``--baseline DIR`` runs a second Switchyard from another source tree (its ``src/``), e.g. a
``git worktree add /tmp/base HEAD~1``, behind the same backend, and measures both in turn each
round, so that a change is judged against its parent under the same load; a last line gives
this tree's figure over the baseline's. ``--haproxy`` adds HAProxy ``mode http`` on one thread
(X-Forwarded-For and -Proto, a shared backend pool, as in bench/configs/haproxy.cfg) measured
the same way, for a ratio to the reference of issue #11. Each measured run is preceded by a short warm-up run
that is not counted (pools, caches, first handshakes). ``--profile FILE`` then records the
first of the cases with py-spy into FILE (a flame graph for .svg, collapsed stacks for .txt,
speedscope otherwise). Needs nginx, h2load (nghttp2-client) and ab (apache2-utils) on PATH.

    python bench/http_cpu.py                        # every case, 5 rounds
    python bench/http_cpu.py --cases keepalive --requests 50000 --rounds 7
    python bench/http_cpu.py --baseline /tmp/base --cases keepalive,newconn
    python bench/http_cpu.py --haproxy --rounds 3
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from string import Template

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "bench" / "configs"
BODY = "x" * 100
CASES = ("keepalive", "keepalive-tls", "newconn", "newconn-tls", "keepalive-chain",
         "tcp-newconn", "tcp-keepalive", "tcp-keepalive-term", "tcp-newconn-pass",
         "tcp-keepalive-pass")
TICKS = os.sysconf("SC_CLK_TCK")


class _Placeholders(Template):
    delimiter = "@"  # nginx configs are full of `$`


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} is not listening on 127.0.0.1:{port}") from None
            time.sleep(0.1)


def _status(url: str) -> int:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except OSError:
        return 0


def _certificate(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime, stime) of the process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


class Processes:
    """Every process this script starts, stopped by ``close`` whatever happened."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], cwd: Path,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with (cwd / f"{Path(argv[0]).name}.log").open("wb") as out:
            proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def start_backend(processes: Processes, root: Path, cert: Path, key: Path) -> tuple[int, int]:
    """nginx answering 100 bytes; returns its plain HTTP port and its HTTPS port."""
    port, https_port = _free_port(), _free_port()
    web = root / "nginx"
    web.mkdir()
    conf = web / "nginx.conf"
    conf.write_text(_Placeholders((CONFIGS / "nginx-backend.conf").read_text()).substitute(
        dir=web, body=BODY, http_port=port, https_port=https_port, cert=cert, key=key))
    nginx = processes.start(["nginx", "-p", str(web), "-e", str(web / "error.log"),
                             "-c", str(conf)], web)
    _wait_listening(port, nginx, "nginx")
    return port, https_port


class Switchyard:
    """``switchyard run`` from one source tree: an entry point per case, one router each."""

    def __init__(self, processes: Processes, root: Path, src: Path, backends: tuple[int, int],
                 cert: Path, key: Path) -> None:
        root.mkdir()
        self.src = src
        backend_port, backend_https_port = backends
        self.plain_port, self.tls_port = _free_port(), _free_port()
        self.chain_port = _free_port()
        self.tcp_port, self.term_port, self.pass_port = _free_port(), _free_port(), _free_port()
        (root / "dynamic.yml").write_text(f"""\
tcp:
  routers:
    tcp-plain:
      entryPoints: [tcpplain]
      rule: "HostSNI(`*`)"
      middlewares: [tcp-loopback-only]
      service: tcp-backend
    tcp-term:
      entryPoints: [tcpterm]
      rule: "HostSNI(`localhost`)"
      service: tcp-backend
      tls: {{}}
    tcp-pass:
      entryPoints: [tcppass]
      rule: "HostSNI(`localhost`)"
      service: tcp-backend-tls
      tls:
        passthrough: true
  middlewares:
    tcp-loopback-only:
      ipAllowList:
        sourceRange: ["127.0.0.1/32"]
  services:
    tcp-backend:
      loadBalancer:
        servers: [{{address: "127.0.0.1:{backend_port}"}}]
    tcp-backend-tls:
      loadBalancer:
        servers: [{{address: "127.0.0.1:{backend_https_port}"}}]
http:
  routers:
    plain:
      entryPoints: [plain]
      rule: "PathPrefix(`/`)"
      service: backend
    chain:
      entryPoints: [chain]
      rule: "PathPrefix(`/`)"
      middlewares: [bench-header, loopback-only, never-limit]
      service: backend
    secure:
      entryPoints: [secure]
      rule: "PathPrefix(`/`)"
      service: backend
      tls: {{}}
  middlewares:
    bench-header:
      headers:
        customRequestHeaders:
          X-Bench: "chain"
    loopback-only:
      ipAllowList:
        sourceRange: ["127.0.0.1/32"]
    never-limit:
      rateLimit:
        average: 1000000
        burst: 1000000
  services:
    backend:
      loadBalancer:
        servers: [{{url: "http://127.0.0.1:{backend_port}"}}]
tls:
  certificates:
    - certFile: "{cert}"
      keyFile: "{key}"
""")
        (root / "static.yml").write_text(f"""\
entryPoints:
  plain:
    address: "127.0.0.1:{self.plain_port}"
  secure:
    address: "127.0.0.1:{self.tls_port}"
  chain:
    address: "127.0.0.1:{self.chain_port}"
  tcpplain:
    address: "127.0.0.1:{self.tcp_port}"
  tcpterm:
    address: "127.0.0.1:{self.term_port}"
  tcppass:
    address: "127.0.0.1:{self.pass_port}"
providers:
  file:
    filename: "{root / 'dynamic.yml'}"
log:
  level: ERROR
""")
        # This tree's Switchyard, whichever one is installed.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(src), *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.proc = processes.start(
            [sys.executable, "-m", "switchyard", "run", "-c", str(root / "static.yml")], root,
            env)
        _wait_listening(self.tcp_port, self.proc, f"switchyard from {src}")
        _wait_listening(self.pass_port, self.proc, f"switchyard from {src}")
        # The routers come with the file provider, a moment after the ports open.
        deadline = time.monotonic() + 30
        # (The TCP router's port: a tree from before the HTTP routers has that one too.)
        while _status(f"http://127.0.0.1:{self.tcp_port}/") != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"switchyard from {src} does not route to the backend")
            time.sleep(0.2)

    def url(self, case: str) -> str:
        if case.endswith("-tls"):
            return f"https://localhost:{self.tls_port}/"
        if case.endswith("-chain"):
            return f"http://127.0.0.1:{self.chain_port}/"
        if case in ("tcp-newconn", "tcp-keepalive"):
            return f"http://127.0.0.1:{self.tcp_port}/"
        if case == "tcp-keepalive-term":
            return f"https://localhost:{self.term_port}/"
        if case in ("tcp-newconn-pass", "tcp-keepalive-pass"):
            return f"https://localhost:{self.pass_port}/"
        return f"http://127.0.0.1:{self.plain_port}/"


class HAProxy:
    """HAProxy ``mode http`` on one thread, the same two listeners, for a reference figure."""

    def __init__(self, processes: Processes, root: Path, backends: tuple[int, int], cert: Path,
                 key: Path) -> None:
        root.mkdir()
        backend_port = backends[0]
        self.plain_port, self.tls_port = _free_port(), _free_port()
        bundle = root / "bundle.pem"
        bundle.write_bytes(cert.read_bytes() + key.read_bytes())
        conf = root / "haproxy.cfg"
        # As bench/configs/haproxy.cfg's HTTP rows: X-Forwarded-For and -Proto, a shared pool.
        conf.write_text(f"""\
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend plain
    bind 127.0.0.1:{self.plain_port}
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    default_backend pool
frontend secure
    bind 127.0.0.1:{self.tls_port} ssl crt {bundle} alpn http/1.1
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    default_backend pool
backend pool
    http-reuse always
    server backend 127.0.0.1:{backend_port}
""")
        self.proc = processes.start(["haproxy", "-db", "-f", str(conf)], root)
        _wait_listening(self.plain_port, self.proc, "haproxy")
        _wait_listening(self.tls_port, self.proc, "haproxy")

    def url(self, case: str) -> str:
        if case.endswith("-tls"):
            return f"https://localhost:{self.tls_port}/"
        return f"http://127.0.0.1:{self.plain_port}/"


def client_argv(case: str, url: str, requests: int, connections: int) -> list[str]:
    if "keepalive" in case:
        return ["h2load", "--h1", "-n", str(requests), "-c", str(connections), "-t", "1", url]
    # ab without -k: HTTP/1.0, one connection per request.
    return ["ab", "-q", "-r", "-n", str(requests), "-c", str(connections), url]


def _check(case: str, out: str, requests: int) -> None:
    """Raise unless every request got a 2xx (a fast error path would flatter the figure)."""
    if "keepalive" in case:
        found = re.search(r"^status codes: (\d+) 2xx", out, re.MULTILINE)
        ok = int(found.group(1)) if found else 0
    else:
        complete = re.search(r"^Complete requests:\s+(\d+)", out, re.MULTILINE)
        failed = re.search(r"^Failed requests:\s+(\d+)", out, re.MULTILINE)
        non_2xx = re.search(r"^Non-2xx responses:\s+(\d+)", out, re.MULTILINE)
        ok = int(complete.group(1)) if complete else 0
        ok -= int(failed.group(1)) if failed else 0
        ok -= int(non_2xx.group(1)) if non_2xx else 0
    if ok != requests:
        raise RuntimeError(f"{case}: {ok} of {requests} requests succeeded:\n{out[-800:]}")


def run_client(case: str, url: str, requests: int, connections: int) -> None:
    done = subprocess.run(client_argv(case, url, requests, connections), check=False,
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"{case}: client failed: {(done.stderr or done.stdout)[-800:]}")
    _check(case, done.stdout, requests)


def measure(target: Switchyard | HAProxy, case: str, requests: int,
            connections: int) -> tuple[float, float]:
    """µs of Switchyard CPU per request, user and system, for one run (after a warm-up)."""
    url = target.url(case)
    run_client(case, url, max(requests // 10, connections), connections)
    user, system = _cpu_seconds(target.proc.pid)
    run_client(case, url, requests, connections)
    user_after, system_after = _cpu_seconds(target.proc.pid)
    return (user_after - user) / requests * 1e6, (system_after - system) / requests * 1e6


def profile(target: Switchyard, case: str, output: Path, requests: int,
            connections: int) -> None:
    fmt = {".svg": [], ".txt": ["--format", "raw"]}.get(output.suffix,
                                                      ["--format", "speedscope"])
    recorder = subprocess.Popen(["py-spy", "record", "--native", "-r", "250", *fmt, "-o",
                                 str(output), "--pid", str(target.proc.pid)])
    time.sleep(1.0)
    try:
        run_client(case, target.url(case), requests, connections)
    finally:
        recorder.send_signal(2)  # SIGINT: py-spy writes what it has
        recorder.wait(60)


def _summary(runs: list[tuple[float, float]]) -> tuple[float, str]:
    totals = [user + system for user, system in runs]
    user = statistics.median(user for user, _ in runs)
    system = statistics.median(system for _, system in runs)
    median = statistics.median(totals)
    return median, (f"{median:7.1f} µs/request (min {min(totals):.1f}, max {max(totals):.1f}; "
                    f"user {user:.1f}, system {system:.1f})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--requests", type=int, default=30000,
                        help="requests per keep-alive run (new-connection runs do a third)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", type=Path,
                        help="a source tree to measure against, in turn, each round")
    parser.add_argument("--haproxy", action="store_true",
                        help="measure HAProxy (mode http, one thread) too, as a reference")
    parser.add_argument("--profile", type=Path, help="also py-spy the first case into this")
    args = parser.parse_args(argv)
    cases = [case.strip() for case in args.cases.split(",") if case.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    processes = Processes()
    with tempfile.TemporaryDirectory(prefix="http-cpu-") as tmp:
        root = Path(tmp)
        try:
            cert, key = _certificate(root)
            backend = start_backend(processes, root, cert, key)
            targets: dict[str, Switchyard | HAProxy] = {
                "this tree": Switchyard(processes, root / "this", REPO / "src", backend, cert,
                                        key)}
            if args.baseline:
                targets["baseline"] = Switchyard(processes, root / "baseline",
                                                 args.baseline.resolve() / "src", backend,
                                                 cert, key)
            if args.haproxy:
                targets["haproxy"] = HAProxy(processes, root / "haproxy", backend, cert, key)
            results: dict[tuple[str, str], list[tuple[float, float]]] = {
                (name, case): [] for name in targets for case in cases
                # HAProxy here is the HTTP-mode reference: it has no TCP-router cases.
                if not (name == "haproxy" and case.startswith("tcp-"))}
            for _ in range(args.rounds):
                for case in cases:  # interleaved, so drift in the machine hits every figure
                    count = args.requests if "keepalive" in case else args.requests // 3
                    for name, target in targets.items():
                        if (name, case) in results:
                            results[name, case].append(
                                measure(target, case, count, args.connections))
            if {"keepalive", "keepalive-chain"} <= set(cases):
                for name in targets:
                    if name != "haproxy":  # it serves the chain case without the chain
                        chain = statistics.median(u + s for u, s in results[name, "keepalive-chain"])
                        plain = statistics.median(u + s for u, s in results[name, "keepalive"])
                        print(f"{'chain / plain':14s} {name:9s} {chain / plain:7.3f}")
            for case in cases:
                medians = {}
                for name in targets:
                    if (name, case) not in results:
                        continue
                    medians[name], text = _summary(results[name, case])
                    print(f"{case:14s} {name:9s} {text}")
                for other in ("baseline", "haproxy"):
                    if other in medians:
                        print(f"{case:14s} {'/ ' + other:9s} "
                              f"{medians['this tree'] / medians[other]:7.3f}")
            if args.profile:
                case = cases[0]
                count = args.requests if "keepalive" in case else args.requests // 3
                this = targets["this tree"]
                assert isinstance(this, Switchyard)
                profile(this, case, args.profile, count * 2, args.connections)
        finally:
            processes.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
