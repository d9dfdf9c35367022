"""Heads, header lookups, Go's status lines and the lazily re-armed deadline."""

from __future__ import annotations

import asyncio

from switchyard.http.deadline import Deadline
from switchyard.http.message import Headers, RequestHead, reason, split_target, status_line


def test_header_lookups_ignore_case_and_keep_spelling() -> None:
    headers = Headers([(b"Content-Type", b"a"), (b"X-Many", b"1"), (b"x-many", b"2")])
    assert headers.get(b"content-type") == b"a"
    assert headers.get(b"absent") is None
    assert headers.values(b"x-many") == [b"1", b"2"]
    headers.set(b"x-many", b"3", b"X-Many")
    assert list(headers) == [(b"Content-Type", b"a"), (b"X-Many", b"3")]
    assert Headers([(b"Connection", b"keep-alive, Upgrade")]).has_token(b"connection", b"upgrade")


def test_request_head_exposes_host_path_query_as_text() -> None:
    head = RequestHead(b"GET", b"/a%20b?x=1", b"1.1", Headers([(b"Host", b"app.test:80")]))
    assert (head.host, head.path, head.query) == ("app.test:80", "/a%20b", "x=1")
    assert split_target(b"https://h.test:8443/p?q") == (b"/p", b"q")


def test_status_lines_use_go_status_text() -> None:
    assert status_line(404) == b"HTTP/1.1 404 Not Found\r\n"
    assert status_line(418) == b"HTTP/1.1 418 I'm a teapot\r\n"
    assert status_line(599) == b"HTTP/1.1 599 status code 599\r\n"
    assert reason(502) == "Bad Gateway" and reason(504) == "Gateway Timeout"


def test_deadline_fires_once_at_the_latest_setting() -> None:
    async def scenario() -> list[float]:
        loop = asyncio.get_running_loop()
        fired: list[float] = []
        started = loop.time()
        deadline = Deadline(loop, lambda: fired.append(loop.time() - started))
        deadline.set(0.05)
        await asyncio.sleep(0.03)
        deadline.set(0.1)  # moved on: the first timer re-arms instead of firing
        await asyncio.sleep(0.2)
        deadline.set(0.05)
        deadline.clear()
        await asyncio.sleep(0.1)
        return fired

    fired = asyncio.run(scenario())
    assert len(fired) == 1 and 0.12 <= fired[0] < 0.2
