"""Several Switchyard processes sharing each port (SO_REUSEPORT), one event loop each."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable

from switchyard.observability.logsetup import tag_worker

log = logging.getLogger("switchyard")


def run_workers(count: int, serve: Callable[[int], None]) -> int:
    """Fork `count` workers that each call `serve(index)`; return the exit status.

    The parent only supervises: it passes SIGTERM/SIGINT/SIGHUP on to every
    worker and exits once all have exited (non-zero if any failed). Every line a
    worker logs carries its index (`worker=N`, or a "worker" field in JSON).
    """
    children: dict[int, int] = {}
    for index in range(count):
        pid = os.fork()
        if pid == 0:
            tag_worker(index)
            status = 0
            try:
                serve(index)
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("worker %d failed", index)
                status = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(status)
        children[pid] = index

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    failed = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid, -1)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            failed = 1
            log.error("worker %d exited with status %d", index, code)
    return failed
