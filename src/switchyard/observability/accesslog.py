"""The TCP access log: one line per connection when it ends (JSON or text), buffered."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import IO, Any

from switchyard.addresses import host_port
from switchyard.observability.record import ConnectionRecord

_TLS_VERSIONS = {0x0301: "1.0", 0x0302: "1.1", 0x0303: "1.2", 0x0304: "1.3"}


class AccessLog:
    """Collects finished connections and writes them in batches.

    Writing happens on the event loop but only every `buffering` entries or
    once a second, so a busy router makes one write call per batch, not per
    connection.
    """

    def __init__(self, path: str = "", fmt: str = "json", buffering: int = 0) -> None:
        self.path = path
        self.json = fmt.lower() == "json"
        self.buffering = max(buffering, 0)
        self._stream: IO[str] = open(path, "a", encoding="utf-8") if path else sys.stdout  # noqa: SIM115
        self._pending: list[str] = []
        self._last_flush = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None

    def entry(self, record: ConnectionRecord) -> dict[str, Any]:
        """What the log says about one connection."""
        started = record.started_at
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started))
            + f".{int(started % 1 * 1000):03d}Z",
            "duration_ms": round(record.duration() * 1000, 3),
            "client": host_port(record.client_ip, record.client_port),
            "entrypoint": record.entrypoint,
            "router": record.router,
            "service": record.service,
            "server": record.server,
            "tls": record.is_tls,
            "bytes_in": record.bytes_in,
            "bytes_out": record.bytes_out,
            "closed_by": record.closed_by.value if record.closed_by else "client",
            "reason": record.reason.value if record.reason else "normal",
        }
        if record.is_tls:
            entry["sni"] = record.sni or ""
            entry["alpn"] = list(record.alpn)
            versions = [v for v in record.tls_versions if v in _TLS_VERSIONS]
            entry["tls_version"] = (record.tls_version.removeprefix("TLSv") if record.tls_version
                                    else _TLS_VERSIONS[max(versions)] if versions else "")
        if record.detail:
            entry["detail"] = record.detail
        return entry

    def format(self, entry: dict[str, Any]) -> str:
        if self.json:
            return json.dumps(entry, separators=(",", ":"))
        return (f'{entry["client"]} [{entry["time"]}] {entry["entrypoint"]} '
                f'"{entry["router"] or "-"}" "{entry["service"] or "-"}" '
                f'{entry["server"] or "-"} {entry.get("sni") or "-"} '
                f'{entry["bytes_in"]} {entry["bytes_out"]} {entry["duration_ms"]}ms '
                f'{entry["reason"]} {entry["closed_by"]}')

    def record(self, record: ConnectionRecord) -> None:
        self._pending.append(self.format(self.entry(record)))
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
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        try:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()
        except OSError:
            pass  # a full disk must not take the data plane down

    def close(self) -> None:
        self.flush()
        if self.path:
            self._stream.close()
