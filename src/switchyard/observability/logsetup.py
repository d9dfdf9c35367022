"""Logging setup: Traefik's log levels, text or JSON lines, tagged with the worker that wrote them."""

from __future__ import annotations

import json
import logging
import sys
import time

_LEVELS = {"TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO,
           "WARN": logging.WARNING, "WARNING": logging.WARNING, "ERROR": logging.ERROR,
           "FATAL": logging.CRITICAL, "PANIC": logging.CRITICAL}
# asyncio reports what goes wrong in the event loop itself; its lines go through our handler
# so that they carry the time, the level and the worker like ours.
_LOGGERS = ("switchyard", "asyncio")


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        # The worker goes after the level, where a reader scanning the columns looks for it.
        super().__init__("%(asctime)s %(levelname)-7s %(worker_tag)s%(name)s: %(message)s",
                         "%Y-%m-%dT%H:%M:%S")
        self.worker: int | None = None

    def format(self, record: logging.LogRecord) -> str:
        record.worker_tag = "" if self.worker is None else f"worker={self.worker} "
        return super().format(record)


class _JSONFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self.worker: int | None = None

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.worker is not None:
            entry["worker"] = self.worker
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str = "ERROR", fmt: str = "common", file_path: str = "") -> None:
    """Route every switchyard logger to stderr (or `file_path`) at `level` (Traefik's names)."""
    handler: logging.Handler = (logging.FileHandler(file_path, encoding="utf-8") if file_path
                                else logging.StreamHandler(sys.stderr))
    handler.setFormatter(_JSONFormatter() if fmt.lower() == "json" else _TextFormatter())
    threshold = _LEVELS.get(level.upper(), logging.INFO)
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        # asyncio's debug chatter is not ours to show; its warnings and errors are.
        logger.setLevel(threshold if name == "switchyard" else max(threshold, logging.WARNING))
        logger.propagate = False


def tag_worker(index: int) -> None:
    """From now on, every line this process logs says it was written by worker `index`."""
    for name in _LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler.formatter, _TextFormatter | _JSONFormatter):
                handler.formatter.worker = index
