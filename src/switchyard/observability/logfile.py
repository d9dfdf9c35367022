"""A log file (or stdout) that access logs append lines to in batches."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import IO


class LogFile:
    """Lines waiting to be written, written every `buffering` lines or once a second.

    A busy router then makes one write call per batch, not per line. Several access logs
    (TCP connections, HTTP requests) can share one LogFile, so their lines never interleave
    mid-line and the file is opened once.
    """

    def __init__(self, path: str = "", buffering: int = 0) -> None:
        self.path = path
        self.buffering = max(buffering, 0)
        self._stream: IO[str] = open(path, "a", encoding="utf-8") if path else sys.stdout  # noqa: SIM115
        self._pending: list[str] = []
        self._last_flush = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def add(self, line: str) -> None:
        """Queue one line (without its newline); written now if the batch is full or old."""
        self._pending.append(line)
        now = time.monotonic()
        if len(self._pending) > self.buffering or now - self._last_flush >= 1.0:
            self.flush()
        elif self._timer is None:
            # A quiet period must not leave lines unwritten for long.
            self._timer = asyncio.get_running_loop().call_later(1.0, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._last_flush = time.monotonic()
        if not self._pending or self._closed:
            return
        lines, self._pending = self._pending, []
        try:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()
        except OSError:
            pass  # a full disk must not take the data plane down

    def close(self) -> None:
        """Write what is pending and close the file; later calls (a shared file) do nothing."""
        self.flush()
        if self._closed:
            return
        self._closed = True
        if self.path:
            self._stream.close()
