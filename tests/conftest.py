"""Shared fixtures: a loop thread, whoami backends, certificates."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import Backends, LoopThread


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.stop()


@pytest.fixture
def backends(loop_thread: LoopThread) -> Iterator[Backends]:
    found = Backends(loop_thread)
    yield found
    found.close()


@pytest.fixture(scope="session")
def ca():  # type: ignore[no-untyped-def]
    import trustme

    return trustme.CA()
