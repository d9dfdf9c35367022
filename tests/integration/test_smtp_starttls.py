"""SMTP STARTTLS on an entry point, against a real Postfix and `openssl s_client -starttls smtp`."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from switchyard.config.loader import static_from_dict
from switchyard.server import Switchyard
from tests.harness import LoopThread, ensure_command, free_port, stop_router

pytestmark = pytest.mark.slow

QUEUE_DIRS = ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming",
              "private", "saved", "trace", "maildrop", "public")


class Postfix:
    """A Postfix of its own (configuration, queue, port) on 127.0.0.1, TLS with `cert`."""

    def __init__(self, root: Path, ca: Any) -> None:
        ensure_command("postfix", "postfix")
        self.port = free_port()
        self.conf, queue, data = root / "conf", root / "queue", root / "data"
        for folder in (self.conf, queue / "pid", data):
            folder.mkdir(parents=True)
        shutil.chown(data, "postfix")
        for name in QUEUE_DIRS:
            (queue / name).mkdir()
            shutil.chown(queue / name, "postfix", "postdrop" if name in ("maildrop", "public")
                         else None)
        ca.issue_cert("mx.test").private_key_and_cert_chain_pem.write_to_path(
            self.conf / "cert.pem")
        (self.conf / "main.cf").write_text(f"""compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.test
mydestination =
smtpd_tls_chain_files = {self.conf / "cert.pem"}
smtpd_tls_security_level = may
maillog_file = {root / "maillog"}
maillog_file_prefixes = {root}
""")
        services = []
        for line in Path("/etc/postfix/master.cf").read_text().splitlines():
            fields = line.split()
            if line.startswith(("#", " ", "\t")) or len(fields) < 8:
                services.append(line)
                continue
            if fields[:2] == ["smtp", "inet"]:
                fields[0] = f"127.0.0.1:{self.port}"
            fields[4] = "n"  # no chroot: the queue is a test folder
            services.append(" ".join(fields))
        (self.conf / "master.cf").write_text("\n".join(services) + "\n")
        started = subprocess.run(["postfix", "-c", str(self.conf), "start"],
                                 capture_output=True, timeout=30, check=False)
        if started.returncode:
            raise RuntimeError(f"postfix start: {started.stdout!r} {started.stderr!r} "
                               + (root / "maillog").read_text()[-1500:]
                               if (root / "maillog").exists() else "")
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "postfix did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.conf), "stop"], capture_output=True,
                       timeout=30, check=False)


@pytest.fixture
def postfix(ca: Any) -> Iterator[Postfix]:
    # Postfix's own user must reach its queue and data: not under pytest's private tmp_path.
    root = Path(tempfile.mkdtemp(prefix="switchyard-postfix-"))
    root.chmod(0o755)
    try:
        try:
            server = Postfix(root / "postfix", ca)
        except (OSError, RuntimeError, subprocess.SubprocessError, LookupError) as exc:
            pytest.skip(f"Postfix unavailable: {exc}")
        yield server
        server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def s_client(port: int, name: str, ca_file: Path, commands: bytes) -> str:
    ensure_command("openssl", "openssl")
    done = subprocess.run(
        ["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}",
         "-servername", name, "-CAfile", str(ca_file), "-verify_return_error",
         "-verify_hostname", name, "-ign_eof", "-quiet"],
        input=commands, capture_output=True, timeout=30, check=False)
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


def test_starttls_routes_by_sni_to_postfix_passed_through_or_terminated(
        loop_thread: LoopThread, tmp_path: Path, ca: Any, postfix: Postfix) -> None:
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    ours = ca.issue_cert("mail.test")
    ours.cert_chain_pems[0].write_to_path(tmp_path / "mail.crt")
    ours.private_key_pem.write_to_path(tmp_path / "mail.key")
    backend = [{"address": f"127.0.0.1:{postfix.port}"}]
    dynamic = tmp_path / "dynamic.json"
    dynamic.write_text(json.dumps({
        "tcp": {"routers": {
            "passed": {"rule": "HostSNI(`mx.test`)", "service": "mx", "tls": {"passthrough": True}},
            "ended": {"rule": "HostSNI(`mail.test`)", "service": "mx", "tls": {}}},
            "services": {"mx": {"loadBalancer": {"servers": backend}}}},
        "tls": {"certificates": [{"certFile": str(tmp_path / "mail.crt"),
                                  "keyFile": str(tmp_path / "mail.key")}]}}))
    static, issues = static_from_dict({
        "entryPoints": {"smtp": {"address": "127.0.0.1:0",
                                 "starttls": {"protocol": "smtp", "hostname": "edge.test"}}},
        "providers": {"file": {"filename": str(dynamic)}}}, "test")
    assert not issues
    app = Switchyard(static)
    loop_thread.run(app.start())
    port = app.entrypoints["smtp"].port
    try:
        # Passed through: the certificate checked is Postfix's own, Postfix answers inside TLS.
        said = s_client(port, "mx.test", tmp_path / "ca.pem", b"EHLO client.test\r\nQUIT\r\n")
        assert "250-mx.test" in said and "221 2.0.0 Bye" in said, said
        # Terminated with Switchyard's certificate for mail.test, plaintext to Postfix.
        said = s_client(port, "mail.test", tmp_path / "ca.pem", b"EHLO client.test\r\nQUIT\r\n")
        assert "250-mx.test" in said and "221 2.0.0 Bye" in said, said
        # No router for the name: the TLS handshake fails after our 220.
        said = s_client(port, "other.test", tmp_path / "ca.pem", b"QUIT\r\n")
        assert "250-mx.test" not in said
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            assert sock.recv(100) == b"220 edge.test ESMTP\r\n"  # our greeting, not Postfix's
            sock.sendall(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n")
            time.sleep(0.2)
            assert b"530 5.7.0 Must issue a STARTTLS command first" in sock.recv(1000)
    finally:
        stop_router(loop_thread, app)
