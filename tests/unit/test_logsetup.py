"""Log lines: Traefik's levels, text or JSON, and the worker that wrote each one."""

from __future__ import annotations

import json
import logging

import pytest

from switchyard.observability.logsetup import configure_logging, tag_worker


def test_text_lines_say_which_worker_wrote_them(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    logging.getLogger("switchyard.test").info("before")
    tag_worker(2)
    logging.getLogger("switchyard.test").error("after")

    before, after = capsys.readouterr().err.splitlines()
    assert before.endswith(" INFO    switchyard.test: before")
    assert after.endswith(" ERROR   worker=2 switchyard.test: after")


def test_json_lines_carry_a_worker_field(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    tag_worker(0)
    logging.getLogger("switchyard.test").warning("hello")

    entry = json.loads(capsys.readouterr().err)
    assert (entry["worker"], entry["level"], entry["message"]) == (0, "warning", "hello")


def test_event_loop_warnings_go_through_the_same_handler(
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("DEBUG")
    tag_worker(1)
    logging.getLogger("asyncio").debug("loop chatter stays out")
    logging.getLogger("asyncio").warning("something the loop saw")

    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith(" WARNING worker=1 asyncio: something the loop saw")
