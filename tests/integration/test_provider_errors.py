"""A source that cannot be read never ends a provider's watch: API, metric, last good config."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from switchyard.config.loader import static_from_dict
from switchyard.providers.base import ProviderUpdate, Publish
from switchyard.providers.file import FileProvider
from switchyard.server import Switchyard
from tests.harness import Backends, LoopThread, connect, greeting_name, stop_router

YAML_ROUTES = """
tcp:
  routers:
    all: {{rule: "HostSNI(`*`)", service: app}}
  services:
    app: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{port}"}}]}}}}
"""

TOML_ROUTES = """
[tcp.routers.all]
  rule = "HostSNI(`*`)"
  service = "app"
[[tcp.services.app.loadBalancer.servers]]
  address = "127.0.0.1:{port}"
"""

MANIFESTS = """
apiVersion: traefik.io/v1alpha1
kind: IngressRouteTCP
metadata: {{name: all, namespace: default}}
spec:
  routes:
    - match: HostSNI(`*`)
      services: [{{name: app, port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: app, namespace: default}}
spec:
  ports: [{{port: 80}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: app, namespace: default}}
subsets:
  - addresses: [{{ip: 127.0.0.1}}]
    ports: [{{port: {port}}}]
"""


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@dataclass
class Running:
    """One in-process Switchyard with the API and metrics on their own port."""

    loop: LoopThread
    app: Switchyard

    @property
    def port(self) -> int:
        return self.app.entrypoints["ep"].port

    def get(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.app.internal_servers[0].port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
        return json.loads(body) if path.startswith("/api") else body

    def config_status(self) -> dict[str, Any]:
        return dict(self.get("/api/overview")["switchyard"]["config"])

    def reload_failures_metric(self) -> float:
        for family in text_string_to_metric_families(self.get("/metrics")):
            for sample in family.samples:
                if sample.name == "traefik_config_reloads_failure_total":
                    return float(sample.value)
        raise AssertionError("traefik_config_reloads_failure is not in /metrics")

    def backend(self) -> str:
        try:
            with connect(self.port) as conn:
                return greeting_name(conn)
        except (OSError, AssertionError):
            return ""


@pytest.fixture
def start(loop_thread: LoopThread) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def run(providers: dict[str, Any], replace: FileProvider | None = None) -> Running:
        settings, _ = static_from_dict({
            "entryPoints": {"ep": {"address": "127.0.0.1:0"}, "traefik": {"address": "127.0.0.1:0"}},
            "api": {"insecure": True},
            "metrics": {"prometheus": {}},
            "providers": {"providersThrottleDuration": "20ms", **providers},
        }, "test")
        app = Switchyard(settings)
        if replace is not None:
            app.providers = [replace]
        loop_thread.run(app.start())
        started.append(Running(loop_thread, app))
        return started[-1]

    yield run
    for running in started:
        stop_router(loop_thread, running.app)
        loop_thread.run(running.app.shutdown())


def assert_error_shown_while_the_last_good_config_serves(
        running: Running, provider: str, mentions: str, before: float) -> None:
    wait_for(lambda: provider in running.config_status()["providerErrors"], "the error in the API")
    error = running.config_status()["providerErrors"][provider]
    assert mentions in error, error
    assert running.reload_failures_metric() > before
    assert running.backend() == "first"  # the last good configuration


# Bytes PyYAML or tomllib refuse before parsing starts, or that are not UTF-8 text at all.
UNREADABLE = {
    "control character x18": b"tcp:\n  routers: {}\n\x18\n",
    "NUL byte": b"tcp: {}\x00\n",
    "escape character in a value": b'tcp:\n  routers:\n    all: {rule: "HostSNI(`*`)\x1b"}\n',
    "not UTF-8": b"tcp:\n  routers:\n    \xff\xfe: {}\n",
    "C1 control character": "tcp: {}\n\u0085\u0086\n".encode(),
}


@pytest.mark.parametrize("content", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_an_unreadable_yaml_file_is_a_provider_error_and_the_next_good_edit_applies(
        start: Callable[..., Running], backends: Backends, tmp_path: Path, content: bytes) -> None:
    first, second = backends.whoami("first"), backends.whoami("second")
    dynamic = tmp_path / "dynamic.yml"
    dynamic.write_text(YAML_ROUTES.format(port=first))
    running = start({"file": {"filename": str(dynamic)}})
    assert running.backend() == "first"
    live = connect(running.port)
    assert greeting_name(live) == "first"
    failures = running.reload_failures_metric()

    dynamic.write_bytes(content)

    assert_error_shown_while_the_last_good_config_serves(running, "file", str(dynamic), failures)
    dynamic.write_text(YAML_ROUTES.format(port=second))
    wait_for(lambda: running.backend() == "second", "the edit after the broken one")
    assert "file" not in running.config_status()["providerErrors"]
    live.sendall(b"still here")  # a relay from before all this is untouched
    assert live.recv(10) == b"still here"
    live.close()


def test_the_x18_error_names_the_file_line_and_character(
        start: Callable[..., Running], backends: Backends, tmp_path: Path) -> None:
    dynamic = tmp_path / "dynamic.yml"
    dynamic.write_text(YAML_ROUTES.format(port=backends.whoami("first")))
    running = start({"file": {"filename": str(dynamic)}})
    failures = running.reload_failures_metric()

    dynamic.write_bytes(b"tcp:\n  routers: {}\n\x18\n")

    assert_error_shown_while_the_last_good_config_serves(running, "file", f"{dynamic}:3:", failures)
    assert "U+0018" in running.config_status()["providerErrors"]["file"]


def test_a_control_character_in_a_toml_file_is_a_provider_error(
        start: Callable[..., Running], backends: Backends, tmp_path: Path) -> None:
    first, second = backends.whoami("first"), backends.whoami("second")
    dynamic = tmp_path / "dynamic.toml"
    dynamic.write_text(TOML_ROUTES.format(port=first))
    running = start({"file": {"filename": str(dynamic)}})
    failures = running.reload_failures_metric()

    dynamic.write_bytes(b'[tcp.routers.all]\n  rule = "HostSNI(`*`)\x18"\n')

    assert_error_shown_while_the_last_good_config_serves(running, "file", "TOML", failures)
    dynamic.write_text(TOML_ROUTES.format(port=second))
    wait_for(lambda: running.backend() == "second", "the edit after the broken one")


def test_one_unreadable_file_in_a_directory_keeps_the_whole_directory_at_its_last_good_state(
        start: Callable[..., Running], backends: Backends, tmp_path: Path) -> None:
    first, second = backends.whoami("first"), backends.whoami("second")
    directory = tmp_path / "conf.d"
    directory.mkdir()
    (directory / "routes.yml").write_text(YAML_ROUTES.format(port=first))
    running = start({"file": {"directory": str(directory)}})
    failures = running.reload_failures_metric()

    (directory / "extra.yml").write_bytes(b"\x18")

    assert_error_shown_while_the_last_good_config_serves(
        running, "file", str(directory / "extra.yml"), failures)
    (directory / "extra.yml").write_text("tcp: {}\n")
    (directory / "routes.yml").write_text(YAML_ROUTES.format(port=second))
    wait_for(lambda: running.backend() == "second", "the edit after the broken one")


def test_a_removed_and_recreated_directory_is_watched_again(
        start: Callable[..., Running], backends: Backends, tmp_path: Path) -> None:
    first, second = backends.whoami("first"), backends.whoami("second")
    directory = tmp_path / "conf.d"
    directory.mkdir()
    (directory / "routes.yml").write_text(YAML_ROUTES.format(port=first))
    running = start({"file": {"directory": str(directory)}})
    failures = running.reload_failures_metric()

    shutil.rmtree(directory)

    assert_error_shown_while_the_last_good_config_serves(running, "file", "removed", failures)
    directory.mkdir()
    (directory / "routes.yml").write_text(YAML_ROUTES.format(port=second))
    # The watch restarts after its backoff (0.5 s, then 1 s, 2 s ...).
    wait_for(lambda: running.backend() == "second", "the recreated directory", timeout=15)
    wait_for(lambda: not running.config_status()["providerErrors"], "the error to clear")
    (directory / "routes.yml").write_text(YAML_ROUTES.format(port=first))
    wait_for(lambda: running.backend() == "first", "an edit seen by the new watch")


def test_an_unreadable_manifest_is_a_kubernetes_provider_error(
        start: Callable[..., Running], backends: Backends, tmp_path: Path) -> None:
    first, second = backends.whoami("first"), backends.whoami("second")
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "app.yaml").write_text(MANIFESTS.format(port=first))
    running = start({"kubernetesCRD": {"manifests": str(manifests)}})
    assert running.backend() == "first"
    failures = running.reload_failures_metric()

    (manifests / "app.yaml").write_bytes(b"kind: Service\n\x18\n")

    assert_error_shown_while_the_last_good_config_serves(
        running, "kubernetescrd", str(manifests / "app.yaml"), failures)
    (manifests / "app.yaml").write_text(MANIFESTS.format(port=second))
    wait_for(lambda: running.backend() == "second", "the edit after the broken one")
    assert not running.config_status()["providerErrors"]


@dataclass(frozen=True)
class FailingOnceWatch(FileProvider):
    """A file provider whose first watch raises, as a provider with a bug would."""

    watches: list[int] | None = None

    async def watch(self, publish: Publish) -> None:
        assert self.watches is not None
        self.watches.append(1)
        if len(self.watches) == 1:
            await asyncio.sleep(0.05)
            raise RuntimeError("the watch broke")
        await super().watch(publish)


def test_a_provider_whose_watch_raises_is_restarted_and_reads_what_changed_meanwhile(
        start: Callable[..., Running], backends: Backends, tmp_path: Path) -> None:
    first, second = backends.whoami("first"), backends.whoami("second")
    dynamic = tmp_path / "dynamic.yml"
    dynamic.write_text(YAML_ROUTES.format(port=first))
    watches: list[int] = []
    provider = FailingOnceWatch(str(dynamic), watches=watches)
    running = start({"file": {"filename": str(dynamic)}}, replace=provider)
    failures = running.reload_failures_metric()

    wait_for(lambda: watches, "the first watch")
    assert_error_shown_while_the_last_good_config_serves(
        running, "file", "the watch broke", failures)
    dynamic.write_text(YAML_ROUTES.format(port=second))  # while nobody watches

    wait_for(lambda: running.backend() == "second", "the change made while not watching")
    assert len(watches) == 2
    wait_for(lambda: not running.config_status()["providerErrors"], "the error to clear")


def test_load_never_raises_even_when_the_loader_does(tmp_path: Path) -> None:
    class Exploding(FileProvider):
        def _load(self) -> ProviderUpdate:
            raise KeyError("surprise")

    update = Exploding(str(tmp_path / "dynamic.yml")).load()

    assert update.config is None
    assert str(tmp_path / "dynamic.yml") in update.error and "surprise" in update.error
