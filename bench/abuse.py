"""Abuse run: hostile clients beside legitimate ones against a real Switchyard on loopback.

Starts `switchyard whoami` backends and `switchyard run` (every port picked by the
kernel), then, while legitimate TLS clients keep measuring how long routing takes:

1. baseline     legitimate clients alone;
2. hostile      slow clients trickling a ClientHello one byte a second, and clients
                sending zero-length TLS records (16 03 01 00 00) forever, reconnecting
                whenever they are cut off;
3. burst        3,000 connects at once, beyond the listen backlog: how many needed a
                SYN retry (took 1 s or more);
4. reload storm checksummed echo streams while the dynamic file is rewritten and
                SIGHUP sent N times: bytes lost or corrupted.

Throughout, it samples the Switchyard process's RSS and CPU. Every process it starts
is stopped by its PID. Run on demand (not part of the suite):

    python bench/abuse.py                 # about two minutes
    python bench/abuse.py --quick         # a smaller run, about half a minute
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import hashlib
import json
import multiprocessing
import os
import queue
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
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LISTENING = re.compile(r'entryPoint "(\w+)" listening on .*:(\d+)')
WHOAMI_LISTENING = re.compile(r"whoami \S+ listening on .*:(\d+)")
EMPTY_RECORD = bytes.fromhex("1603010000")
LEGIT_SNI = "legit.example"
TICKS = os.sysconf("SC_CLK_TCK")


# -- processes, started and stopped by PID ------------------------------------------------


@dataclass
class Child:
    """A child process whose output is kept (and read, so it can never block on a pipe)."""

    name: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, name: str, argv: list[str], **env: str) -> Child:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, env=dict(os.environ, PYTHONUNBUFFERED="1", **env))
        child = cls(name, process)
        threading.Thread(target=child._drain, daemon=True).start()
        return child

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: re.Pattern[str], count: int, timeout: float = 20) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in map(pattern.search, list(self.lines)) if m]
            if len(found) >= count:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start:\n" + "\n".join(self.lines[-30:]))

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


# -- sampling the Switchyard process ------------------------------------------------------


@dataclass
class Sample:
    at: float
    phase: str
    rss_mib: float
    cpu_percent: float


class Sampler(threading.Thread):
    """RSS (VmRSS) and CPU (utime + stime) of one PID, every ``interval`` seconds."""

    def __init__(self, pid: int, phase: Callable[[], str], interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.phase, self.interval = pid, phase, interval
        self.samples: list[Sample] = []
        self.stopping = threading.Event()
        self.started_at = time.monotonic()

    def _read(self) -> tuple[float, int]:
        rss = 0.0
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return rss, int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)

    def run(self) -> None:
        last_ticks, last_at = self._read()[1], time.monotonic()
        while not self.stopping.wait(self.interval):
            try:
                rss, ticks = self._read()
            except (FileNotFoundError, ProcessLookupError):
                return
            now = time.monotonic()
            cpu = 100 * (ticks - last_ticks) / TICKS / (now - last_at)
            self.samples.append(Sample(now - self.started_at, self.phase(), rss, cpu))
            last_ticks, last_at = ticks, now


# -- legitimate clients -------------------------------------------------------------------


def client_hello(server_name: str) -> bytes:
    """The first flight of a real TLS client (Python's ssl), for a passthrough router."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class LegitClients:
    """Threads that connect, send a ClientHello and time the backend's first line, in a loop."""

    def __init__(self, port: int, threads: int, phase: Callable[[], str]) -> None:
        self.port, self.phase = port, phase
        self.hello = client_hello(LEGIT_SNI)
        self.results: list[tuple[str, float | str]] = []  # (phase, seconds or why it failed)
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(10)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            phase, started = self.phase(), time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
                    conn.sendall(self.hello)
                    if not conn.recv(64).startswith(b"Hostname: "):
                        raise OSError("no greeting")
                self.results.append((phase, time.monotonic() - started))
            except OSError as error:
                self.results.append((phase, str(error) or type(error).__name__))
            time.sleep(0.02)

    def summary(self, phase: str) -> str:
        found = [r for p, r in self.results if p == phase]
        times = sorted(r * 1000 for r in found if isinstance(r, float))
        failures = Counter(r for r in found if isinstance(r, str))
        failed = sum(failures.values())
        why = f" ({', '.join(f'{n} x {reason}' for reason, n in failures.most_common(3))})"
        if not times:
            return f"{len(found)} connections, all failed" + why
        return (f"{len(found)} connections, {failed} failed{why if failed else ''}; ms p50 "
                f"{percentile(times, 50):.1f}  p90 {percentile(times, 90):.1f}  p99 "
                f"{percentile(times, 99):.1f}  max {times[-1]:.1f}")


def percentile(ordered: list[float], pct: float) -> float:
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


# -- hostile clients (each kind in its own process, so they cannot starve the measuring) --


async def _zero_length_client(port: int, until: float, stats: dict[str, list[float]]) -> None:
    while time.monotonic() < until:
        started = time.monotonic()
        sent = 0
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        burst = EMPTY_RECORD * 200  # 1 KB at a time, forever
        try:
            while time.monotonic() < until:
                writer.write(burst)
                await writer.drain()
                sent += len(burst)
        except OSError:
            pass  # cut off: what we want to see
        finally:
            writer.close()
        stats["lifetimes"].append(time.monotonic() - started)
        stats["sent"].append(sent)


async def _slow_client(port: int, until: float, hello: bytes, interval: float,
                       stats: dict[str, list[float]]) -> None:
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        try:
            for byte in hello:
                if time.monotonic() >= until or reader.at_eof():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(1), interval) == b"":
                        break  # closed on us
                except TimeoutError:
                    pass
        except OSError:
            pass
        finally:
            writer.close()
        if time.monotonic() < until:
            stats["lifetimes"].append(time.monotonic() - started)


def attack(kind: str, port: int, clients: int, seconds: float, interval: float,
           results: multiprocessing.Queue[Any]) -> None:
    """Entry point of an attacker process: ``clients`` connections of ``kind`` for ``seconds``."""
    stats: dict[str, list[float]] = {"lifetimes": [], "sent": []}
    hello = client_hello("slow.example")

    async def main() -> None:
        until = time.monotonic() + seconds
        if kind == "zero-length":
            tasks = [_zero_length_client(port, until, stats) for _ in range(clients)]
        else:
            tasks = [_slow_client(port, until, hello, interval, stats) for _ in range(clients)]
        await asyncio.gather(*tasks)

    asyncio.run(main())
    results.put((kind, stats))


# -- connect burst ------------------------------------------------------------------------


def connect_burst(port: int, count: int) -> list[float | None]:
    """Start ``count`` non-blocking connects at once; each one's time to connected, or None."""
    selector = selectors.DefaultSelector()
    started: dict[socket.socket, float] = {}
    times: list[float | None] = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        started[sock] = time.monotonic()
        err = sock.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            times.append(None)
            sock.close()
            del started[sock]
            continue
        selector.register(sock, selectors.EVENT_WRITE)
    deadline = time.monotonic() + 30
    pending = set(started)
    while pending and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            selector.unregister(sock)
            pending.discard(sock)
            ok = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            times.append(time.monotonic() - started[sock] if ok else None)
    times.extend(None for _ in pending)
    time.sleep(0.5)  # let them be routed before they all close
    for sock in started:
        sock.close()
    selector.close()
    return times


# -- reload storm under checksummed streams -----------------------------------------------


@dataclass
class Stream:
    backend: str = ""
    sent: int = 0
    received: int = 0
    sent_digest: str = ""
    received_digest: str = ""
    error: str = ""
    seconds: float = 0.0


def checksummed_stream(port: int, stop: Any, mib_per_second: float, result: Stream) -> None:
    """Stream through the echo backend until ``stop``; hash what goes out and what comes back.

    The stream is closed only once everything came back. A half-close after the last byte
    would be Traefik's terminationDelay test instead (100 ms by default for the echo still
    in flight to arrive), and count as lost what that deadline cuts off by design.
    """
    block = os.urandom(1 << 16)
    started = time.monotonic()
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    except OSError as error:
        result.error = f"connect: {error}"
        return
    greeting = b""
    while greeting.count(b"\n") < 2:  # whoami's two lines, then it echoes
        chunk = conn.recv(1)
        if not chunk:
            result.error = "closed before the greeting"
            return
        greeting += chunk
    result.backend = greeting.split(b"\n")[0].decode(errors="replace").removeprefix("Hostname: ")
    done_sending = threading.Event()

    def writer() -> None:
        digest = hashlib.sha256()
        index = 0
        began = time.monotonic()
        try:
            while not stop.is_set():
                chunk = index.to_bytes(8, "big") + block[8:]  # no two chunks alike
                conn.sendall(chunk)
                digest.update(chunk)
                result.sent += len(chunk)
                index += 1
                # Paced, so the streams load the proxy without taking both cores.
                ahead = result.sent / (mib_per_second * 2**20) - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
        except OSError as error:
            result.error = f"send: {error}"
        result.sent_digest = digest.hexdigest()
        done_sending.set()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    digest = hashlib.sha256()
    conn.settimeout(0.2)  # short, to notice the writer is done while nothing is in flight
    last_byte = time.monotonic()
    try:
        while not (done_sending.is_set() and result.received >= result.sent):
            try:
                data = conn.recv(1 << 16)
            except TimeoutError:
                if time.monotonic() - last_byte > 30:
                    result.error = result.error or "30 s without a byte back"
                    break
                continue
            if not data:
                result.error = result.error or "closed early"
                break
            last_byte = time.monotonic()
            digest.update(data)
            result.received += len(data)
    except OSError as error:
        result.error = result.error or f"recv: {error}"
    thread.join(60)
    result.received_digest = digest.hexdigest()
    result.seconds = time.monotonic() - started
    conn.close()


def stream_worker(port: int, count: int, mib_per_second: float, stop: Any,
                  results: Any) -> None:
    """Entry point of the streams' process: ``count`` checksummed streams until ``stop``."""
    streams = [Stream() for _ in range(count)]
    threads = [threading.Thread(target=checksummed_stream,
                                args=(port, stop, mib_per_second, stream), daemon=True)
               for stream in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    results.put(streams)


def dynamic_config(app: list[int], generation: int) -> str:
    servers = ", ".join(f'{{address: "127.0.0.1:{port}"}}' for port in app)
    return f"""# generation {generation}
tcp:
  routers:
    legit:
      entryPoints: [tls]
      rule: "HostSNI(`{LEGIT_SNI}`)"
      service: app
      tls: {{passthrough: true}}
    streams:
      entryPoints: [plain]
      rule: "HostSNI(`*`)"
      service: app
    storm-{generation}:
      entryPoints: [tls]
      rule: "HostSNI(`storm-{generation}.example`)"
      service: app
      tls: {{passthrough: true}}
  services:
    app:
      loadBalancer:
        servers: [{servers}]
"""


# -- the run ------------------------------------------------------------------------------


def describe(samples: list[Sample], phase: str) -> str:
    found = [s for s in samples if s.phase == phase]
    if not found:
        return "no samples"
    cpu = [s.cpu_percent for s in found]
    return (f"RSS MiB start {found[0].rss_mib:.0f}  max {max(s.rss_mib for s in found):.0f}  "
            f"end {found[-1].rss_mib:.0f};  CPU % mean {statistics.mean(cpu):.0f}  "
            f"max {max(cpu):.0f}")


def lifetimes(values: list[float]) -> str:
    if not values:
        return "none ended"
    ordered = sorted(values)
    return (f"{len(ordered)} connections; lived s p50 {percentile(ordered, 50):.3f}  "
            f"max {ordered[-1]:.3f}")


PHASES = ("baseline", "hostile", "burst", "reload-storm")


@dataclass
class Run:
    """One Switchyard under abuse: its ports, its backends, and what each phase found."""

    args: argparse.Namespace
    pid: int
    ports: dict[str, int]
    backends: list[int]
    dynamic: Path
    phase: list[str]
    attackers: list[Any]  # multiprocessing's spawned Process objects, stopped by PID
    report: list[str] = field(default_factory=list)

    def baseline(self) -> None:
        time.sleep(5)

    def hostile(self) -> None:
        args = self.args
        # Spawned, not forked: this process runs threads.
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        for kind, count in (("zero-length", args.zero_length_clients),
                            ("slow", args.slow_clients)):
            process = context.Process(target=attack, args=(
                kind, self.ports["tls"], count, args.hostile_seconds, 1.0, results), daemon=True)
            process.start()
            self.attackers.append(process)
        found: dict[str, dict[str, list[float]]] = {}
        deadline = time.monotonic() + args.hostile_seconds + 30
        while len(found) < 2 and time.monotonic() < deadline:
            try:
                kind, stats = results.get(timeout=1)
                found[kind] = stats
            except queue.Empty:
                pass
        self.phase[0] = "after-hostile"
        time.sleep(3)  # does memory come back?
        zero = found.get("zero-length", {"lifetimes": [], "sent": []})
        slow = found.get("slow", {"lifetimes": [], "sent": []})
        self.report += [
            "== hostile clients",
            (f"zero-length records: {args.zero_length_clients} clients, "
            f"{lifetimes(zero['lifetimes'])}; bytes sent per connection before the cut: max "
            f"{max(zero['sent'], default=0):,.0f}, all together {sum(zero['sent']):,.0f}"),
            f"slow ClientHello:    {args.slow_clients} clients, {lifetimes(slow['lifetimes'])}",
        ]

    def burst(self) -> None:
        times = connect_burst(self.ports["plain"], self.args.burst)
        time.sleep(2)
        done = sorted(t for t in times if t is not None)
        line = f"{len(times)} connects: {len(done)} connected, {len(times) - len(done)} failed"
        if done:
            line += (f"; {sum(t >= 1.0 for t in done)} took >= 1 s (SYN retry); ms p50 "
                     f"{percentile(done, 50) * 1000:.1f}  p99 {percentile(done, 99) * 1000:.1f}"
                     f"  max {done[-1] * 1000:.1f}")
        self.report += ["== connect burst", line]

    def reload_storm(self) -> None:
        args = self.args
        context = multiprocessing.get_context("spawn")
        stop, results = context.Event(), context.Queue()
        worker = context.Process(target=stream_worker, args=(
            self.ports["plain"], args.streams, args.stream_mibps, stop, results), daemon=True)
        worker.start()
        self.attackers.append(worker)  # stopped by PID with them if anything goes wrong
        time.sleep(1)  # every stream connected before the first reload
        started = time.monotonic()
        for generation in range(1, args.reloads + 1):
            # In place, as many tools write: the watcher may read it half written.
            self.dynamic.write_text(dynamic_config(self.backends[: 1 + generation % 2],
                                                   generation))
            os.kill(self.pid, signal.SIGHUP)
            time.sleep(0.1)
        seconds = time.monotonic() - started
        stop.set()  # the streams ran through the whole storm
        streams: list[Stream] = results.get(timeout=180)
        worker.join(10)
        url = f"http://127.0.0.1:{self.ports['traefik']}/api/overview"
        with urllib.request.urlopen(url, timeout=5) as response:
            config = json.load(response)["switchyard"]["config"]
        sent = sum(s.sent for s in streams)
        received = sum(s.received for s in streams)
        bad = [s for s in streams if s.error or s.sent_digest != s.received_digest]
        self.report += [
            "== reload storm",
            (f"{args.reloads} rewrites + SIGHUP in {seconds:.1f} s; API: reloads "
            f"{config['reloads']}, reloadFailures {config['reloadFailures']}, providerErrors "
            f"{config['providerErrors'] or 'none'}"),
            (f"{args.streams} streams over {max(s.seconds for s in streams):.1f} s: sent "
             f"{sent / 2**20:,.1f} MiB, echoed "
            f"{received / 2**20:,.1f} MiB, lost {sent - received:,} bytes, "
            f"{len(bad)} streams short or altered"),
            *(f"  via {s.backend}: sent {s.sent:,}, echoed {s.received:,}"
              + (f", {s.error}" if s.error else "")
              + ("" if s.sent_digest == s.received_digest else ", checksums differ")
              for s in bad),
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller numbers, ~30 s")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"which to run, comma separated: {', '.join(PHASES)}")
    parser.add_argument("--read-timeout", default="10s", help="entryPoints.*.readTimeout")
    parser.add_argument("--backend-loop", choices=["asyncio", "uvloop"], default="asyncio",
                        help="event loop of the whoami backends (Switchyard's own is uvloop)")
    parser.add_argument("--slow-clients", type=int, default=400)
    parser.add_argument("--zero-length-clients", type=int, default=2)
    parser.add_argument("--legit-threads", type=int, default=4)
    parser.add_argument("--hostile-seconds", type=float, default=30)
    parser.add_argument("--burst", type=int, default=3000)
    parser.add_argument("--reloads", type=int, default=100)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--stream-mibps", type=float, default=16,
                        help="pace of each checksummed stream, MiB/s each way")
    args = parser.parse_args()
    if args.quick:
        args.slow_clients, args.hostile_seconds, args.reloads = 100, 12, 30
        args.read_timeout = "5s"
    phases = [name.strip() for name in args.phases.split(",") if name.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}: choose from {', '.join(PHASES)}")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the burst holds 3,000 sockets
    work = Path(tempfile.mkdtemp(prefix="switchyard-abuse-"))
    children: list[Child] = []
    attackers: list[Any] = []
    phase = ["start"]
    try:
        backends = []
        for name in ("app-1", "app-2"):
            children.append(Child.start(name, [sys.executable, "-m", "switchyard", "whoami",
                                               "--port", "0", "--name", name],
                                        SWITCHYARD_LOOP=args.backend_loop))
            backends.append(int(children[-1].wait_for(WHOAMI_LISTENING, 1)[0].group(1)))
        dynamic = work / "dynamic.yml"
        dynamic.write_text(dynamic_config(backends[:1], 0))
        static = work / "traefik.yml"
        static.write_text(json.dumps({
            "entryPoints": {
                "tls": {"address": "127.0.0.1:0", "transport": {
                    "respondingTimeouts": {"readTimeout": args.read_timeout}}},
                "plain": {"address": "127.0.0.1:0"},
                "traefik": {"address": "127.0.0.1:0"},
            },
            "api": {"insecure": True},
            "providers": {"providersThrottleDuration": "50ms",
                          "file": {"filename": str(dynamic)}},
            "log": {"level": "INFO"},  # the "listening on" lines tell the ports
        }))
        router = Child.start("switchyard", [sys.executable, "-m", "switchyard", "run", "-c",
                                            str(static)])
        children.append(router)
        ports = {m.group(1): int(m.group(2)) for m in router.wait_for(LISTENING, 3)}
        pid = router.process.pid
        print(f"switchyard pid {pid}, entry points {ports}, backends {backends}, readTimeout "
              f"{args.read_timeout}, somaxconn "
              f"{Path('/proc/sys/net/core/somaxconn').read_text().strip()}", flush=True)
        run = Run(args, pid, ports, backends, dynamic, phase, attackers)
        sampler = Sampler(pid, lambda: phase[0])
        sampler.start()
        legit = LegitClients(ports["tls"], args.legit_threads, lambda: phase[0])
        legit.start()
        for name in phases:
            phase[0] = name
            getattr(run, name.replace("-", "_"))()
        phase[0] = "end"
        legit.stop()
        sampler.stopping.set()
        sampler.join(5)

        print("\n== Switchyard process over time (every 2 s)")
        print(f"{'t s':>6}  {'phase':<14}{'RSS MiB':>8}{'CPU %':>7}")
        for sample in sampler.samples[::4]:
            print(f"{sample.at:6.1f}  {sample.phase:<14}{sample.rss_mib:8.1f}"
                  f"{sample.cpu_percent:7.0f}")
        print("\n== per phase: the Switchyard process, and legitimate TLS clients beside it")
        shown = [part for name in phases
                 for part in ((name, "after-hostile") if name == "hostile" else (name,))]
        for name in shown:
            print(f"{name:<14} {describe(sampler.samples, name)}")
            print(f"{'':<14} legitimate: {legit.summary(name)}")
        for line in run.report:
            print(("\n" if line.startswith("==") else "") + line)
        print("\n== processes")
        for child in children:
            state = ("running" if child.process.poll() is None
                     else f"exited with {child.process.returncode}")
            print(f"{child.name} (pid {child.process.pid}): {state}")
            if child.process.poll() is not None:
                print("\n".join(f"  {line}" for line in child.lines[-10:]))
        # What Switchyard complained about, most frequent first, addresses left out.
        complaints = Counter(re.sub(r"[\d.:\[\]]{6,}", "<address>", line.split(" ", 2)[-1])
                             for line in router.lines
                             if re.search(r"\b(WARNING|WARN|ERROR|CRITICAL)\b", line))
        print(f"switchyard log: {sum(complaints.values())} warnings and errors")
        for line, count in complaints.most_common(8):
            print(f"  {count:6} x {line[:160]}")
    finally:
        phase[0] = "end"
        for process in attackers:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
            process.join(10)
        for child in reversed(children):
            child.stop()
        shutil.rmtree(work, ignore_errors=True)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


if __name__ == "__main__":
    main()
