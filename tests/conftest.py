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


@pytest.fixture(autouse=True)
def _isolated_switchyard_logger() -> Iterator[None]:
    """Commands run in-process (check, explain) configure logging; undo it after each test.

    Without this, a test that ran `configure_logging` earlier stops log records
    from reaching pytest's caplog in later tests (propagation is switched off).
    """
    import logging

    loggers = [logging.getLogger(name) for name in ("switchyard", "asyncio")]
    saved = [(list(logger.handlers), logger.level, logger.propagate) for logger in loggers]
    yield
    for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate
