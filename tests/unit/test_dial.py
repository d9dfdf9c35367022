"""The dial stage on its own, against real sockets on 127.0.0.1: its deadline, its errors, and
a cancellation from outside (the client left), which must not turn into a dial error."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Iterator

import pytest

from switchyard.proxy.dial import DialError, dial
from switchyard.services import Server, ServersTransport


@pytest.fixture
def stuck() -> Iterator[tuple[str, int]]:
    """A listener whose accept queue is full: the kernel drops further SYNs, a dial hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    try:
        yield listener.getsockname()
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def _server(address: tuple[str, int]) -> Server:
    host, port = address
    return Server(f"{host}:{port}", host, port)


def test_a_dial_past_its_timeout_is_a_dial_error_and_leaves_the_task_uncancelled(
        stuck: tuple[str, int]) -> None:
    async def attempt() -> tuple[str, int, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(DialError) as caught:
            await dial(_server(stuck), ServersTransport(dial_timeout=0.2), asyncio.Protocol)
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0)  # a task still marked as cancelling would be cancelled here
        return str(caught.value), task.cancelling(), loop.time() - started

    message, cancelling, took = asyncio.run(attempt())
    assert message == "timed out after 0.2s"
    assert cancelling == 0
    assert 0.15 < took < 2


def test_a_cancellation_from_outside_propagates_instead_of_a_dial_error(
        stuck: tuple[str, int]) -> None:
    async def attempt() -> None:
        task = asyncio.ensure_future(
            dial(_server(stuck), ServersTransport(dial_timeout=5), asyncio.Protocol))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(attempt())


def test_a_refused_dial_says_why() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        address = closed.getsockname()  # bound, never listening: the kernel refuses

    async def attempt() -> str:
        with pytest.raises(DialError) as caught:
            await dial(_server(address), ServersTransport(dial_timeout=2), asyncio.Protocol)
        return str(caught.value)

    assert asyncio.run(attempt()).startswith(f"[Errno {errno.ECONNREFUSED}]")


def test_a_dial_within_its_timeout_gives_a_connected_transport() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    async def attempt() -> tuple[str, int]:
        transport = await dial(_server(listener.getsockname()),
                               ServersTransport(dial_timeout=0.5), asyncio.Protocol)
        await asyncio.sleep(0.7)  # past the timeout: the deadline must be gone, not fire
        peer = transport.get_extra_info("peername")
        assert not transport.is_closing()
        transport.close()
        return peer[0], peer[1]

    try:
        assert asyncio.run(attempt()) == listener.getsockname()
    finally:
        listener.close()
