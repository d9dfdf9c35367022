"""The redis and etcd providers against servers that require TLS, certificates and logins."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import trustme

from tests.harness import Backends
from tests.integration.test_kv_providers import (
    ROOT,
    EtcdStore,
    RedisStore,
    Router,
    Store,
    eventually,
    routes_to,
    write_route,
)

USER, PASSWORD = "traefik", "s3cret-pa55"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as files."""
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client.example", common_name=USER)
    files = {"ca": directory / "ca.pem", "server": directory / "server.pem",
             "server_key": directory / "server.key", "client": directory / "client.pem",
             "client_key": directory / "client.key"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["server"]))
    server.private_key_pem.write_to_path(str(files["server_key"]))
    client.cert_chain_pems[0].write_to_path(str(files["client"]))
    client.private_key_pem.write_to_path(str(files["client_key"]))
    return {name: str(path) for name, path in files.items()}


class SecuredRedis(RedisStore):
    """Redis on TLS only, asking for client certificates, with an ACL user and no default."""

    name = "redis"

    def __init__(self, data: Path, pki: dict[str, str]) -> None:
        super().__init__(data)
        self.pki = pki

    def command(self) -> list[str]:
        return ["redis-server", "--port", "0", "--tls-port", str(self.port), "--bind",
                "127.0.0.1", "--dir", str(self.data), "--save", "", "--protected-mode", "no",
                "--tls-cert-file", self.pki["server"], "--tls-key-file", self.pki["server_key"],
                "--tls-ca-cert-file", self.pki["ca"], "--tls-auth-clients", "yes",
                "--user", "default", "off", "--user", USER, "on", f">{PASSWORD}", "~*", "&*",
                "+@all"]

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, decode_responses=True,
                           username=USER, password=PASSWORD, ssl=True,
                           ssl_ca_certs=self.pki["ca"], ssl_certfile=self.pki["client"],
                           ssl_keyfile=self.pki["client_key"])

    def provider_options(self) -> dict[str, Any]:
        return {"redis": {"endpoints": [f"127.0.0.1:{self.port}"], "username": USER,
                          "password": PASSWORD, "tls": {"ca": self.pki["ca"],
                                                        "cert": self.pki["client"],
                                                        "key": self.pki["client_key"]}}}


class CertificateEtcd(EtcdStore):
    """etcd on HTTPS only, accepting clients with a certificate from the test CA."""

    def __init__(self, data: Path, pki: dict[str, str]) -> None:
        super().__init__(data)
        self.pki = pki

    def command(self) -> list[str]:
        client, peer = f"https://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.peer}"
        return ["etcd", "--name", "test", "--data-dir", str(self.data / "member"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"test={peer}", "--log-level", "error",
                "--cert-file", self.pki["server"], "--key-file", self.pki["server_key"],
                "--client-cert-auth", "--trusted-ca-file", self.pki["ca"]]

    def etcdctl(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return super().etcdctl("--cacert", self.pki["ca"], "--cert", self.pki["client"],
                               "--key", self.pki["client_key"], *args)

    def provider_options(self) -> dict[str, Any]:
        # PEM text rather than paths: Traefik takes either.
        pem = {key: Path(self.pki[name]).read_text()
               for key, name in (("ca", "ca"), ("cert", "client"), ("key", "client_key"))}
        return {"etcd": {"endpoints": [f"127.0.0.1:{self.port}"], "tls": pem}}


class PasswordEtcd(EtcdStore):
    """etcd with authentication on: a root user and a user of its own for Traefik's keys."""

    def __init__(self, data: Path) -> None:
        super().__init__(data)
        self.login: list[str] = []

    def start(self) -> None:
        super().start()
        if not self.login:
            for args in (("user", "add", "root", "--new-user-password", "root-pw"),
                         ("user", "grant-role", "root", "root"),
                         ("user", "add", USER, "--new-user-password", PASSWORD),
                         ("role", "add", "traefik"),
                         ("role", "grant-permission", "traefik", "--prefix=true", "readwrite",
                          f"{ROOT}/"),
                         ("user", "grant-role", USER, "traefik"), ("auth", "enable")):
                assert self.etcdctl(*args).returncode == 0, args
            self.login = ["--user", f"{USER}:{PASSWORD}"]

    def etcdctl(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return super().etcdctl(*self.login, *args)

    def ready(self) -> bool:
        return EtcdStore.etcdctl(self, "endpoint", "health").returncode == 0

    def provider_options(self) -> dict[str, Any]:
        return {"etcd": {"endpoints": [f"127.0.0.1:{self.port}"], "username": USER,
                         "password": PASSWORD}}


@pytest.fixture(scope="module", params=["redis-tls-acl", "etcd-client-cert", "etcd-password"])
def secured(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            pki: dict[str, str]) -> Iterator[Store]:
    data = tmp_path_factory.mktemp(request.param)
    server: Store = {"redis-tls-acl": lambda: SecuredRedis(data, pki),
                     "etcd-client-cert": lambda: CertificateEtcd(data, pki),
                     "etcd-password": lambda: PasswordEtcd(data)}[request.param]()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def started() -> Iterator[list[Router]]:
    routers: list[Router] = []
    yield routers
    for router in routers:
        router.close()


def test_a_secured_store_is_read_and_followed(secured: Store, backends: Backends,
                                              started: list[Router]) -> None:
    secured.clear()
    blue, green = backends.whoami("blue"), backends.whoami("green")
    write_route(secured, blue)
    started.append(Router(secured))
    router = started[-1]
    assert router.app.provider_errors == {}
    assert router.backend() == "blue"

    secured.put(f"{ROOT}/tcp/services/app/loadbalancer/servers/0/address",
                f"127.0.0.1:{green}")
    assert eventually(lambda: routes_to(router, "green"), 1.0) < 1.0


def without_credentials(options: dict[str, Any]) -> dict[str, Any]:
    (name, settings), = options.items()
    kept = {key: value for key, value in settings.items()
            if key not in ("password", "cert", "key")}
    if "tls" in settings:
        kept["tls"] = {"ca": settings["tls"]["ca"]}
    elif "username" in settings:
        kept["password"] = "wrong"
    return {name: kept}


def test_without_the_credentials_the_store_refuses_and_says_so(
        secured: Store, started: list[Router], monkeypatch: pytest.MonkeyPatch) -> None:
    refused = without_credentials(secured.provider_options())
    monkeypatch.setattr(secured, "provider_options", lambda: refused)
    started.append(Router(secured))
    errors = started[-1].app.provider_errors
    assert set(errors) == {secured.name}, errors
    assert errors[secured.name], errors
