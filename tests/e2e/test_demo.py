"""`switchyard demo`: what it prints to try works, the API, dashboard and metrics answer."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import connect, greeting_name


def free_run(count: int) -> int:
    """A first port of ``count`` consecutive ports that are free now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError("no run of free ports")


@pytest.fixture
def demo() -> Iterator[str]:
    """The running demo's printed text (up to "Ctrl-C stops.")."""
    process = subprocess.Popen([sys.executable, "-m", "switchyard", "demo", "--base-port",
                                str(free_run(6))], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Ctrl-C stops."):
            break
    text = "".join(lines)
    try:
        assert "Ctrl-C stops." in text, text
        yield text
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        found = re.search(r"Static config: (\S+)/traefik.yml", text)
        if found:
            shutil.rmtree(found.group(1), ignore_errors=True)


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.status, answer.read()


def printed_command(text: str, starts: str) -> list[str]:
    """The printed shell command starting with ``starts``, its continuation lines joined."""
    joined = text.replace("\\\n", " ")
    line = next(line.strip() for line in joined.splitlines() if line.strip().startswith(starts))
    return shlex.split(line)


def test_the_demo_serves_api_dashboard_metrics_and_logs_each_connection(demo: str) -> None:
    urls = dict(re.findall(r"^  (Dashboard|API|Metrics|Ping): +(\S+)", demo, re.MULTILINE))
    assert get(urls["Dashboard"])[0] == 200
    status, raw = get(urls["API"])
    assert status == 200 and "plain@file" in json.loads(raw)["tcpRouters"]
    assert b"traefik_" in get(urls["Metrics"])[1]
    assert get(urls["Ping"]) == (200, b"OK")

    port = int(re.search(r"nc 127\.0\.0\.1 (\d+)", demo).group(1))  # type: ignore[union-attr]
    with connect(port) as conn:
        assert greeting_name(conn) in ("plain-a", "plain-b")
    log = Path(re.search(r"Access log: +(\S+)", demo).group(1))  # type: ignore[union-attr]
    deadline = time.monotonic() + 5
    while not (log.exists() and "plain@file" in log.read_text()):
        assert time.monotonic() < deadline, "no access log line for the connection"
        time.sleep(0.05)
    assert json.loads(log.read_text().splitlines()[-1])["router"] == "plain@file"


def test_the_printed_check_explain_and_healthcheck_commands_work(demo: str) -> None:
    healthcheck = re.search(r"\((switchyard healthcheck [^)]+)\)", demo)
    assert healthcheck is not None
    for command, expected in ((printed_command(demo, "switchyard check"), "configuration OK"),
                              (printed_command(demo, "switchyard explain -c"), "secure@file"),
                              (shlex.split(healthcheck.group(1)), "OK: http://")):
        done = subprocess.run([sys.executable, "-m", "switchyard", *command[1:]],
                              capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert expected in done.stdout, (command, done.stdout)


def test_the_printed_http_and_https_commands_reach_the_http_routers(demo: str) -> None:
    def run(starts: str) -> str:
        command = printed_command(demo, starts)
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        return done.stdout

    names = set()
    for _ in range(2):  # round robin: one request each
        answer = run("curl -i -H 'Host: app.demo.localhost' http://")
        assert answer.startswith("HTTP/1.1 200"), answer
        assert "X-Demo: switchyard" in answer
        assert "\nGET / HTTP/1.1\n" in answer and "X-Forwarded-Host: app.demo.localhost" in answer
        names.add(re.search(r"Hostname: (\S+)", answer).group(1))  # type: ignore[union-attr]
    assert names == {"app-a", "app-b"}

    api = run("curl -H 'Host: app.demo.localhost' http://127.0.0.1:")
    assert "Hostname: api-backend" in api, api
    assert "GET /users HTTP/1.1" in api and "X-Forwarded-Prefix: /api" in api

    secure = run("curl -k --resolve app.demo.localhost")
    assert re.search(r"Hostname: app-[ab]", secure), secure
    assert "X-Forwarded-Proto: https" in secure

    # The printed explain for the HTTP entry point asks the running instance which router.
    web = next(shlex.split(line) for line in demo.replace("\\\n", " ").splitlines()
               if "switchyard explain" in line and "--entrypoint web" in line)
    done = subprocess.run([sys.executable, "-m", "switchyard", *web[1:]], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0 and "app-api@file" in done.stdout, (done.stdout, done.stderr)
