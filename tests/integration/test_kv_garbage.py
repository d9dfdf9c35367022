"""Undecodable bytes in a real Redis / etcd: a provider error, the last good config, then recovery."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from switchyard.config.loader import static_from_dict
from switchyard.server import Switchyard
from tests.harness import Backends, LoopThread, connect, greeting_name, stop_router
from tests.integration.test_kv_providers import ROOT, EtcdStore, RedisStore, Store, write_route


def put_bytes(store: Store, key: bytes, value: bytes) -> None:
    """Write raw bytes, which the stores' own ``put`` (text) cannot."""
    if isinstance(store, RedisStore):
        with redis.Redis(port=store.port, socket_connect_timeout=1) as client:
            client.set(key, value)
    else:
        assert isinstance(store, EtcdStore)
        done = subprocess.run([b"etcdctl", f"--endpoints=127.0.0.1:{store.port}".encode(),
                               b"--dial-timeout=1s", b"put", b"--", key, value],
                              capture_output=True, timeout=10, check=False,
                              env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr


def delete(store: Store, key: bytes) -> None:
    if isinstance(store, RedisStore):
        with redis.Redis(port=store.port, socket_connect_timeout=1) as client:
            client.delete(key)
    else:
        assert isinstance(store, EtcdStore)
        done = subprocess.run([b"etcdctl", f"--endpoints=127.0.0.1:{store.port}".encode(),
                               b"--dial-timeout=1s", b"del", key], capture_output=True,
                              timeout=10, check=False, env={"ETCDCTL_API": "3",
                                                            "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module", params=[RedisStore, EtcdStore], ids=["redis", "etcd"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Store]:
    server: Store = request.param(tmp_path_factory.mktemp(request.param.name))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Watched:
    """Switchyard with the store as its provider, and the API to read its errors from."""

    def __init__(self, store: Store) -> None:
        self.loop = LoopThread()
        static, _ = static_from_dict({
            "entryPoints": {"ep": {"address": "127.0.0.1:0"},
                            "traefik": {"address": "127.0.0.1:0"}},
            "api": {"insecure": True},
            "providers": {"providersThrottleDuration": "20ms", **store.provider_options()},
        }, "test")
        self.app = Switchyard(static)
        self.loop.run(self.app.start())

    def backend(self) -> str:
        try:
            with connect(self.app.entrypoints["ep"].port) as conn:
                return greeting_name(conn)
        except (OSError, AssertionError):
            return ""

    def config_status(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.app.internal_servers[0].port}/api/overview"
        with urllib.request.urlopen(url, timeout=5) as response:
            return dict(json.load(response)["switchyard"]["config"])

    def close(self) -> None:
        stop_router(self.loop, self.app)
        self.loop.run(self.app.shutdown())
        self.loop.stop()


@pytest.fixture
def watched(store: Store) -> Iterator[Callable[[], Watched]]:
    store.clear()
    started: list[Watched] = []

    def start() -> Watched:
        started.append(Watched(store))
        return started[-1]

    yield start
    for router in started:
        router.close()


def eventually(check: Callable[[], Any], what: str, within: float = 15.0) -> None:
    # A bound on waiting, not a timing claim: the etcd watch's reconnect backoff after a provider
    # error took longer than 5 s on a machine loaded by other test runs.
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


GARBAGE = {
    "a value that is not UTF-8": (f"{ROOT}/tcp/routers/app/rule".encode(), b"HostSNI(\xff\xfe`*`)"),
    "a key that is not UTF-8": (f"{ROOT}/tcp/routers/".encode() + b"\xc3\x28/rule", b"x"),
}


@pytest.mark.parametrize("key,value", GARBAGE.values(), ids=GARBAGE.keys())
def test_undecodable_bytes_are_a_provider_error_and_the_next_good_write_applies(
        store: Store, watched: Callable[[], Watched], backends: Backends,
        key: bytes, value: bytes) -> None:
    blue, green = backends.whoami("blue"), backends.whoami("green")
    write_route(store, blue)
    router = watched()
    assert router.backend() == "blue"
    failures = router.config_status()["reloadFailures"]

    put_bytes(store, key, value)

    eventually(lambda: store.name in router.config_status()["providerErrors"], "the API error")
    error = router.config_status()["providerErrors"][store.name]
    assert "not UTF-8" in error and "tcp/routers/" in error, error
    assert router.config_status()["reloadFailures"] > failures
    assert router.backend() == "blue"  # the last good configuration keeps serving

    delete(store, key)
    write_route(store, green)
    eventually(lambda: router.backend() == "green", "the good write after the garbage")
    assert store.name not in router.config_status()["providerErrors"]


def test_a_store_holding_garbage_at_start_up_serves_nothing_and_says_why(
        store: Store, watched: Callable[[], Watched], backends: Backends) -> None:
    put_bytes(store, f"{ROOT}/tcp/routers/app/service".encode(), b"\x80")

    router = watched()

    assert "not UTF-8" in router.config_status()["providerErrors"][store.name]
    delete(store, f"{ROOT}/tcp/routers/app/service".encode())
    write_route(store, backends.whoami("blue"))
    # Wait on the API first: with no router yet, a connection would wait readTimeout.
    eventually(lambda: not router.config_status()["providerErrors"]
               and router.config_status()["issues"] == [] and router.app.runtime.routers,
               "the first good write")
    eventually(lambda: router.backend() == "blue", "routing as the store says")
