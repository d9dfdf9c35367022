"""100 MB bodies through the HTTP engine both ways, intact and without growing memory."""

from __future__ import annotations

import hashlib
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchyard.http.balancer import BalancedServer, LoadBalancer
from switchyard.http.proxy import ReverseProxy, parse_server_url
from tests.harness import LoopThread
from tests.httpkit import BLOCK, Engine, H11Backend, block_digest

SIZE = 100 * 1024 * 1024
# The engine's own buffers are bounded by high-water marks (64 KiB per side plus one read);
# the rest is allocator noise, h11's buffers in the test backend and curl's pipes.
RSS_GROWTH_LIMIT = 16 * 1024 * 1024


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class PeakRSS:
    """Samples this process's resident size in a thread while a transfer runs."""

    def __init__(self) -> None:
        self.start = rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss())

    def growth(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak - self.start


@pytest.fixture
def engine(loop_thread: LoopThread) -> Iterator[tuple[Engine, H11Backend]]:
    backend = H11Backend(loop_thread)
    proxy = ReverseProxy(parse_server_url(backend.url))
    engine = Engine(loop_thread, LoadBalancer("big@file", [BalancedServer(proxy)]))
    yield engine, backend
    engine.close()
    backend.close()


@pytest.fixture(scope="module")
def upload_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("upload") / "body.bin"
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for index in range(SIZE // len(BLOCK)):
            block = hashlib.sha256(index.to_bytes(4, "big")).digest() + BLOCK[32:]
            digest.update(block)
            out.write(block)
    return path, digest.hexdigest()


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", "--max-time", "120", *args], capture_output=True,
                          timeout=130, check=False)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_100mb_upload_streams_through_intact(engine: tuple[Engine, H11Backend],
                                             upload_file: tuple[Path, str],
                                             chunked: bool) -> None:
    proxy, _ = engine
    path, digest = upload_file
    extra = ["-H", "Transfer-Encoding: chunked"] if chunked else []
    memory = PeakRSS()
    result = curl("--data-binary", f"@{path}", *extra, proxy.url + "/upload")
    growth = memory.growth()
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == f"{SIZE} {digest}"
    assert growth < RSS_GROWTH_LIMIT, f"resident memory grew by {growth / 2**20:.1f} MiB"


@pytest.mark.parametrize("chunked", ["", "1"], ids=["content-length", "chunked"])
def test_100mb_download_streams_through_intact(engine: tuple[Engine, H11Backend],
                                               tmp_path: Path, chunked: str) -> None:
    proxy, _ = engine
    target = tmp_path / "download.bin"
    memory = PeakRSS()
    result = curl("-o", str(target), f"{proxy.url}/download?size={SIZE}&chunked={chunked}")
    growth = memory.growth()
    assert result.returncode == 0, result.stderr
    digest = hashlib.sha256()
    with target.open("rb") as received:
        while block := received.read(1 << 20):
            digest.update(block)
    assert target.stat().st_size == SIZE
    assert digest.hexdigest() == block_digest(SIZE)
    assert growth < RSS_GROWTH_LIMIT, f"resident memory grew by {growth / 2**20:.1f} MiB"


def test_slow_client_download_keeps_memory_bounded(engine: tuple[Engine, H11Backend],
                                                   tmp_path: Path) -> None:
    proxy, _ = engine
    target = tmp_path / "slow.bin"
    size = 40 * 1024 * 1024
    memory = PeakRSS()
    # 20 MB/s: the backend is far faster, so backpressure must hold it back.
    result = curl("--limit-rate", "20M", "-o", str(target),
                  f"{proxy.url}/download?size={size}")
    growth = memory.growth()
    assert result.returncode == 0, result.stderr
    assert target.stat().st_size == size
    assert growth < RSS_GROWTH_LIMIT, f"resident memory grew by {growth / 2**20:.1f} MiB"
