"""Switchyard against HAProxy, nginx `stream` and no proxy at all, on loopback, same run.

Starts its own backends (nginx: a 100-byte body over HTTP and HTTPS; iperf3) and
proxies (HAProxy 2.6 `mode tcp`, nginx `stream`, Switchyard), each in a temp dir
and in the foreground, then runs every workload through every path, alternating
the proxies within each repetition, and reports medians: throughput, latency,
and the proxy's own CPU time and peak RSS. The tables go to stdout and into
docs/performance.md between marker comments. Configs: bench/configs/.

    python bench/compare.py [--quick] [--reps N] [--seconds S] [--only WORKLOAD]

Installs haproxy, nginx, its stream module, iperf3 and wrk with apt-get when
missing (as root). Traffic stays on 127.0.0.1; every run has a fixed duration.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import datetime
import importlib.metadata
import json
import os
import platform
import re
import resource
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

APT_PACKAGES = ("haproxy", "nginx", "libnginx-mod-stream", "iperf3", "wrk")
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
BODY = "x" * 100
# wrk takes the SNI from the URL's host; `localhost` is the one name that resolves to
# 127.0.0.1 through glibc without touching /etc/hosts (`*.localhost` does not).
SNI_HOST = "localhost"
CONNECTIONS = 50

PROXIES = ("haproxy", "nginx", "switchyard")
SWITCHYARD_WORKERS = 1  # --switchyard-workers
TARGETS = ("direct", *PROXIES)
LABELS = {"direct": "direct", "haproxy": "HAProxy", "nginx": "nginx stream",
          "switchyard": "Switchyard"}


class Placeholders(Template):
    """`@{name}`: nginx configs are full of `$`, and none of the configs uses `@`."""

    delimiter = "@"


@dataclass(frozen=True)
class Workload:
    """One row of the tables: which load, through which listener of each path."""

    key: str
    title: str
    route: str  # which listener of a path it uses: bulk, http, sni or termination
    streams: int = 0  # iperf3 parallel streams; 0 for HTTP workloads
    close: bool = False  # `Connection: close`: one new connection per request

    @property
    def is_bulk(self) -> bool:
        return self.streams > 0

    @property
    def is_termination(self) -> bool:
        return self.route == "termination"

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
)


@dataclass
class Run:
    """One workload through one path for a fixed time."""

    rate: float  # Gbit/s for bulk, requests/s otherwise
    work: float  # GB moved (bulk) or requests served: what CPU time is divided by
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0  # wrk socket errors plus non-2xx responses
    cpu_seconds: float | None = None  # the proxy's user + system time during the run
    peak_rss_mb: float | None = None


@dataclass
class Target:
    """One way to reach the backends: their own ports (direct) or a proxy's listeners."""

    name: str
    ports: dict[str, int]
    proc: subprocess.Popen[bytes] | None = None  # the proxy; None for direct
    broken: str = ""  # why this path is skipped from now on


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


def switchyard_env() -> dict[str, str]:
    # This checkout's Switchyard, even where another checkout is the installed one.
    paths = [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
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

    def stop(self) -> tuple[float, float]:
        cpu = (self._ticks() - self.start_ticks) / self.ticks_per_second
        peak = 0.0
        for pid in self._pids():
            status = Path(f"/proc/{pid}/status").read_text()
            found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
            peak += int(found.group(1)) / 1024 if found else float("nan")
        return cpu, peak


# --- setup -------------------------------------------------------------------------------


def ensure_tools() -> None:
    """Install the Debian packages the benchmark drives, once, when any is missing."""
    missing = [tool for tool in ("haproxy", "nginx", "iperf3", "wrk") if not shutil.which(tool)]
    if not STREAM_MODULE.exists():
        missing.append(str(STREAM_MODULE))
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"missing {', '.join(missing)}: run as root, or apt-get install "
                 + " ".join(APT_PACKAGES))
    print(f"installing {' '.join(APT_PACKAGES)} (missing: {', '.join(missing)})", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    # Debian starts nginx and haproxy as system daemons on install unless policy-rc.d says
    # no; we never use those, and must not leave them running, so say no while installing.
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        subprocess.run(["apt-get", "install", "-y", "-qq", *APT_PACKAGES], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    finally:
        if ours:
            policy.unlink()


def ensure_switchyard() -> None:
    try:
        importlib.metadata.version("switchyard")
    except importlib.metadata.PackageNotFoundError:
        print("installing Switchyard from this checkout (pip install -e .)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", str(REPO)], check=True)


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


@dataclass
class Bench:
    """The backends, the proxies in front of them, and where each one listens."""

    fleet: Fleet
    root: Path
    targets: dict[str, Target] = field(default_factory=dict)
    termination: bool = False
    termination_note: str = ""

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
        self.targets["direct"] = Target("direct", {
            "bulk": backend["iperf3_port"], "http": backend["backend_http_port"],
            "sni": backend["backend_https_port"], "termination": backend["backend_https_port"]})
        return backend

    def start_proxies(self, backend: dict[str, int], pki: dict[str, Path]) -> None:
        for name in PROXIES:
            ports = {"bulk": free_port(), "http": free_port(), "sni": free_port(),
                     "termination": free_port()}
            values = {**backend, "bulk_port": ports["bulk"], "http_port": ports["http"],
                      "sni_port": ports["sni"], "term_port": ports["termination"],
                      "cert": pki["cert"], "key": pki["key"], "cert_bundle": pki["bundle"]}
            directory = self.workdir(name)
            target = self.targets[name] = Target(name, ports)
            configure = {"haproxy": self._haproxy_argv, "nginx": self._nginx_argv,
                         "switchyard": self._switchyard_argv}[name]
            try:
                argv = configure(directory, values)
                env = switchyard_env() if name == "switchyard" else None
                target.proc = self.fleet.start(name, argv, directory, env=env)
                # Switchyard listens on its termination entry point even with no router there.
                wait_listening(ports.values(), target.proc, name)
            except RuntimeError as exc:
                # The others are still worth measuring, e.g. while Switchyard is mid-change.
                target.broken = f"did not start: {exc}"
                print(f"{name} {target.broken}\n{self.fleet.output(name)}", file=sys.stderr)

    def _haproxy_argv(self, directory: Path, values: dict[str, object]) -> list[str]:
        conf = render("haproxy.cfg", directory / "haproxy.cfg", **values)
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(conf)], check=False,
                               capture_output=True, text=True)
        if check.returncode:
            raise RuntimeError(f"haproxy -c rejected the config:\n{check.stdout}{check.stderr}")
        return ["haproxy", "-db", "-f", str(conf)]  # -db: foreground, no daemon

    def _nginx_argv(self, directory: Path, values: dict[str, object]) -> list[str]:
        conf = render("nginx-stream.conf", directory / "nginx.conf", dir=directory,
                      stream_module=STREAM_MODULE, **values)
        return ["nginx", "-p", str(directory), "-e", str(directory / "error.log"),
                "-c", str(conf)]

    def _switchyard_argv(self, directory: Path, values: dict[str, object]) -> list[str]:
        conf_dir = directory / "conf.d"
        conf_dir.mkdir()
        static = render("switchyard.yml", directory / "traefik.yml", conf_dir=conf_dir, **values)
        render("switchyard-routes.yml", conf_dir / "routes.yml", **values)
        command = [sys.executable, "-m", "switchyard"]
        env = switchyard_env()
        # Termination is offered only if `switchyard check` accepts a router with `tls: {}`.
        termination = render("switchyard-termination.yml", conf_dir / "termination.yml",
                             **values)
        check = subprocess.run([*command, "check", "-c", str(static)], check=False,
                               capture_output=True, text=True, env=env)
        self.termination = check.returncode == 0
        if not self.termination:
            termination.unlink()
            # Only the router's own message: the file and line before it name a temp dir.
            reason = re.search(r'router "termination@file".*', check.stdout)
            self.termination_note = reason.group(0) if reason else check.stdout.strip()
            plain = subprocess.run([*command, "check", "-c", str(static)], check=False,
                                   capture_output=True, text=True, env=env)
            if plain.returncode:
                raise RuntimeError("switchyard check rejected the benchmark config:\n"
                                   + plain.stdout + plain.stderr)
        return [*command, "run", "-c", str(static), f"--workers={SWITCHYARD_WORKERS}"]

    def smoke_test(self) -> None:
        """One request through each route of each path, so a broken route fails fast."""
        routes = ["http", "sni"] + (["termination"] if self.termination else [])
        for target in self.targets.values():
            for route in routes:
                if target.broken:
                    break
                try:
                    fetch(target.ports[route], tls=route != "http")
                except (OSError, RuntimeError) as exc:
                    target.broken = f"{route} route: {exc}"
                    print(f"{LABELS[target.name]} is broken, skipped: {target.broken}",
                          file=sys.stderr)


def fetch(port: int, tls: bool) -> None:
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
        raise ValueError(f"wrk latency {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def run_wrk(port: int, tls: bool, close: bool, seconds: int) -> Run:
    url = f"https://{SNI_HOST}:{port}/" if tls else f"http://127.0.0.1:{port}/"
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", url]
    if close:
        argv[1:1] = ["-H", "Connection: close"]
    done = subprocess.run(argv, check=False, capture_output=True, text=True,
                          timeout=seconds + 30, preexec_fn=_die_with_parent)
    out = done.stdout
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.MULTILINE)
    total = re.search(r"(\d+) requests in", out)
    if done.returncode or not rate or not total:
        raise RuntimeError(f"wrk failed: {(done.stderr or out).strip()[-300:]}")
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.MULTILINE))
    if len(percentiles) != 2:
        raise RuntimeError(f"no latency distribution in wrk's output: {out[-300:]}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Run(rate=float(rate.group(1)), work=float(total.group(1)),
               p50_ms=_duration_ms(percentiles["50"]), p99_ms=_duration_ms(percentiles["99"]),
               errors=errors + (int(non_2xx.group(1)) if non_2xx else 0))


def measure(workload: Workload, target: Target, seconds: int) -> Run:
    port = target.ports[workload.route]
    meter = ProcessMeter(target.proc.pid) if target.proc else None
    if meter:
        meter.start()
    if workload.is_bulk:
        run = run_iperf3(port, workload.streams, seconds)
    else:
        run = run_wrk(port, tls=workload.route != "http", close=workload.close, seconds=seconds)
    if meter:
        run.cpu_seconds, run.peak_rss_mb = meter.stop()
    return run


# --- report ------------------------------------------------------------------------------


Results = dict[tuple[str, str], list[Run]]


def median_of(runs: Sequence[Run], value: Callable[[Run], float | None]) -> float | None:
    values = [v for v in map(value, runs) if v is not None]
    return statistics.median(values) if values else None


def format_rate(workload: Workload, rate: float | None) -> str:
    if rate is None:
        return "–"
    if workload.is_bulk:
        return f"{rate:.2f}"
    return f"{rate / 1000:.1f}k" if rate >= 1000 else f"{rate:.0f}"


def format_ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return "–"
    return f"{numerator / denominator:.2f}"


def cpu_per_work(runs: Sequence[Run]) -> float | None:
    """Median CPU per unit of work: seconds per GB (bulk) or seconds per request."""
    return median_of(runs, lambda r: r.cpu_seconds / r.work
                     if r.cpu_seconds is not None and r.work else None)


def format_cpu(workload: Workload, per_work: float | None) -> str:
    if per_work is None:
        return "–"
    return f"{per_work:.2f} s/GB" if workload.is_bulk else f"{per_work * 1e6:.0f} µs/req"


def _row(title: str, cells: Iterable[str]) -> str:
    return f"| {title} | " + " | ".join(cells) + " |"


def _header(first: str, columns: Sequence[str]) -> list[str]:
    return [_row(first, columns), "|---|" + "---|" * len(columns)]


def tables(results: Results, workloads: Sequence[Workload], bench: Bench) -> str:
    """Throughput, proxy cost and latency tables, then notes on anything missing."""

    def runs(workload: Workload, target: str) -> list[Run]:
        return results.get((workload.key, target), [])

    measured = [w for w in workloads if bench.termination or not w.is_termination]

    lines = _header("workload", [*(LABELS[t] for t in TARGETS), "Switchyard/HAProxy"])
    for workload in workloads:
        if workload not in measured:
            lines.append(_row(workload.title, ["n/a"] * (len(TARGETS) + 1)))
            continue
        rates = {t: median_of(runs(workload, t), lambda r: r.rate) for t in TARGETS}
        # A dagger marks cells whose runs had socket errors or non-2xx responses.
        cells = [format_rate(workload, rates[t])
                 + ("†" if any(r.errors for r in runs(workload, t)) else "") for t in TARGETS]
        lines.append(_row(workload.title,
                          [*cells, format_ratio(rates["switchyard"], rates["haproxy"])]))

    lines += ["", ("Proxy CPU per unit of work (user + system time of the proxy process, per GB "
                   "moved on bulk rows, per request otherwise) and peak RSS:"), ""]
    lines += _header("workload", [*(LABELS[t] for t in PROXIES), "Switchyard/HAProxy CPU"])
    for workload in measured:
        cpu = {t: cpu_per_work(runs(workload, t)) for t in PROXIES}
        rss = {t: median_of(runs(workload, t), lambda r: r.peak_rss_mb) for t in PROXIES}
        cells = [format_cpu(workload, cpu[t]) + (f", {rss[t]:.0f} MB" if rss[t] else "")
                 for t in PROXIES]
        lines.append(_row(workload.short_title,
                          [*cells, format_ratio(cpu["switchyard"], cpu["haproxy"])]))

    if latency_rows := [w for w in measured if not w.is_bulk]:
        lines += ["", f"Latency, p50 / p99 in ms (wrk --latency, {CONNECTIONS} connections):", ""]
        lines += _header("workload", [LABELS[t] for t in TARGETS])
        for workload in latency_rows:
            cells = []
            for name in TARGETS:
                p50 = median_of(runs(workload, name), lambda r: r.p50_ms)
                p99 = median_of(runs(workload, name), lambda r: r.p99_ms)
                cells.append("–" if p50 is None or p99 is None else f"{p50:.2f} / {p99:.2f}")
            lines.append(_row(workload.short_title, cells))

    notes = []
    if any(r.errors for rs in results.values() for r in rs):
        notes.append("† some runs had wrk socket errors or non-2xx responses "
                     "(see the JSON in bench/results/).")
    if len(measured) < len(workloads):
        notes.append(f"TLS termination: n/a, Switchyard does not terminate TLS "
                     f"(`switchyard check`: {bench.termination_note.strip()}).")
    notes += [f"{LABELS[t.name]}: {t.broken}" for t in bench.targets.values() if t.broken]
    return "\n".join(lines + ([""] + notes if notes else []))


def _first_line(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
    except OSError:
        return "not installed"
    return (done.stdout or done.stderr).strip().splitlines()[0]


def machine_description() -> str:
    meminfo = Path("/proc/meminfo").read_text()
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))  # type: ignore[union-attr]
    cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    try:
        uvloop = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop = "not installed (asyncio loop)"
    wrk = re.search(r"wrk \S+ \S+", _first_line(["wrk", "-v"]))
    return "\n".join([
        f"* machine: {len(os.sched_getaffinity(0))} CPUs"
        + (f" ({cpu.group(1).strip()})" if cpu else "")
        + f", {mem_kb / 1024 / 1024:.1f} GiB memory, Linux {platform.release()}",
        f"* {_first_line(['haproxy', '-v']).split(' - ')[0]}",
        f"* {_first_line(['nginx', '-v']).replace('nginx version: ', '')}",
        (f"* Python {platform.python_version()}, uvloop {uvloop}, "
         f"Switchyard {importlib.metadata.version('switchyard')}"
         + (f" with --workers {SWITCHYARD_WORKERS}" if SWITCHYARD_WORKERS > 1 else "")),
        (f"* {_first_line(['iperf3', '--version'])}; {wrk.group(0) if wrk else 'wrk'}; "
         f"{_first_line(['openssl', 'version'])}"),
    ])


def save_raw(results: Results, args: argparse.Namespace) -> Path:
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
    target.write_text(json.dumps({
        "reps": args.reps, "seconds": args.seconds,
        "runs": [{"workload": w, "path": p, **asdict(run)}
                 for (w, p), runs in results.items() for run in runs],
    }, indent=1))
    return target


# --- main --------------------------------------------------------------------------------


def benchmark(bench: Bench, workloads: Sequence[Workload], reps: int, seconds: int,
              settle: float) -> Results:
    results: Results = {}
    for rep in range(reps):
        for workload in workloads:
            if workload.is_termination and not bench.termination:
                continue
            # A different proxy goes first each repetition, so none always gets a cold start.
            order = list(PROXIES[rep % len(PROXIES):] + PROXIES[:rep % len(PROXIES)])
            for name in ["direct", *order]:
                target = bench.targets[name]
                if target.broken:
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
                results.setdefault((workload.key, name), []).append(run)
                detail = f"p99 {run.p99_ms:.2f} ms" if run.p99_ms is not None else ""
                if run.cpu_seconds is not None:
                    detail += f" cpu {run.cpu_seconds:.2f} s"
                print(f"  [{rep + 1}/{reps}] {workload.key:<18} {name:<10} "
                      f"{format_rate(workload, run.rate):>8} {detail}"
                      + (f" errors {run.errors}" if run.errors else ""), file=sys.stderr)
    return results


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switchyard-workers", type=int, default=1,
                        help="run Switchyard with --workers N (one event loop per process; "
                        "the targets are for one)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 repetition of 3-second runs (not for quoting)")
    parser.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --quick)")
    parser.add_argument("--seconds", type=int, help="seconds per run (default 8; 3 with --quick)")
    parser.add_argument("--only", action="append", choices=[w.key for w in WORKLOADS],
                        metavar="WORKLOAD", help="run only this workload (repeatable): "
                        + ", ".join(w.key for w in WORKLOADS))
    args = parser.parse_args()
    global SWITCHYARD_WORKERS
    SWITCHYARD_WORKERS = max(1, args.switchyard_workers)
    args.reps = args.reps or (1 if args.quick else 3)
    args.seconds = args.seconds or (3 if args.quick else 8)
    if args.reps < 1 or args.seconds < 1:
        parser.error("--reps and --seconds must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    workloads = [w for w in WORKLOADS if not args.only or w.key in args.only]
    ensure_tools()
    ensure_switchyard()
    # Every proxy holds two sockets per connection; the inherited limit must allow that.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    settle = 0.5 if args.quick else 1.0
    fleet = Fleet()
    root = Path(tempfile.mkdtemp(prefix="switchyard-compare-"))
    try:
        bench = Bench(fleet, root)
        pki = make_certificate(bench.workdir("pki"))
        backend = bench.start_backends(pki)
        bench.start_proxies(backend, pki)
        bench.smoke_test()
        measured = [w for w in workloads if bench.termination or not w.is_termination]
        minutes = args.reps * len(measured) * len(TARGETS) * (args.seconds + settle + 1) / 60
        print(f"{len(measured)} workloads x {len(TARGETS)} paths x {args.reps} repetitions "
              f"of {args.seconds} s: about {minutes:.0f} minutes", file=sys.stderr)
        results = benchmark(bench, workloads, args.reps, args.seconds, settle)
    finally:
        fleet.stop_all()
        shutil.rmtree(root, ignore_errors=True)

    report = tables(results, workloads, bench)
    print(report)
    raw = save_raw(results, args)
    print(f"\nraw runs: {raw.relative_to(REPO)}", file=sys.stderr)
    if args.only:
        print("--only given: docs/performance.md left as it is", file=sys.stderr)
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
