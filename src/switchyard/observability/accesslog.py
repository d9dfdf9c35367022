"""The TCP access log: one line per connection when it ends (JSON or text), buffered."""

from __future__ import annotations

import json
import time
from typing import Any

from switchyard.addresses import host_port
from switchyard.observability.logfile import LogFile
from switchyard.observability.record import ConnectionRecord

_TLS_VERSIONS = {0x0301: "1.0", 0x0302: "1.1", 0x0303: "1.2", 0x0304: "1.3"}


class AccessLog:
    """Collects finished connections and writes them in batches (see LogFile).

    ``output`` is a LogFile shared with the HTTP access log; without one the log opens
    ``path`` (stdout when empty) itself.
    """

    def __init__(self, path: str = "", fmt: str = "json", buffering: int = 0,
                 output: LogFile | None = None) -> None:
        self.json = fmt.lower() == "json"
        self.output = output if output is not None else LogFile(path, buffering)

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
        self.output.add(self.format(self.entry(record)))

    def flush(self) -> None:
        self.output.flush()

    def close(self) -> None:
        self.output.close()
