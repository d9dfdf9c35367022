"""ACME resolvers against a real CA (Debian's pebble on loopback), plus their configuration."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import http.client
import json
import logging
import os
import socket
import ssl
import stat
import subprocess
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from switchyard.http.handler import ConnectionInfo, Handler, RequestRecord
from switchyard.http.message import Headers
from switchyard.http.server import HTTPServerConnection, ServerSettings
from switchyard.tls.acme import (
    ACMECertificate,
    ACMEError,
    ACMEResolver,
    CertificateDomain,
    build_resolvers,
    renewal_timing,
)
from switchyard.tls.acme_http import ACMEChallengeHandler, challenge_token
from switchyard.tls.certificates import load_certificate
from tests.harness import (
    LoopThread,
    dead_port,
    ensure_command,
    free_port,
    new_loop,
    start_router,
    stop_router,
    wait_for_port,
)

DOMAIN = "switchyard-test.localhost"
WWW = "www.switchyard-test.localhost"
T = TypeVar("T")


# --- pebble -------------------------------------------------------------------------------


class Pebble:
    """pebble (the ACME server) and pebble-challtestsrv (its DNS) on free loopback ports.

    pebble validates TLS-ALPN-01 by connecting to the domain name on ``tls_port``, HTTP-01 by
    fetching the token from it on ``http_port``; it resolves names through challtestsrv, which
    answers every A query with 127.0.0.1 and no AAAA, so no system resolver or /etc/hosts is
    involved. The ACME API is served with a certificate from the test CA (``ca``): Debian's
    package ships no test certificates.
    """

    def __init__(self, workdir: Path, ca: Any, tls_port: int, http_port: int = 0) -> None:
        self.acme_port = free_port()
        self.management_port = free_port()
        self.dns_port = free_port()
        self.tls_port = tls_port
        self.http_port = http_port or dead_port()  # a port nobody answers on, by default
        self.ca_file = workdir / "pebble-api-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        served = ca.issue_cert("127.0.0.1", "localhost")
        served.cert_chain_pems[0].write_to_path(str(workdir / "pebble-api.pem"))
        served.private_key_pem.write_to_path(str(workdir / "pebble-api.key"))
        self.config = workdir / "pebble.json"
        self.config.write_text(
            json.dumps(
                {
                    "pebble": {
                        "listenAddress": f"127.0.0.1:{self.acme_port}",
                        "managementListenAddress": f"127.0.0.1:{self.management_port}",
                        "certificate": str(workdir / "pebble-api.pem"),
                        "privateKey": str(workdir / "pebble-api.key"),
                        "httpPort": self.http_port,
                        "tlsPort": tls_port,
                        "ocspResponderURL": "",
                        "externalAccountBindingRequired": False,
                    }
                }
            )
        )
        self.processes: list[subprocess.Popen[bytes]] = []
        # Both servers log here; a test that fails prints the tail.
        self.log_path = workdir / "pebble.log"
        self.log = self.log_path.open("ab")

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.acme_port}/dir"

    def start(self) -> None:
        flags = {
            "-dns01": f"127.0.0.1:{self.dns_port}",
            "-management": f"127.0.0.1:{free_port()}",
            "-defaultIPv4": "127.0.0.1",
            "-defaultIPv6": "",  # no AAAA answers: the responder listens on IPv4 only
            "-http01": "",  # challtestsrv's own challenge servers stay off
            "-https01": "",
            "-tlsalpn01": "",
        }
        arguments = [item for flag in flags.items() for item in flag]
        dns = subprocess.Popen(
            ["pebble-challtestsrv", *arguments], stdout=self.log, stderr=subprocess.STDOUT
        )
        self.processes.append(dns)
        # No artificial validation delays; no nonces refused on purpose, so a run never
        # depends on the acme library's single badNonce retry.
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0")
        server = subprocess.Popen(
            ["pebble", "-config", str(self.config), "-dnsserver", f"127.0.0.1:{self.dns_port}"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(server)
        wait_for_port(self.acme_port)
        wait_for_port(self.management_port)
        # A server that could not bind its port exits: say so now, not as a timeout later.
        assert all(process.poll() is None for process in self.processes), self.log_tail()

    def log_tail(self) -> str:
        self.log.flush()
        return "pebble log:\n" + "\n".join(self.log_path.read_text().splitlines()[-40:])

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.processes.clear()

    def close(self) -> None:
        self.stop()
        self.log.close()

    def management(self, path: str) -> bytes:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        url = f"https://127.0.0.1:{self.management_port}{path}"
        with urllib.request.urlopen(url, context=context, timeout=5) as response:
            return bytes(response.read())


@pytest.fixture(scope="session")
def pebble_installed() -> None:
    try:
        ensure_command("pebble", "pebble")
        ensure_command("pebble-challtestsrv", "pebble")
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"Debian's pebble package cannot be installed here: {exc}")


@pytest.fixture
def responder_socket() -> Iterator[socket.socket]:
    # Bound now, listened on by the responder: pebble is told a port nobody else can take.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


@pytest.fixture
def http_socket() -> Iterator[socket.socket]:
    # The "web" entry point's socket, where pebble fetches HTTP-01 tokens.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


@pytest.fixture
def pebble(
    pebble_installed: None,
    tmp_path: Path,
    ca: Any,
    responder_socket: socket.socket,
    http_socket: socket.socket,
) -> Iterator[Pebble]:
    server = Pebble(tmp_path, ca, responder_socket.getsockname()[1], http_socket.getsockname()[1])
    yield server
    server.close()


def resolver_config(
    pebble: Pebble, storage: Path, challenges: dict[str, Any] | None = None
) -> dict[str, Any]:
    acme = {
        "email": "ops@example.com",
        "storage": str(storage),
        "caServer": pebble.directory,
        "keyType": "EC256",  # quick to generate; the account key is RSA 4096 regardless
        **({"tlsChallenge": {}} if challenges is None else challenges),
        "caCertificates": [str(pebble.ca_file)],
    }
    return {"acme": acme}


# --- the data plane's part, as the lead wires it ------------------------------------------


async def start_responder(resolver: ACMEResolver, sock: socket.socket) -> asyncio.Server:
    """A TLS listener that answers ``acme-tls/1`` from the resolver and serves its certificates.

    What the data plane does: a pending challenge's SNI gets the resolver's challenge context
    (one handshake, then close); any other SNI gets the certificate the resolver obtained.
    """
    default = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    default.set_alpn_protocols(["acme-tls/1", "http/1.1"])

    def choose_context(connection: Any, server_name: str | None, _: ssl.SSLContext) -> None:
        challenge = resolver.challenge_context(server_name or "")
        if challenge is not None:
            connection.context = challenge
            return
        for chain, key in resolver.certificates():
            served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            load_certificate(chain.decode(), key.decode()).load_into(served)
            connection.context = served

    default.sni_callback = choose_context

    async def close_after_handshake(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    return await asyncio.start_server(close_after_handshake, sock=sock, ssl=default)


class Routers:
    """Stands in for the web entry point's HTTP routers, behind the challenge handler."""

    def handle(self, exchange: Any) -> None:
        exchange.respond(200, Headers([(b"Content-Type", b"text/plain")]), b"routed")


class HTTPEntryPoint:
    """``handler`` served by Switchyard's HTTP/1.1 server on ``sock``, as the web entry point.

    Connections are handed to HTTPServerConnection as the TCP data plane hands them over;
    every request served is recorded (``records``, ``hosts``), and so is what the resolver
    answers for a challenge request's token with its Host as sent, without the port,
    upper-cased, and with another name (``lookups``).
    """

    def __init__(self, resolver: ACMEResolver, handler: Handler) -> None:
        self.resolver = resolver
        self.handler = handler
        self.records: list[RequestRecord] = []
        self.hosts: list[str] = []
        self.lookups: list[tuple[bytes | None, ...]] = []
        self.transports: list[asyncio.BaseTransport] = []
        self.server: asyncio.Server | None = None

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Handover(self), sock=sock)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for transport in self.transports:
            transport.close()
        await self.server.wait_closed()

    def handle(self, exchange: Any) -> None:
        request = exchange.request
        self.hosts.append(request.host)
        token = challenge_token(request.path)
        if token:
            name = request.host.partition(":")[0]
            hosts = (request.host, name, name.upper(), "other.localhost")
            self.lookups.append(
                tuple(self.resolver.http_challenge_response(token, host) for host in hosts)
            )
        self.handler.handle(exchange)


class _Handover(asyncio.Protocol):
    def __init__(self, entry_point: HTTPEntryPoint) -> None:
        self.entry_point = entry_point

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        client = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        info = ConnectionInfo("web", client[0], client[1], local[0], local[1])
        settings = ServerSettings(observer=self.entry_point.records.append)
        conn = HTTPServerConnection(self.entry_point, info, settings)
        self.entry_point.transports.append(transport)
        transport.set_protocol(conn)
        conn.connection_made(transport)


def http_get(port: int, path: str, host: str) -> tuple[int, dict[str, str], bytes]:
    """(status, header fields, body) of one GET, as a client on the web entry point sees it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    loop = new_loop()
    try:
        return loop.run_until_complete(scenario())
    finally:
        loop.close()


async def wait_for_change(changes: asyncio.Event, pebble: Pebble) -> None:
    try:
        await asyncio.wait_for(changes.wait(), 30)
    except TimeoutError:
        pytest.fail(f"no certificate within 30 s\n{pebble.log_tail()}")


async def stop(task: asyncio.Task[None], responder: asyncio.Server | None) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if responder is not None:
        responder.close()
        await responder.wait_closed()


def change_signal(resolver: ACMEResolver) -> asyncio.Event:
    changed = asyncio.Event()
    resolver.on_change(changed.set)
    return changed


def tls_client_sees(port: int, root_pem: bytes) -> x509.Certificate:
    """The certificate a client verifying against pebble's root gets for DOMAIN."""
    context = ssl.create_default_context(cadata=root_pem.decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=DOMAIN) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def dns_names(certificate: x509.Certificate) -> list[str]:
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return names.get_values_for_type(x509.DNSName)


# --- with pebble --------------------------------------------------------------------------


def test_certificate_is_obtained_over_tls_alpn_and_clients_trust_it(
    pebble: Pebble, responder_socket: socket.socket, tmp_path: Path
) -> None:
    pebble.start()
    storage = tmp_path / "acme.json"
    resolver = ACMEResolver("le", resolver_config(pebble, storage))

    async def scenario() -> x509.Certificate:
        changes = change_signal(resolver)
        responder = await start_responder(resolver, responder_socket)
        resolver.request([(DOMAIN, [])])
        task = asyncio.create_task(resolver.run())
        try:
            await wait_for_change(changes, pebble)
            assert resolver.challenge_context(DOMAIN) is None  # the challenge is over
            root = await asyncio.to_thread(pebble.management, "/roots/0")
            return await asyncio.to_thread(tls_client_sees, pebble.tls_port, root)
        finally:
            await stop(task, responder)

    served = run(scenario)
    assert dns_names(served) == [DOMAIN]
    intermediate = x509.load_pem_x509_certificate(pebble.management("/intermediates/0"))
    assert served.issuer == intermediate.subject

    [(chain, key)] = resolver.certificates()
    assert x509.load_pem_x509_certificates(chain)[0] == served
    assert load_certificate(chain.decode(), key.decode()).names == (DOMAIN,)

    # Traefik's acme.json layout, private to its owner.
    assert stat.S_IMODE(storage.stat().st_mode) == 0o600
    stored = json.loads(storage.read_text())["le"]
    assert stored["Account"]["Email"] == "ops@example.com"
    assert stored["Account"]["KeyType"] == "P256"
    assert stored["Account"]["Registration"]["uri"].startswith(
        f"https://127.0.0.1:{pebble.acme_port}/"
    )
    [entry] = stored["Certificates"]
    assert entry["domain"] == {"main": DOMAIN}
    assert entry["Store"] == "default"
    assert base64.b64decode(entry["certificate"]) == chain
    assert base64.b64decode(entry["key"]) == key


def test_certificate_is_obtained_over_http_01_answered_on_the_web_entry_point(
    pebble: Pebble, http_socket: socket.socket, tmp_path: Path
) -> None:
    # No TLS listener at all: pebble can only validate by fetching the tokens over HTTP.
    pebble.start()
    challenges = {"httpChallenge": {"entryPoint": "web", "delay": "100ms"}}
    config = resolver_config(pebble, tmp_path / "acme.json", challenges)
    resolver = ACMEResolver("le", config, entry_points=["web", "websecure"])
    assert resolver.problems == ()
    assert resolver.http_challenge_entrypoint() == "web"
    web = HTTPEntryPoint(resolver, ACMEChallengeHandler([resolver], Routers()))

    async def scenario() -> list[tuple[int, dict[str, str], bytes]]:
        changes = change_signal(resolver)
        await web.start(http_socket)
        resolver.request([(DOMAIN, [WWW])])
        task = asyncio.create_task(resolver.run())
        try:
            await wait_for_change(changes, pebble)
            # After the order: a token pebble fetched is gone, other paths are routed.
            token = challenge_token(web.records[0].path)
            return [
                await asyncio.to_thread(http_get, pebble.http_port, path, DOMAIN)
                for path in (f"/.well-known/acme-challenge/{token}", "/app")
            ]
        finally:
            await stop(task, None)
            await web.close()

    (status, headers, body), routed = run(scenario)

    [(chain, key)] = resolver.certificates()
    leaf = x509.load_pem_x509_certificates(chain)[0]
    assert sorted(dns_names(leaf)) == [DOMAIN, WWW]
    intermediate = x509.load_pem_x509_certificate(pebble.management("/intermediates/0"))
    assert leaf.issuer == intermediate.subject
    assert load_certificate(chain.decode(), key.decode()).names == (DOMAIN, WWW)

    # pebble fetched each name's token (once per validation perspective), with the name and
    # port as Host; every fetch got the key authorization from the acme-http@internal router
    # (pebble compared it). The last two requests are the test's own.
    validations, hosts, lookups = web.records[:-2], web.hosts[:-2], web.lookups[:-1]
    assert {(r.method, r.status, r.router) for r in validations} == {
        ("GET", 200, "acme-http@internal")
    }
    assert set(hosts) == {f"{name}:{pebble.http_port}" for name in (DOMAIN, WWW)}
    assert len({challenge_token(r.path) for r in validations}) == 2
    for as_sent, name, upper, other in lookups:
        assert as_sent is not None
        assert as_sent == name == upper  # the port and the case of the name do not matter
        assert other is None  # a token answers for its own name only

    # Traefik's answers once no challenge is pending: an empty 404, and routing elsewhere.
    assert (status, body, headers.get("Content-Length")) == (404, b"", "0")
    assert "Content-Type" not in headers
    assert routed[0] == 200 and routed[2] == b"routed"


def test_tls_alpn_01_is_preferred_when_both_challenges_are_configured_as_in_lego(
    pebble: Pebble, responder_socket: socket.socket, http_socket: socket.socket, tmp_path: Path
) -> None:
    pebble.start()
    challenges = {"tlsChallenge": {}, "httpChallenge": {"entryPoint": "web"}}
    resolver = ACMEResolver("le", resolver_config(pebble, tmp_path / "acme.json", challenges))
    web = HTTPEntryPoint(resolver, ACMEChallengeHandler([resolver], Routers()))

    async def scenario() -> None:
        changes = change_signal(resolver)
        responder = await start_responder(resolver, responder_socket)
        await web.start(http_socket)
        resolver.request([(DOMAIN, [])])
        task = asyncio.create_task(resolver.run())
        try:
            await wait_for_change(changes, pebble)
        finally:
            await stop(task, responder)
            await web.close()

    run(scenario)
    assert resolver.certificates()
    assert web.records == []  # pebble offered both; the TLS-ALPN-01 one was answered


def test_restarted_resolver_serves_the_stored_certificate_without_asking_the_ca(
    pebble: Pebble,
    responder_socket: socket.socket,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pebble.start()
    storage = tmp_path / "acme.json"
    config = resolver_config(pebble, storage)
    first = ACMEResolver("le", config)

    async def obtain() -> None:
        changes = change_signal(first)
        responder = await start_responder(first, responder_socket)
        first.request([(DOMAIN, [])])
        task = asyncio.create_task(first.run())
        try:
            await wait_for_change(changes, pebble)
        finally:
            await stop(task, responder)

    run(obtain)
    pebble.stop()

    restarted = ACMEResolver("le", config)
    assert restarted.certificates() == first.certificates()

    async def run_without_ca() -> bool:
        changes = change_signal(restarted)
        restarted.request([(DOMAIN, [])])  # what the builder does after every reload
        task = asyncio.create_task(restarted.run())
        await asyncio.sleep(1)
        await stop(task, None)
        return changes.is_set()

    caplog.set_level(logging.INFO, logger="switchyard.acme")
    assert run(run_without_ca) is False
    assert restarted.certificates() == first.certificates()
    # No attempt to reach the stopped CA, which would log a failure.
    assert [r.getMessage() for r in caplog.records if r.name == "switchyard.acme"] == []


def test_certificate_close_to_expiry_is_renewed_from_the_ca(
    pebble: Pebble, responder_socket: socket.socket, tmp_path: Path
) -> None:
    pebble.start()
    storage = tmp_path / "acme.json"
    expiring_chain, expiring_key = self_signed(
        DOMAIN, expires_in=dt.timedelta(days=2), issued_ago=dt.timedelta(days=88)
    )
    write_traefik_storage(storage, "le", [(DOMAIN, expiring_chain, expiring_key)])
    resolver = ACMEResolver("le", resolver_config(pebble, storage))
    assert resolver.certificates() == [(expiring_chain, expiring_key)]

    async def scenario() -> None:
        changes = change_signal(resolver)
        responder = await start_responder(resolver, responder_socket)
        task = asyncio.create_task(resolver.run())
        try:
            await wait_for_change(changes, pebble)
        finally:
            await stop(task, responder)

    run(scenario)
    [(chain, _)] = resolver.certificates()
    renewed = x509.load_pem_x509_certificates(chain)[0]
    assert "Pebble" in renewed.issuer.rfc4514_string()
    assert dns_names(renewed) == [DOMAIN]
    [entry] = json.loads(storage.read_text())["le"]["Certificates"]
    assert base64.b64decode(entry["certificate"]) == chain


def test_failed_attempts_are_retried_until_the_ca_answers(
    pebble: Pebble,
    responder_socket: socket.socket,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: Any,
) -> None:
    # Trust comes from lego's variables this time, as Traefik users set them: pebble's CA
    # merged with the system's roots.
    monkeypatch.setenv("LEGO_CA_CERTIFICATES", str(pebble.ca_file))
    monkeypatch.setenv("LEGO_CA_SYSTEM_CERT_POOL", "true")
    config = resolver_config(pebble, tmp_path / "acme.json")
    del config["acme"]["caCertificates"]
    resolver = ACMEResolver("le", config, first_retry_delay=0.2)
    caplog.set_level(logging.WARNING, logger="switchyard.acme")

    async def scenario() -> None:
        changes = change_signal(resolver)
        responder = await start_responder(resolver, responder_socket)
        resolver.request([(DOMAIN, [])])
        task = asyncio.create_task(resolver.run())
        try:
            # The CA is not up yet: wait until an attempt has failed (the account key is
            # generated first, which takes a while on a busy machine), then start it.
            deadline = time.monotonic() + 60
            while not [r for r in caplog.records if r.name == "switchyard.acme"]:
                assert time.monotonic() < deadline, "no failed attempt was logged"
                await asyncio.sleep(0.05)
            await asyncio.to_thread(pebble.start)
            await wait_for_change(changes, pebble)
        finally:
            await stop(task, responder)

    run(scenario)
    assert resolver.certificates()
    failures = [r.getMessage() for r in caplog.records if r.name == "switchyard.acme"]
    assert failures
    assert failures[0].startswith(
        f"certificatesResolvers.le.acme: cannot obtain a certificate for {DOMAIN}: "
    )


# --- configuration and storage, no CA needed -----------------------------------------------


def self_signed(
    name: str, expires_in: dt.timedelta, issued_ago: dt.timedelta = dt.timedelta(days=1)
) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - issued_ago)
        .not_valid_after(now + expires_in)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def write_traefik_storage(
    path: Path, resolver: str, certificates: list[tuple[str, bytes, bytes]], mode: int = 0o600
) -> None:
    """An acme.json as Traefik writes it (certificates only, no account yet)."""
    entries = [
        {
            "domain": {"main": main},
            "certificate": base64.b64encode(chain).decode(),
            "key": base64.b64encode(key).decode(),
            "Store": "default",
        }
        for main, chain, key in certificates
    ]
    path.write_text(json.dumps({resolver: {"Account": None, "Certificates": entries}}))
    path.chmod(mode)


def test_options_are_read_in_any_case_with_traefik_defaults(tmp_path: Path) -> None:
    resolver = ACMEResolver(
        "le",
        {"ACME": {"TLSChallenge": None, "Email": "a@example.com", "storage": str(tmp_path / "s")}},
        environ={},
    )
    config = resolver.config
    assert config.email == "a@example.com"
    assert config.ca_server == "https://acme-v02.api.letsencrypt.org/directory"
    assert config.key_type == "RSA4096"
    assert config.certificates_duration == 2160
    assert config.ca_certificates == ()
    assert resolver.problems == ()
    assert resolver.certificates() == []


def test_storage_defaults_to_acme_json_in_the_working_directory(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    resolver = ACMEResolver("le", {"acme": {"tlsChallenge": {}}}, environ={})
    assert resolver.config.storage == str(tmp_path / "acme.json")


def test_resolvers_without_a_challenge_switchyard_answers_are_disabled_with_a_hint(
    tmp_path: Path,
) -> None:
    storage = str(tmp_path / "acme.json")
    resolvers, problems = build_resolvers(
        {
            "none": {"acme": {"storage": storage}},
            "noep": {"acme": {"httpChallenge": {}, "storage": storage}},
            "dns": {"acme": {"dnsChallenge": {"provider": "route53"}, "storage": storage}},
            "ts": {"tailscale": {}},
            "tls": {"acme": {"tlsChallenge": {}, "storage": storage, "preferredChain": "X"}},
        },
        environ={},
    )
    assert list(resolvers) == ["tls"]
    assert problems == [
        (
            "certificatesResolvers.none.acme: no challenge to answer; add tlsChallenge: {} or "
            "httpChallenge: {entryPoint: web} to this resolver; resolver disabled"
        ),
        (
            "certificatesResolvers.noep.acme.httpChallenge: no entryPoint; name the entry "
            "point the CA reaches on port 80, e.g. httpChallenge: {entryPoint: web}; "
            "resolver disabled"
        ),
        (
            "certificatesResolvers.dns.acme.dnsChallenge: the DNS-01 challenge is not "
            "implemented in Switchyard; use tlsChallenge: {} or httpChallenge: "
            "{entryPoint: web} instead; resolver disabled"
        ),
        (
            "certificatesResolvers.ts: has tailscale; only an acme resolver is supported; "
            "resolver disabled"
        ),
        "certificatesResolvers.tls.acme.preferredChain: not supported, ignored",
    ]


def test_http_challenge_resolver_names_its_entry_point_and_has_nothing_pending(
    tmp_path: Path,
) -> None:
    resolver = ACMEResolver(
        "le",
        {
            "acme": {
                "HTTPChallenge": {"EntryPoint": "web", "Delay": "1m30s"},
                "storage": str(tmp_path / "acme.json"),
            }
        },
        environ={},
        entry_points=["web", "websecure"],
    )
    assert resolver.problems == ()
    assert resolver.http_challenge_entrypoint() == "web"
    assert resolver.config.challenge_types == ("http-01",)
    assert resolver.config.http_challenge_delay == 90.0
    assert resolver.http_challenge_response("token", "example.com") is None
    tls_only = ACMEResolver(
        "le", {"acme": {"tlsChallenge": {}, "storage": str(tmp_path / "acme.json")}}
    )
    assert tls_only.http_challenge_entrypoint() is None


def test_both_challenges_configured_prefer_tls_alpn_01_as_lego_does(tmp_path: Path) -> None:
    resolver = ACMEResolver(
        "le",
        {
            "acme": {
                "httpChallenge": {"entryPoint": "web"},
                "tlsChallenge": {"delay": 2},
                "storage": str(tmp_path / "acme.json"),
            }
        },
        environ={},
    )
    assert resolver.config.challenge_types == ("tls-alpn-01", "http-01")
    assert resolver.config.challenge_delay("tls-alpn-01") == 2.0
    assert resolver.config.challenge_delay("http-01") == 0.0


def test_missing_or_unknown_http_challenge_entry_point_is_a_warning_naming_the_resolver(
    tmp_path: Path,
) -> None:
    storage = str(tmp_path / "acme.json")
    resolvers, problems = build_resolvers(
        {
            "typo": {"acme": {"httpChallenge": {"entryPoint": "wbe"}, "storage": storage}},
            "fallback": {"acme": {"tlsChallenge": {}, "httpChallenge": {}, "storage": storage}},
            "extra": {
                "acme": {"httpChallenge": {"entryPoint": "web", "port": 80}, "storage": storage}
            },
        },
        environ={},
        entry_points=["websecure", "web"],
    )
    assert list(resolvers) == ["typo", "fallback", "extra"]
    assert resolvers["typo"].http_challenge_entrypoint() == "wbe"
    assert resolvers["fallback"].http_challenge_entrypoint() is None
    assert problems == [
        (
            "certificatesResolvers.typo.acme.httpChallenge.entryPoint: 'wbe' is not an entry "
            "point (entry points: web, websecure); HTTP-01 challenges of this resolver cannot "
            "be answered"
        ),
        (
            "certificatesResolvers.fallback.acme.httpChallenge: no entryPoint; name the entry "
            "point the CA reaches on port 80, e.g. httpChallenge: {entryPoint: web}; only "
            "tlsChallenge is used"
        ),
        "certificatesResolvers.extra.acme.httpChallenge.port: unknown option, ignored",
    ]


def test_dns_challenge_beside_another_is_ignored_with_a_note(tmp_path: Path) -> None:
    resolver = ACMEResolver(
        "le",
        {
            "acme": {
                "tlsChallenge": {},
                "dnsChallenge": {"provider": "cloudflare"},
                "storage": str(tmp_path / "acme.json"),
            }
        },
        environ={},
    )
    assert resolver.config.challenge_types == ("tls-alpn-01",)
    assert resolver.problems == (
        (
            "certificatesResolvers.le.acme.dnsChallenge: the DNS-01 challenge is not "
            "implemented in Switchyard, ignored: names are validated with tlsChallenge; "
            "wildcard names need DNS-01 and get no certificate"
        ),
    )


@pytest.mark.parametrize(("delay", "seconds"), [("2500ms", 2.5), (3, 3.0), ("-1s", 0.0)])
def test_challenge_delay_is_a_traefik_duration(tmp_path: Path, delay: Any, seconds: float) -> None:
    config = {
        "httpChallenge": {"entryPoint": "web", "delay": delay},
        "storage": str(tmp_path / "a"),
    }
    resolver = ACMEResolver("le", {"acme": config}, environ={})
    assert resolver.config.http_challenge_delay == seconds


def test_challenge_delay_that_is_not_a_duration_disables_the_resolver(tmp_path: Path) -> None:
    config = {
        "httpChallenge": {"entryPoint": "web", "delay": "soon"},
        "storage": str(tmp_path / "a"),
    }
    with pytest.raises(
        ACMEError, match=r"^certificatesResolvers\.le\.acme\.httpChallenge\.delay: "
    ):
        ACMEResolver("le", {"acme": config}, environ={})


def test_unknown_key_type_falls_back_to_rsa4096_like_traefik(tmp_path: Path) -> None:
    resolver = ACMEResolver(
        "le",
        {"acme": {"tlsChallenge": {}, "keyType": "RSA1024", "storage": str(tmp_path / "a")}},
        environ={},
    )
    assert resolver.config.key_type == "RSA4096"
    assert resolver.problems == (
        (
            "certificatesResolvers.le.acme.keyType: unknown value 'RSA1024' (use one of "
            "EC256, EC384, RSA2048, RSA4096, RSA8192); using RSA4096"
        ),
    )


def test_certificates_duration_must_be_whole_hours(tmp_path: Path) -> None:
    with pytest.raises(ACMEError, match=r"certificatesDuration: 'soon' is not a number of hours"):
        ACMEResolver("le", {"acme": {"tlsChallenge": {}, "certificatesDuration": "soon"}})


def test_lego_ca_variables_apply_only_without_ca_certificates(tmp_path: Path) -> None:
    environ = {"LEGO_CA_CERTIFICATES": "/a.pem:/b.pem", "LEGO_CA_SYSTEM_CERT_POOL": "true"}
    storage = str(tmp_path / "acme.json")
    from_env = ACMEResolver(
        "le", {"acme": {"tlsChallenge": {}, "storage": storage}}, environ=environ
    )
    assert from_env.config.ca_certificates == ("/a.pem", "/b.pem")
    assert from_env.config.ca_system_cert_pool is True
    configured = ACMEResolver(
        "le",
        {"acme": {"tlsChallenge": {}, "storage": storage, "caCertificates": "/c.pem"}},
        environ=environ,
    )
    assert configured.config.ca_certificates == ("/c.pem",)
    assert configured.config.ca_system_cert_pool is False


def test_traefik_acme_json_certificates_are_served_at_once_and_expired_ones_are_not(
    tmp_path: Path,
) -> None:
    storage = tmp_path / "acme.json"
    valid = self_signed("a.example.com", expires_in=dt.timedelta(days=60))
    expired = self_signed("b.example.com", expires_in=dt.timedelta(days=-1))
    write_traefik_storage(storage, "le", [("a.example.com", *valid), ("b.example.com", *expired)])
    resolver = ACMEResolver("le", {"acme": {"tlsChallenge": {}, "storage": str(storage)}})
    assert resolver.certificates() == [valid]


def test_storage_readable_by_others_is_refused(tmp_path: Path) -> None:
    storage = tmp_path / "acme.json"
    write_traefik_storage(storage, "le", [], mode=0o644)
    with pytest.raises(ACMEError, match="permissions 644 are too open, please use 600"):
        ACMEResolver("le", {"acme": {"tlsChallenge": {}, "storage": str(storage)}})


def test_requests_for_names_already_held_or_wildcards_add_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = tmp_path / "acme.json"
    write_traefik_storage(
        storage, "le", [("a.example.com", *self_signed("a.example.com", dt.timedelta(days=60)))]
    )
    resolver = ACMEResolver("le", {"acme": {"tlsChallenge": {}, "storage": str(storage)}})
    resolver.request([("A.example.com.", []), ("*.example.com", [])])
    resolver.request([("b.example.com", ["a.example.com", "c.example.com"])])
    resolver.request([("c.example.com", ["b.example.com"])])  # asked for already
    assert resolver.pending() == [CertificateDomain("b.example.com", ("c.example.com",))]
    assert "wildcard names need the DNS-01 challenge" in caplog.text


def test_renewal_timing_follows_traefik_table() -> None:
    day = 86400.0
    assert renewal_timing(2160) == (30 * day, day)
    assert renewal_timing(365 * 24) == (120 * day, 7 * day)
    assert renewal_timing(30 * 24) == (10 * day, 12 * 3600.0)
    assert renewal_timing(7 * 24) == (2 * day, 2 * 3600.0)
    assert renewal_timing(24) == (6 * 3600.0, 600.0)
    assert renewal_timing(1) == (1200.0, 60.0)


def test_certificate_is_renewed_30_days_before_expiry_or_at_two_thirds_of_a_short_life() -> None:
    renew_period, _ = renewal_timing(2160)
    day = 86400.0

    def renewal_in_days(issued_ago: int, expires_in: int) -> float:
        chain, key = self_signed(
            DOMAIN, dt.timedelta(days=expires_in), issued_ago=dt.timedelta(days=issued_ago)
        )
        certificate = ACMECertificate(CertificateDomain(DOMAIN), chain, key)
        return round((certificate.renewal_time(renew_period) - time.time()) / day)

    assert renewal_in_days(0, 90) == 60  # Let's Encrypt: 30 days before expiry
    assert renewal_in_days(0, 5 * 365) == 5 * 365 - 30  # pebble's 5 years: the same 30 days
    # A CA issuing 6-day certificates under the default duration: not renewed on arrival.
    assert renewal_in_days(0, 6) == 4
    broken = ACMECertificate(CertificateDomain(DOMAIN), b"not a certificate", b"")
    assert broken.renewal_time(renew_period) == 0.0


# --- through the router itself -------------------------------------------------------------


def test_switchyard_obtains_a_certificate_for_its_router_and_serves_it(
    pebble: Pebble,
    responder_socket: socket.socket,
    tmp_path: Path,
    backends: Any,
    loop_thread: Any,
) -> None:
    """The whole path: router with certResolver, challenge answered by the entry point."""
    from tests.harness import greeting_name, start_router, stop_router

    pebble.start()
    backend = backends.whoami("acme-backend")
    port = pebble.tls_port
    responder_socket.close()  # Switchyard's entry point takes the port pebble validates on
    app = start_router(
        loop_thread,
        tmp_path,
        f"""
tcp:
  routers:
    site:
      rule: "HostSNI(`{DOMAIN}`)"
      service: app
      tls: {{certResolver: le}}
  services:
    app: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{backend}"}}]}}}}
""",
        entrypoints={"websecure": f"127.0.0.1:{port}"},
        certificatesResolvers={"le": resolver_config(pebble, tmp_path / "acme.json")},
        providers={
            "providersThrottleDuration": "50ms",
            "file": {"filename": str(tmp_path / "dynamic.yml")},
        },
    )
    try:
        root = pebble.management("/roots/0")
        deadline = time.monotonic() + 60
        while True:
            try:
                served = tls_client_sees(port, root)
                break
            except ssl.SSLCertVerificationError:
                # Still the default certificate: the order is in progress.
                assert time.monotonic() < deadline, pebble.log_tail()
                time.sleep(0.2)
        assert dns_names(served) == [DOMAIN]
        context = ssl.create_default_context(cadata=root.decode())
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=DOMAIN) as tls,
        ):
            assert greeting_name(tls) == "acme-backend"
    finally:
        stop_router(loop_thread, app)


def test_switchyard_answers_http_01_on_its_entry_point_and_serves_the_certificate(
    pebble: Pebble, http_socket: socket.socket, tmp_path: Path, loop_thread: LoopThread
) -> None:
    # The whole product: pebble fetches the tokens from the "web" entry point's HTTP server,
    # and the certificate then terminates TLS for an HTTPS router on "websecure".
    pebble.start()
    web_port = http_socket.getsockname()[1]
    http_socket.close()  # Switchyard binds the port pebble was told about
    challenges = {"httpChallenge": {"entryPoint": "web", "delay": "100ms"}}
    app = start_router(
        loop_thread, tmp_path, f"""
http:
  routers:
    site:
      rule: "Host(`{DOMAIN}`)"
      service: nowhere
      entryPoints: [websecure]
      tls: {{certResolver: le}}
  services:
    nowhere: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:9"}}]}}}}
""", entrypoints={"web": f"127.0.0.1:{web_port}", "websecure": "127.0.0.1:0"},
        certificatesResolvers={"le": resolver_config(pebble, tmp_path / "acme.json", challenges)})
    try:
        deadline = time.monotonic() + 30
        while not app.resolvers["le"].certificates():
            if time.monotonic() > deadline:
                pytest.fail(f"no certificate within 30 s\n{pebble.log_tail()}")
            time.sleep(0.2)
        root = pebble.management("/roots/0")
        deadline = time.monotonic() + 10
        while True:  # the rebuild that installs the new certificate follows the resolver
            try:
                leaf = tls_client_sees(app.entrypoints["websecure"].port, root)
                break
            except ssl.SSLError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert DOMAIN in dns_names(leaf)
    finally:
        stop_router(loop_thread, app)
