"""Traefik's HTTP access log: one line per request, in its CLF, generic CLF or JSON format.

``HTTPAccessLog.record`` is an HTTP entry point's observer. Lines go to a LogFile, which the TCP
access log can share, batched by ``bufferingSize``. The options that apply to HTTP requests
work as in Traefik: ``format`` (``common``, ``genericCLF``, ``json``; anything else is
``common``), ``filters`` (``statusCodes`` ranges, ``retryAttempts``, ``minDuration``: a line is
kept if any set filter says so; Traefik 3.7's retry middleware reports no retries to the log,
so RetryAttempts is always 0 and ``retryAttempts`` alone keeps nothing), ``fields``
(``defaultMode`` and ``names`` keep or drop fields; ``headers.defaultMode`` and
``headers.names`` keep, drop or redact header fields, dropped by default;
``queryParameters.defaultMode``) and ``addInternals``. A request whose router (or, without a
router, entry point) has ``observability.accessLogs: false`` is neither logged nor numbered.

Where the fields come from (the RequestRecord, see switchyard.http.handler): RequestPath is the
target as the entry point normalized it; RequestAddr/Host/Port the Host field; ``request_``
fields the request's header fields as the router and its middlewares left them (the
X-Forwarded-* set at the entry point included, as Traefik logs its shared header map);
``origin_`` fields and Origin* what the reverse proxy wrote (zero when no server was tried);
``downstream_`` fields the head the client was sent, without the Content-Length Go's server
would only add on the wire, with trailers after it and an empty Content-Type when none was set
(Traefik's entry point puts one in every response's header map); ClientUsername what
basicAuth, digestAuth or forwardAuth's ``headerField`` named (``-`` without one, ``""`` for
basicAuth without credentials); TLSClientSubject the client certificate's subject as Go prints
a pkix.Name. An upgraded (WebSocket) request is logged when its tunnel closes, with status 0
as Traefik's captures see a hijacked connection.

The status is 499 when the client went away before a response was started, as in Traefik.
GzipRatio is the origin size over the size sent (compress). Traefik's Kubernetes and tracing
fields have no source here.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import Field

from switchyard.addresses import host_port
from switchyard.config.durations import Duration
from switchyard.config.dynamic import StrList, TraefikModel
from switchyard.observability.http_record import (
    HeaderFields,
    first_value,
    is_internal,
    reported,
    status_code,
    tls_client_subject,
    tls_names,
)
from switchyard.observability.logfile import LogFile

if TYPE_CHECKING:
    from switchyard.config.static import AccessLog
    from switchyard.http.handler import RequestRecord

__all__ = ["AccessLogFields", "AccessLogFilters", "FieldHeaders", "FieldQueryParameters",
           "HTTPAccessLog", "canonical_header_name", "status_ranges"]

log = logging.getLogger("switchyard.accesslog")

FORMATS = ("common", "genericCLF", "json")
KEEP, DROP, REDACT = "keep", "drop", "redact"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_GO_INT = re.compile(r"[+-]?[0-9]+")
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# Go's encoding/json escapes these inside strings (HTML safety, JavaScript line separators).
_GO_JSON_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                                  "\u2028": "\\u2028", "\u2029": "\\u2029"})
_QUOTED_DASH = '"-"'  # what CLF shows for a missing quoted field


class AccessLogFilters(TraefikModel):
    """``accessLog.filters``: keep only the lines one of the set filters asks for."""

    status_codes: StrList = Field(default_factory=list)
    retry_attempts: bool = False
    min_duration: Duration = 0.0


class FieldHeaders(TraefikModel):
    """``accessLog.fields.headers``: header fields are dropped unless said otherwise."""

    default_mode: str = DROP
    names: dict[str, str] = Field(default_factory=dict)


class FieldQueryParameters(TraefikModel):
    """``accessLog.fields.queryParameters``: whether RequestPath keeps the query."""

    default_mode: str = KEEP


class AccessLogFields(TraefikModel):
    """``accessLog.fields``: which fields a line has."""

    default_mode: str = KEEP
    names: dict[str, str] = Field(default_factory=dict)
    headers: FieldHeaders = Field(default_factory=FieldHeaders)
    query_parameters: FieldQueryParameters = Field(default_factory=FieldQueryParameters)


class HTTPAccessLog:
    """Writes one line per served request to ``output`` (an entry point's Observer: ``record``).

    ``clock`` gives the wall-clock time (the JSON ``time`` field, and StartUTC for records
    without ``started_at``).
    """

    def __init__(self, output: LogFile, fmt: str = "common", *,
                 filters: AccessLogFilters | None = None, fields: AccessLogFields | None = None,
                 add_internals: bool = False, clock: Callable[[], float] = time.time) -> None:
        if fmt not in FORMATS:
            log.error('accessLog.format %r is not one of common, genericCLF, json; using '
                      '"common", as Traefik does', fmt)
            fmt = "common"
        self.output = output
        self.format_name = fmt
        self.filters = filters
        self.status_ranges = status_ranges(filters.status_codes) if filters is not None else []
        fields = fields if fields is not None else AccessLogFields()
        self._keep_default = _mode(fields.default_mode, KEEP, (KEEP, DROP)) == KEEP
        self._field_modes = {name.lower(): mode for name, mode in fields.names.items()}
        self._keeps_all = self._keep_default and all(
            _mode(mode, KEEP, (KEEP, DROP)) == KEEP for mode in self._field_modes.values())
        self._header_default = _mode(fields.headers.default_mode, KEEP, (KEEP, DROP, REDACT))
        self._header_modes = {canonical_header_name(name): mode
                              for name, mode in fields.headers.names.items()}
        self._logs_headers = self._header_default != DROP or any(
            mode in (KEEP, REDACT) for mode in self._header_modes.values())
        self._keep_query = _mode(fields.query_parameters.default_mode, KEEP,
                                 (KEEP, DROP)) == KEEP
        self.add_internals = add_internals
        self.clock = clock
        self.request_count = 0
        self._time_cache = (-1, "")

    @classmethod
    def from_config(cls, config: AccessLog, output: LogFile | None = None) -> HTTPAccessLog:
        """From the static ``accessLog`` section; ``output`` may be the TCP log's LogFile."""
        if output is None:
            output = LogFile(config.file_path, config.buffering_size)
        filters = AccessLogFilters.model_validate(config.filters or {})
        fields = AccessLogFields.model_validate(config.fields or {})
        return cls(output, config.format, filters=filters, fields=fields,
                   add_internals=config.add_internals)

    # -- per request ---------------------------------------------------------------------------

    def record(self, record: RequestRecord) -> None:
        """Log one served request, unless a filter leaves it out."""
        entry = self.entry(record)
        if entry is not None:
            self.output.add(self.format(entry))

    def entry(self, record: RequestRecord) -> dict[str, Any] | None:
        """The fields of ``record``'s line after ``fields``; None when it is not logged."""
        if not record.access_logs or not self.add_internals and is_internal(record):
            return None
        # Traefik numbers every request it could log, before the filters decide.
        self.request_count += 1
        status = status_code(record)
        if not self._wanted(status, record.duration):
            return None
        core = self._core(record, status)
        entry = (core if self._keeps_all else
                 {key: value for key, value in core.items() if self._keeps(key)})
        if self._logs_headers:
            self._add_headers(entry, "request_", record.request_headers)
            # Go's proxy adds announced trailers to the response header map after the body.
            trailers = record.response_trailers
            if record.origin_duration is not None:  # the reverse proxy had the request
                self._add_headers(entry, "origin_", (*record.origin_headers, *trailers)
                                  if trailers else record.origin_headers, response=True)
            self._add_headers(entry, "downstream_", (*record.response_headers, *trailers)
                              if trailers else record.response_headers, response=True)
        return entry

    def _core(self, record: RequestRecord, status: int) -> dict[str, Any]:
        duration = _nanoseconds(record.duration)
        start = datetime.fromtimestamp(record.started_at or self.clock() - record.duration, UTC)
        forwarded_for = first_value(record.request_headers, b"x-forwarded-for")
        username = record.client_username
        core: dict[str, Any] = {
            "StartUTC": start,
            "StartLocal": start.astimezone(),
            "entryPointName": record.entry_point,
            "RequestCount": self.request_count,
            "ClientAddr": host_port(record.client_ip, record.client_port),
            "ClientHost": _text(forwarded_for) if forwarded_for else record.client_ip,
            "ClientPort": str(record.client_port),
            "ClientUsername": "-" if username is None else username,
            "RequestMethod": record.method,
            "RequestPath": self._request_path(record),
            "RequestProtocol": record.protocol,
            "RequestScheme": "https" if record.tls else "http",
            "RequestContentSize": record.request_bytes,
            # Traefik 3.7's retry middleware tells the access log nothing: always 0.
            "RetryAttempts": 0,
            "DownstreamStatus": status,
            "DownstreamContentSize": record.response_bytes,
            "Duration": duration,
        }
        host = record.host
        if host:
            core["RequestAddr"] = host
            core["RequestHost"], core["RequestPort"] = _split_host_port(host)
        if record.tls:
            core["TLSVersion"], core["TLSCipher"] = tls_names(record)
            subject = tls_client_subject(record)
            if subject:
                core["TLSClientSubject"] = subject
        if record.router:
            core["RouterName"] = record.router
        if record.server:
            core["ServiceName"] = record.service
            core["ServiceURL"] = record.server
            core["ServiceAddr"] = urlsplit(record.server).netloc.rpartition("@")[2]
        origin_size = record.origin_bytes
        carried = record.origin_duration
        origin_duration = _nanoseconds(carried) if carried is not None else 0
        origin_status = reported(record.origin_status)
        if not record.origin_status and carried is not None and record.status == 0:
            origin_status = status  # the client left while the proxy waited: its own 499
        core["OriginStatus"] = origin_status
        core["OriginContentSize"] = origin_size
        core["OriginDuration"] = origin_duration
        core["Overhead"] = duration - origin_duration
        size = record.response_bytes
        if size != origin_size and size != 0:
            core["GzipRatio"] = origin_size / size
        return core

    def _request_path(self, record: RequestRecord) -> str:
        query = record.query if self._keep_query else None
        return record.path if query is None else f"{record.path}?{query}"

    def _wanted(self, status: int, duration: float) -> bool:
        filters = self.filters
        if filters is None:
            return True
        if not self.status_ranges and not filters.retry_attempts and filters.min_duration <= 0:
            return True  # an empty filters section filters nothing
        if any(low <= status <= high for low, high in self.status_ranges):
            return True
        return 0 < filters.min_duration < duration

    def _keeps(self, field: str) -> bool:
        mode = self._field_modes.get(field.lower())
        if mode is None:
            return self._keep_default
        return _mode(mode, KEEP if self._keep_default else DROP, (KEEP, DROP)) == KEEP

    def _add_headers(self, entry: dict[str, Any], prefix: str, fields: HeaderFields,
                     response: bool = False) -> None:
        joined: dict[str, list[str]] = {}
        for name, value in fields:
            canonical = canonical_header_name(_text(name))
            if canonical == "Host" and not response:
                continue  # Go keeps it apart from the header map (RequestAddr)
            joined.setdefault(canonical, []).append(_text(value))
        if response and "Content-Type" not in joined:
            # Traefik's entry point puts an empty Content-Type in every response's header map
            # (so that Go does not sniff one), and logs it when nobody set one.
            joined["Content-Type"] = []
        for canonical, values in joined.items():
            mode = _mode(self._header_modes.get(canonical, self._header_default),
                         self._header_default, (KEEP, DROP, REDACT))
            if mode == KEEP:
                entry[prefix + canonical] = ",".join(values)
            elif mode == REDACT:
                entry[prefix + canonical] = "REDACTED"

    # -- formats -------------------------------------------------------------------------------

    def format(self, entry: dict[str, Any]) -> str:
        """The line for ``entry`` (without its newline)."""
        if self.format_name == "json":
            return self._json(entry)
        if "StartUTC" in entry:
            timestamp = _clf_time(entry["StartUTC"])
        elif "StartLocal" in entry:
            timestamp = _clf_time(entry["StartLocal"].astimezone())
        else:
            timestamp = "-"
        line = (f'{_clf(entry, "ClientHost")} - {_clf(entry, "ClientUsername")} [{timestamp}] '
                f'"{_clf(entry, "RequestMethod")} {_clf(entry, "RequestPath")} '
                f'{_clf(entry, "RequestProtocol")}" {_clf(entry, "DownstreamStatus", True)} '
                f'{_clf(entry, "DownstreamContentSize", True)} '
                f'{_clf(entry, "request_Referer", True, _QUOTED_DASH)} '
                f'{_clf(entry, "request_User-Agent", True, _QUOTED_DASH)}')
        if self.format_name == "genericCLF":
            return line
        elapsed_ms = entry.get("Duration", 0) // 1_000_000
        return (f'{line} {_clf(entry, "RequestCount", True)} '
                f'{_clf(entry, "RouterName", True, _QUOTED_DASH)} '
                f'{_clf(entry, "ServiceURL", True, _QUOTED_DASH)} {elapsed_ms}ms')

    def _json(self, entry: dict[str, Any]) -> str:
        data = dict(entry)
        for key in ("StartUTC", "StartLocal"):
            if key in data:
                data[key] = _rfc3339(data[key], True)
        ratio = data.get("GzipRatio")
        if ratio is not None and ratio.is_integer():
            data["GzipRatio"] = int(ratio)  # Go prints 0, not 0.0
        data["level"] = "info"
        data["msg"] = ""
        data["time"] = self._log_time()
        text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return text.translate(_GO_JSON_ESCAPES)

    def _log_time(self) -> str:
        # Whole seconds in the local zone: the same text for every line within one second.
        second = int(self.clock())
        if second != self._time_cache[0]:
            moment = datetime.fromtimestamp(second, UTC).astimezone()
            self._time_cache = (second, _rfc3339(moment, False))
        return self._time_cache[1]

    def flush(self) -> None:
        self.output.flush()

    def close(self) -> None:
        self.output.close()


def status_ranges(blocks: list[str]) -> list[tuple[int, int]]:
    """``filters.statusCodes`` (``"200"``, ``"300-302"``) as (low, high) pairs.

    As in Traefik, one unreadable block disables the status filter (logged).
    """
    ranges = []
    for block in blocks:
        codes = block.split("-")
        low, high = codes[0], codes[1] if len(codes) > 1 else codes[0]
        if not (_GO_INT.fullmatch(low) and _GO_INT.fullmatch(high)):
            log.error("accessLog.filters.statusCodes: %r is not a status code or a range such "
                      "as 300-302; the status filter is off", block)
            return []
        ranges.append((int(low), int(high)))
    return ranges


def canonical_header_name(name: str) -> str:
    """Go's canonical spelling of a header name (``user-agent`` -> ``User-Agent``)."""
    if not name or any(char not in _TOKEN for char in name):
        return name  # Go leaves names it cannot canonicalize as they are
    letters, upper = [], True
    for char in name:
        letters.append(char.upper() if upper else char.lower())
        upper = char == "-"
    return "".join(letters)


def _mode(value: str, default: str, allowed: tuple[str, ...]) -> str:
    # An unknown mode falls back to the default, as Traefik does.
    return value if value in allowed else default


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _nanoseconds(seconds: float) -> int:
    return round(seconds * 1_000_000_000)


def _split_host_port(value: str) -> tuple[str, str]:
    """Go's net.SplitHostPort, with (value, "-") when it fails, as Traefik logs it."""
    colon = value.rfind(":")
    if colon < 0:
        return value, "-"
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or end + 1 != colon:
            return value, "-"
        host = value[1:end]
    else:
        host = value[:colon]
        if ":" in host:
            return value, "-"
    if "[" in host or "]" in host or "]" in value[colon:]:
        return value, "-"
    return host, value[colon + 1:]


def _clf(entry: dict[str, Any], key: str, quoted: bool = False, default: str = "-") -> str:
    value = entry.get(key)
    if value is None:
        return default
    if isinstance(value, str):
        if not value:
            return default
        return '"' + value.replace('"', '\\"') + '"' if quoted else value
    return str(value)


def _clf_time(moment: datetime) -> str:
    return (f"{moment.day:02d}/{_MONTHS[moment.month - 1]}/{moment.year}:"
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} {_offset(moment, '')}")


def _rfc3339(moment: datetime, fraction: bool) -> str:
    """Go's RFC3339 (``fraction``: RFC3339Nano, trailing zeros trimmed) with ``Z`` for UTC."""
    text = (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}")
    if fraction and moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    offset = _offset(moment, ":")
    return text + ("Z" if offset == "+00:00" else offset)


def _offset(moment: datetime, separator: str) -> str:
    delta = moment.utcoffset()
    minutes = int(delta.total_seconds()) // 60 if delta is not None else 0
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{separator}{minutes:02d}"
