"""Real HTTP requests through Switchyard configured only from Kubernetes objects.

From manifest files: an IngressRoute over HTTPS with a certificate held in a Secret, two
Middlewares (headers, basicAuth from a Secret) and a weighted TraefikService, beside an
Ingress of the kubernetesIngress provider. From the API watch stand-in: an IngressRoute
added while Switchyard runs routes within a second.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from switchyard.config.loader import static_from_dict
from switchyard.server import Switchyard
from tests.harness import LoopThread, ensure_command, stop_router
from tests.integration.test_kubernetes_api import TOKEN, RecordedAPI, api, eventually
from tests.mwkit import echo_backend, echoed

__all__ = ["api"]  # the API stand-in fixture, shared with test_kubernetes_api


def backend_objects(port: int, namespace: str = "apps") -> list[dict[str, Any]]:
    """A Service ``echo`` (port ``http`` 80) whose EndpointSlice is the echo backend."""
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "echo", "namespace": namespace},
         "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "echo-abc12", "namespace": namespace,
                      "labels": {"kubernetes.io/service-name": "echo"}},
         "addressType": "IPv4",
         "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
         "endpoints": [{"addresses": ["127.0.0.1"],
                        "conditions": {"ready": True, "serving": True}}]},
    ]


def encoded(**entries: str) -> dict[str, str]:
    return {key: base64.b64encode(value.encode()).decode() for key, value in entries.items()}


def cluster_manifests(port: int, ca: trustme.CA) -> list[dict[str, Any]]:
    certificate = ca.issue_cert("app.example")
    crd = "traefik.io/v1alpha1"
    meta = {"namespace": "apps"}
    return [
        *backend_objects(port),
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
         "metadata": {"name": "app-cert", **meta},
         "data": encoded(**{"tls.crt": b"".join(b.bytes() for b in certificate.cert_chain_pems
                                                ).decode(),
                            "tls.key": certificate.private_key_pem.bytes().decode()})},
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
         "metadata": {"name": "login", **meta},
         "data": encoded(username="alice", password="wonderland")},
        {"apiVersion": crd, "kind": "Middleware", "metadata": {"name": "tag", **meta},
         "spec": {"headers": {"customRequestHeaders": {"X-Routed-By": "ingressroute"}}}},
        {"apiVersion": crd, "kind": "Middleware", "metadata": {"name": "auth", **meta},
         "spec": {"basicAuth": {"secret": "login", "removeHeader": True}}},
        {"apiVersion": crd, "kind": "TraefikService", "metadata": {"name": "echo-wrr", **meta},
         "spec": {"weighted": {"services": [{"name": "echo", "port": "http", "weight": 2}]}}},
        {"apiVersion": crd, "kind": "IngressRoute", "metadata": {"name": "app", **meta},
         "spec": {"entryPoints": ["websecure"],
                  "routes": [{"match": "Host(`app.example`)", "kind": "Rule",
                              "middlewares": [{"name": "tag"}, {"name": "auth"}],
                              "services": [{"name": "echo-wrr", "kind": "TraefikService"}]}],
                  "tls": {"secretName": "app-cert"}}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
         "metadata": {"name": "plain", **meta, "annotations": {
             "traefik.ingress.kubernetes.io/router.entrypoints": "web"}},
         "spec": {"rules": [{"host": "plain.example", "http": {"paths": [
             {"path": "/ing", "pathType": "Prefix",
              "backend": {"service": {"name": "echo", "port": {"name": "http"}}}}]}}]}},
    ]


@pytest.fixture
def echo() -> Iterator[int]:
    with echo_backend() as port:
        yield port


def curl(*arguments: str) -> tuple[int, dict[str, Any] | str]:
    command = ensure_command("curl", "curl")
    done = subprocess.run([command, "-s", "-w", "\n%{http_code}", "--max-time", "5",
                           *arguments], capture_output=True, text=True, check=False)
    body, _, status = done.stdout.rpartition("\n")
    try:
        return int(status), echoed(body.encode())
    except (ValueError, json.JSONDecodeError):
        return int(status or 0), body


@pytest.mark.slow
def test_manifests_alone_route_https_through_middlewares_and_a_traefik_service(
        tmp_path: Path, echo: int, ca: trustme.CA) -> None:
    manifests = tmp_path / "cluster"
    manifests.mkdir()
    (manifests / "all.yaml").write_text(yaml.safe_dump_all(cluster_manifests(echo, ca)))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    static, issues = static_from_dict({
        "entryPoints": {"web": {"address": "127.0.0.1:0"},
                        "websecure": {"address": "127.0.0.1:0"}},
        "providers": {"kubernetesCRD": {"manifests": str(manifests)},
                      "kubernetesIngress": {"manifests": str(manifests)}},
    }, "test")
    assert [i for i in issues if i.severity == "error"] == []
    loop = LoopThread()
    app = Switchyard(static)
    loop.run(app.start())
    try:
        secure, web = app.entrypoints["websecure"].port, app.entrypoints["web"].port
        resolve = f"app.example:{secure}:127.0.0.1"
        url = f"https://app.example:{secure}/hello"

        status, _ = curl("--resolve", resolve, "--cacert", str(ca_file), url)
        assert status == 401  # basicAuth from the Secret

        status, answer = curl("--resolve", resolve, "--cacert", str(ca_file),
                              "-u", "alice:wonderland", url)
        assert status == 200 and isinstance(answer, dict)
        assert answer["target"] == "/hello"
        assert answer["fields"]["x-routed-by"] == ["ingressroute"]
        assert "authorization" not in answer["fields"]  # removeHeader

        status, answer = curl("-H", "Host: plain.example", f"http://127.0.0.1:{web}/ing/x")
        assert status == 200 and isinstance(answer, dict) and answer["target"] == "/ing/x"
        assert curl("-H", "Host: plain.example", f"http://127.0.0.1:{web}/other")[0] == 404
    finally:
        stop_router(loop, app)
        loop.run(app.shutdown())
        loop.stop()


@pytest.mark.slow
def test_an_ingress_route_added_on_the_watch_routes_within_a_second(
        api: tuple[RecordedAPI, LoopThread, str], echo: int) -> None:
    recorded, api_loop, ca_file = api
    service, endpoint_slice = backend_objects(echo)
    recorded.items.update({"Service": [service], "EndpointSlice": [endpoint_slice]})
    static, _ = static_from_dict({
        "entryPoints": {"web": {"address": "127.0.0.1:0"}},
        "providers": {"providersThrottleDuration": "20ms", "kubernetesCRD": {
            "endpoint": f"https://127.0.0.1:{recorded.port}", "token": TOKEN,
            "certAuthFilePath": ca_file}},
    }, "test")
    loop = LoopThread()
    app = Switchyard(static)
    loop.run(app.start())
    try:
        port = app.entrypoints["web"].port
        eventually(lambda: "IngressRoute" in recorded.streams, 5)
        assert curl("-H", "Host: live.example", f"http://127.0.0.1:{port}/")[0] == 404

        route = {"apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
                 "metadata": {"name": "live", "namespace": "apps", "resourceVersion": "1010"},
                 "spec": {"entryPoints": ["web"],
                          "routes": [{"match": "Host(`live.example`)",
                                      "services": [{"name": "echo", "port": 80}]}]}}
        api_loop.run(recorded.push("IngressRoute", {"type": "ADDED", "object": route}))
        added = time.monotonic()
        eventually(lambda: curl("-H", "Host: live.example",
                                f"http://127.0.0.1:{port}/x")[0] == 200, 1)
        assert time.monotonic() - added < 1
    finally:
        stop_router(loop, app)
        loop.run(app.shutdown())
        loop.stop()
