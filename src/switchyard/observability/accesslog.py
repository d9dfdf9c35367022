"""The TCP access log: one line per connection when it ends (JSON or text), buffered."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from switchyard.proxy.connection import ClientConnection

_TLS_VERSIONS = {0x0301: "1.0", 0x0302: "1.1", 0x0303: "1.2", 0x0304: "1.3"}


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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

    def entry(self, conn: ClientConnection, duration: float) -> dict[str, Any]:
        """What the log says about one connection."""
        route = conn.route
        server = conn.server
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(conn.started_at))
            + f".{int(conn.started_at % 1 * 1000):03d}Z",
            "duration_ms": round(duration * 1000, 3),
            "client": _address(conn.client_ip, conn.client_port),
            "entrypoint": conn.entrypoint.name,
            "router": route.name if route else "",
            "service": conn.service_name,
            "server": server.address if server else "",
            "tls": conn.is_tls,
            "bytes_in": conn.bytes_in,
            "bytes_out": conn.bytes_out,
            "closed_by": conn.closed_by or "client",
            "reason": conn.close_kind or "normal",
        }
        if conn.is_tls:
            entry["sni"] = conn.sni or ""
            entry["alpn"] = list(conn.alpn)
            versions = [v for v in conn.tls_versions if v in _TLS_VERSIONS]
            entry["tls_version"] = _TLS_VERSIONS[max(versions)] if versions else ""
        if conn.close_detail:
            entry["detail"] = conn.close_detail
        return entry

    def format(self, entry: dict[str, Any]) -> str:
        if self.json:
            return json.dumps(entry, separators=(",", ":"))
        return (f'{entry["client"]} [{entry["time"]}] {entry["entrypoint"]} '
                f'"{entry["router"] or "-"}" "{entry["service"] or "-"}" '
                f'{entry["server"] or "-"} {entry.get("sni") or "-"} '
                f'{entry["bytes_in"]} {entry["bytes_out"]} {entry["duration_ms"]}ms '
                f'{entry["reason"]} {entry["closed_by"]}')

    def record(self, conn: ClientConnection, duration: float) -> None:
        self._pending.append(self.format(self.entry(conn, duration)))
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
