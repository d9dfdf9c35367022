"""Traefik's HTTP access log from RequestRecords: CLF and JSON lines, filters and fields."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from switchyard.config.static import AccessLog
from switchyard.http.handler import Attempt, RequestRecord
from switchyard.observability.accesslog import AccessLog as TCPAccessLog
from switchyard.observability.http_accesslog import (
    AccessLogFields,
    AccessLogFilters,
    HTTPAccessLog,
    canonical_header_name,
    status_ranges,
)
from switchyard.observability.logfile import LogFile
from switchyard.observability.record import CloseReason, ConnectionRecord, Side

STARTED = 1796168756.25  # 2026-12-01T23:45:56.25Z
NOW = STARTED + 1.5
SERVER = "http://127.0.0.1:18081"
SERVICE = "app@file"

# Every key Traefik's JSON line had for a proxied plain-HTTP request (Traefik 3.7, seen live).
TRAEFIK_PROXIED_KEYS = {
    "ClientAddr", "ClientHost", "ClientPort", "ClientUsername", "DownstreamContentSize",
    "DownstreamStatus", "Duration", "OriginContentSize", "OriginDuration", "OriginStatus",
    "Overhead", "RequestAddr", "RequestContentSize", "RequestCount", "RequestHost",
    "RequestMethod", "RequestPath", "RequestPort", "RequestProtocol", "RequestScheme",
    "RetryAttempts", "RouterName", "ServiceAddr", "ServiceName", "ServiceURL", "StartLocal",
    "StartUTC", "entryPointName", "level", "msg", "time"}


def record(**changes: Any) -> RequestRecord:
    """A proxied GET as the engine records it, with ``changes``."""
    fields: dict[str, Any] = {
        "entry_point": "web", "router": "app@file", "service": "app@file", "server": SERVER,
        "method": "GET", "path": "/", "protocol": "HTTP/1.1", "status": 200,
        "request_bytes": 0, "response_bytes": 916, "duration": 0.001802663,
        "client_ip": "127.0.0.1", "client_port": 38502, "tls": False, "closed_by": "",
        "started_at": STARTED, "host": "127.0.0.1:18080", "origin_status": 200,
        "origin_bytes": 916}
    if not changes.get("server", SERVER):  # no server was tried: nothing came from one
        fields.update(origin_status=0, origin_bytes=0)
    return RequestRecord(**{**fields, **changes})


class Lines(LogFile):
    """A LogFile that keeps its lines, for reading back."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)


def access_log(fmt: str = "common", **options: Any) -> tuple[HTTPAccessLog, Lines]:
    lines = Lines()
    filters = options.pop("filters", None)
    fields = options.pop("fields", None)
    log = HTTPAccessLog(lines, fmt, clock=lambda: NOW,
                        filters=AccessLogFilters.model_validate(filters) if filters else None,
                        fields=AccessLogFields.model_validate(fields) if fields else None,
                        **options)
    return log, lines


def json_line(*records: RequestRecord, **options: Any) -> dict[str, Any]:
    log, lines = access_log("json", **options)
    for made in records:
        log.record(made)
    assert len(lines.lines) == 1, lines.lines
    return json.loads(lines.lines[0])  # type: ignore[no-any-return]


@pytest.fixture
def utc() -> Iterator[None]:
    with local_zone("UTC"):
        yield


@contextlib.contextmanager
def local_zone(zone: str) -> Iterator[None]:
    """Run with ``zone`` as the process's local time zone."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


# -- formats ---------------------------------------------------------------------------------


def test_common_line_is_traefiks_clf_with_count_router_service_and_milliseconds(
        utc: None) -> None:
    log, lines = access_log()
    log.record(record(query="q=1"))
    assert lines.lines == [
        ('127.0.0.1 - - [01/Dec/2026:23:45:56 +0000] "GET /?q=1 HTTP/1.1" 200 916 "-" "-" 1 '
        '"app@file" "http://127.0.0.1:18081" 1ms')]


def test_generic_clf_line_stops_after_the_user_agent(utc: None) -> None:
    log, lines = access_log("genericCLF", fields={"headers": {"defaultMode": "keep"}})
    log.record(record(method="POST", path="/form", request_bytes=11, status=501,
                      response_bytes=357, request_headers=[
                          (b"User-Agent", b'curl "8"'), (b"Referer", b"http://ref/")]))
    assert lines.lines == [
        ('127.0.0.1 - - [01/Dec/2026:23:45:56 +0000] "POST /form HTTP/1.1" 501 357 '
        '"http://ref/" "curl \\"8\\""')]


def test_common_line_of_an_unrouted_request_has_dashes_for_router_and_service(
        utc: None) -> None:
    log, lines = access_log()
    log.record(record(router="", service="", server="", status=404, response_bytes=19,
                      duration=0.0000484))
    assert lines.lines == [
        ('127.0.0.1 - - [01/Dec/2026:23:45:56 +0000] "GET / HTTP/1.1" 404 19 "-" "-" 1 '
        '"-" "-" 0ms')]


def test_json_line_has_traefiks_keys_values_and_types(utc: None) -> None:
    entry = json_line(record(query="q=1", origin_duration=0.001480294))
    assert set(entry) == TRAEFIK_PROXIED_KEYS
    assert entry == {
        "ClientAddr": "127.0.0.1:38502", "ClientHost": "127.0.0.1", "ClientPort": "38502",
        "ClientUsername": "-", "DownstreamContentSize": 916, "DownstreamStatus": 200,
        "Duration": 1802663, "OriginContentSize": 916, "OriginDuration": 1480294,
        "OriginStatus": 200, "Overhead": 322369, "RequestAddr": "127.0.0.1:18080",
        "RequestContentSize": 0, "RequestCount": 1, "RequestHost": "127.0.0.1",
        "RequestMethod": "GET", "RequestPath": "/?q=1", "RequestPort": "18080",
        "RequestProtocol": "HTTP/1.1", "RequestScheme": "http", "RetryAttempts": 0,
        "RouterName": "app@file", "ServiceAddr": "127.0.0.1:18081", "ServiceName": "app@file",
        "ServiceURL": SERVER, "StartLocal": "2026-12-01T23:45:56.25Z",
        "StartUTC": "2026-12-01T23:45:56.25Z", "entryPointName": "web", "level": "info",
        "msg": "", "time": "2026-12-01T23:45:57Z"}


def test_json_keys_are_sorted_and_escaped_as_go_writes_them(utc: None) -> None:
    log, lines = access_log("json")
    log.record(record(path="/a<b>", query="x=1&y=é"))
    line = lines.lines[0]
    assert line.startswith('{"ClientAddr":') and line.endswith(',"time":"2026-12-01T23:45:57Z"}')
    assert '"RequestPath":"/a\\u003cb\\u003e?x=1\\u0026y=é"' in line
    keys = list(json.loads(line))
    assert keys == sorted(keys)


def test_local_start_time_is_in_the_local_zone_and_clf_uses_utc() -> None:
    with local_zone("Europe/Paris"):
        entry = json_line(record())
        log, lines = access_log()
        log.record(record())
    assert entry["StartUTC"] == "2026-12-01T23:45:56.25Z"
    assert entry["StartLocal"] == "2026-12-02T00:45:56.25+01:00"
    assert entry["time"] == "2026-12-02T00:45:57+01:00"
    assert "[01/Dec/2026:23:45:56 +0000]" in lines.lines[0]


def test_start_time_defaults_to_the_end_minus_the_duration(utc: None) -> None:
    entry = json_line(record(started_at=0.0, duration=0.5))
    assert entry["StartUTC"] == "2026-12-01T23:45:57.25Z"


def test_unknown_format_falls_back_to_common(caplog: pytest.LogCaptureFixture) -> None:
    log, _ = access_log("JSON")
    assert log.format_name == "common"
    assert "accessLog.format 'JSON'" in caplog.text


# -- fields from the record ------------------------------------------------------------------


def test_an_unrouted_request_has_no_router_or_service_and_zero_origin(utc: None) -> None:
    entry = json_line(record(router="", service="", server="", status=404, response_bytes=19,
                             duration=0.0000484))
    assert not {"RouterName", "ServiceName", "ServiceURL", "ServiceAddr"} & set(entry)
    assert (entry["OriginStatus"], entry["OriginContentSize"], entry["OriginDuration"]) == (
        0, 0, 0)
    assert entry["Overhead"] == entry["Duration"] == 48400
    assert entry["GzipRatio"] == 0  # Traefik's quirk: origin size 0 against 19 sent


def test_a_router_whose_service_had_no_server_logs_the_router_only(utc: None) -> None:
    entry = json_line(record(server="", status=503, response_bytes=19))
    assert entry["RouterName"] == "app@file"
    assert "ServiceName" not in entry and entry["OriginStatus"] == 0


def test_origin_fields_come_from_the_record_when_it_carries_them(utc: None) -> None:
    entry = json_line(record(origin_status=304, origin_bytes=2000, response_bytes=500,
                             origin_duration=0.001))
    assert (entry["OriginStatus"], entry["OriginContentSize"]) == (304, 2000)
    assert entry["GzipRatio"] == 4
    assert entry["Overhead"] == entry["Duration"] - 1_000_000


def test_client_gone_before_a_response_is_logged_as_499(utc: None) -> None:
    # The reverse proxy had the request (origin_duration): Traefik's proxy writes 499 there too.
    entry = json_line(record(status=0, closed_by="client", response_bytes=0, duration=1.0,
                             origin_status=0, origin_bytes=0, origin_duration=1.0))
    assert (entry["DownstreamStatus"], entry["OriginStatus"]) == (499, 499)
    waiting = json_line(record(status=0, closed_by="client", response_bytes=0, server="",
                               origin_status=0, origin_bytes=0))
    assert (waiting["DownstreamStatus"], waiting["OriginStatus"]) == (499, 0)


@pytest.mark.parametrize(("host", "split"), [
    ("example.com:8080", ("example.com", "8080")),
    ("example.com", ("example.com", "-")),
    ("[::1]:80", ("::1", "80")),
    ("[::1]", ("[::1]", "-")),
    ("a:b:c", ("a:b:c", "-")),
    ("host:", ("host", "")),
])
def test_request_host_and_port_are_split_as_go_splits_them(utc: None, host: str,
                                                           split: tuple[str, str]) -> None:
    entry = json_line(record(host=host))
    assert (entry["RequestAddr"], entry["RequestHost"], entry["RequestPort"]) == (host, *split)


def test_request_host_is_absent_without_a_host_and_never_a_request_header(
        utc: None) -> None:
    without = json_line(record(host="", request_headers=[(b"HOST", b"app.test")]),
                        fields={"headers": {"defaultMode": "keep"}})
    assert not {"RequestAddr", "RequestHost", "RequestPort", "request_Host"} & set(without)


def test_ipv6_client_address_is_bracketed(utc: None) -> None:
    entry = json_line(record(client_ip="::1", client_port=5000))
    assert (entry["ClientAddr"], entry["ClientHost"], entry["ClientPort"]) == (
        "[::1]:5000", "::1", "5000")


def test_x_forwarded_for_becomes_the_client_host(utc: None) -> None:
    entry = json_line(record(request_headers=[(b"x-forwarded-for", b"10.0.0.1, 10.0.0.2")]))
    assert (entry["ClientHost"], entry["ClientAddr"]) == ("10.0.0.1, 10.0.0.2",
                                                          "127.0.0.1:38502")


def test_tls_requests_log_scheme_version_cipher_and_client_subject(utc: None) -> None:
    entry = json_line(record(tls=True, tls_version="TLSv1.3",
                             tls_cipher="TLS_AES_128_GCM_SHA256",
                             tls_peer_certificates=(client_certificate(),)))
    assert (entry["RequestScheme"], entry["TLSVersion"], entry["TLSCipher"],
            entry["TLSClientSubject"]) == ("https", "1.3", "TLS_AES_128_GCM_SHA256",
                                           "SERIALNUMBER=42,CN=client,O=Example,C=FR")
    assert "TLSClientSubject" not in json_line(record(tls=True))
    assert "TLSVersion" not in json_line(record())


def client_certificate() -> bytes:
    """A self-signed certificate (DER) whose subject has C, O, CN and serialNumber, in order."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "client"),
                      x509.NameAttribute(NameOID.SERIAL_NUMBER, "42")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(1).not_valid_before(now)
                   .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.DER)


def test_username_comes_from_the_record_and_retries_are_never_counted(utc: None) -> None:
    entry = json_line(record(client_username="alice"))
    assert (entry["ClientUsername"], entry["RetryAttempts"]) == ("alice", 0)
    assert json_line(record(client_username=""))["ClientUsername"] == ""
    assert json_line(record())["ClientUsername"] == "-"


def test_request_count_numbers_every_request_also_those_filtered_out(utc: None) -> None:
    log, lines = access_log("json", filters={"statusCodes": ["500-599"]})
    for status in (200, 502, 200, 503):
        log.record(record(status=status))
    assert [json.loads(line)["RequestCount"] for line in lines.lines] == [2, 4]


def test_internal_services_are_logged_only_with_add_internals(utc: None) -> None:
    ping = {"router": "ping@internal", "service": "ping@internal", "server": ""}
    log, lines = access_log()
    log.record(record(**ping))
    assert lines.lines == []
    log, lines = access_log(add_internals=True)
    log.record(record(**ping))
    assert len(lines.lines) == 1


def test_a_weighted_router_service_still_counts_as_internal_when_the_router_says_so(
        utc: None) -> None:
    log, lines = access_log()
    log.record(record(router_service="api@internal"))
    assert lines.lines == []


# -- filters ---------------------------------------------------------------------------------


def test_status_code_filter_keeps_codes_in_its_ranges(utc: None) -> None:
    log, lines = access_log(filters={"statusCodes": "200,300-302"})
    for status in (200, 201, 301, 302, 303, 404):
        log.record(record(status=status))
    assert [line.split('" ')[1].split()[0] for line in lines.lines] == ["200", "301", "302"]


def test_retry_attempts_filter_alone_keeps_nothing_as_in_traefik(utc: None) -> None:
    # Traefik 3.7's retry middleware has no access log listener: no request counts as retried.
    log, lines = access_log(filters={"retryAttempts": "true"})
    log.record(record(attempts=(Attempt(SERVICE, 502, 0, 11, 0.001),)))
    assert lines.lines == []
    log, lines = access_log(filters={"retryAttempts": "true", "statusCodes": ["200"]})
    log.record(record())
    assert len(lines.lines) == 1


def test_min_duration_filter_keeps_slower_requests(utc: None) -> None:
    log, lines = access_log(filters={"minDuration": "10ms"})
    log.record(record(duration=0.01))
    log.record(record(duration=0.011))
    assert [line.rsplit(" ", 1)[1] for line in lines.lines] == ["11ms"]


def test_any_filter_that_matches_keeps_the_line(utc: None) -> None:
    log, lines = access_log(filters={"statusCodes": ["500"], "minDuration": 1})
    log.record(record(status=500))
    log.record(record(duration=2.0))
    log.record(record())
    assert len(lines.lines) == 2


def test_an_empty_filters_section_keeps_everything(utc: None) -> None:
    log, lines = access_log(filters={"statusCodes": []})
    log.record(record())
    assert len(lines.lines) == 1


def test_an_unreadable_status_code_turns_the_status_filter_off(
        caplog: pytest.LogCaptureFixture) -> None:
    assert status_ranges(["200", "3xx"]) == []
    assert "'3xx' is not a status code" in caplog.text
    assert status_ranges(["200", "300-302", "400-499-500"]) == [(200, 200), (300, 302),
                                                                (400, 499)]


# -- fields ----------------------------------------------------------------------------------


def test_fields_names_drop_a_field_whatever_its_case(utc: None) -> None:
    entry = json_line(record(), fields={"names": {"clientusername": "drop",
                                                  "StartLocal": "drop"}})
    assert not {"ClientUsername", "StartLocal"} & set(entry)
    assert "ClientHost" in entry


def test_default_mode_drop_keeps_only_the_named_fields_and_clf_shows_dashes(
        utc: None) -> None:
    fields = {"defaultMode": "drop", "names": {"RequestMethod": "keep", "Duration": "keep"}}
    entry = json_line(record(), fields=fields)
    assert set(entry) == {"RequestMethod", "Duration", "level", "msg", "time"}
    log, lines = access_log(fields=fields)
    log.record(record(duration=0.25))
    assert lines.lines == ['- - - [-] "GET - -" - - "-" "-" - "-" "-" 250ms']


def test_an_unknown_field_mode_follows_the_default_mode(utc: None) -> None:
    entry = json_line(record(), fields={"defaultMode": "drop", "names": {"ClientHost": "x"}})
    assert "ClientHost" not in entry


def test_headers_are_dropped_unless_asked_for(utc: None) -> None:
    headers = {"request_headers": [(b"user-agent", b"curl/8")],
               "response_headers": [(b"content-type", b"text/plain")]}
    entry = json_line(record(**headers))
    assert not [key for key in entry if key.startswith(("request_", "origin_", "downstream_"))]


def test_kept_headers_are_prefixed_canonical_and_joined(utc: None) -> None:
    entry = json_line(record(
        request_headers=[(b"x-my-header", b"a"), (b"X-MY-HEADER", b"b"), (b"Host", b"h")],
        origin_headers=[(b"content-length", b"916")], origin_duration=0.001,
        response_headers=[(b"Content-Type", b"text/html")]),
        fields={"headers": {"defaultMode": "keep"}})
    assert entry["request_X-My-Header"] == "a,b"
    assert entry["origin_Content-Length"] == "916"
    assert entry["downstream_Content-Type"] == "text/html"
    assert "request_Host" not in entry


def test_responses_without_a_content_type_log_traefiks_empty_one(utc: None) -> None:
    """Traefik's entry point puts an empty Content-Type in every response header map."""
    keep = {"headers": {"defaultMode": "keep"}}
    proxied = json_line(record(origin_headers=[(b"Date", b"x")], origin_duration=0.001,
                               response_headers=[(b"Date", b"x")]), fields=keep)
    assert (proxied["origin_Content-Type"], proxied["downstream_Content-Type"]) == ("", "")
    answered = json_line(record(server="", response_headers=[]), fields=keep)
    assert answered["downstream_Content-Type"] == ""
    assert not [key for key in answered if key.startswith("origin_")]


def test_a_switched_protocol_is_logged_with_status_0_as_traefik_does(utc: None) -> None:
    entry = json_line(record(status=101, origin_status=101, origin_duration=0.001))
    assert (entry["DownstreamStatus"], entry["OriginStatus"]) == (0, 0)


def test_header_names_redact_or_drop_one_header(utc: None) -> None:
    entry = json_line(record(request_headers=[
        (b"Authorization", b"Basic eDp5"), (b"cookie", b"s=1"), (b"Accept", b"*/*")]),
        fields={"headers": {"defaultMode": "keep",
                            "names": {"authorization": "redact", "Cookie": "drop"}}})
    assert entry["request_Authorization"] == "REDACTED"
    assert "request_Cookie" not in entry and entry["request_Accept"] == "*/*"


def test_kept_referer_and_user_agent_appear_quoted_in_common_lines(utc: None) -> None:
    log, lines = access_log(fields={"headers": {"names": {"User-Agent": "keep"}}})
    log.record(record(request_headers=[(b"user-agent", b"ua/1"), (b"referer", b"http://r/")]))
    assert ' 200 916 "-" "ua/1" 1 ' in lines.lines[0]


def test_query_parameters_are_dropped_from_the_path_when_asked(utc: None) -> None:
    entry = json_line(record(query="token=secret"),
                      fields={"queryParameters": {"defaultMode": "drop"}})
    assert entry["RequestPath"] == "/"


@pytest.mark.parametrize(("name", "canonical"), [
    ("user-agent", "User-Agent"), ("X-FORWARDED-FOR", "X-Forwarded-For"),
    ("x_custom", "X_custom"), ("bad name", "bad name"), ("", "")])
def test_header_names_are_canonicalized_as_go_does(name: str, canonical: str) -> None:
    assert canonical_header_name(name) == canonical


# -- configuration and output ----------------------------------------------------------------


def test_options_come_from_the_static_access_log_section(tmp_path: Path, utc: None) -> None:
    path = tmp_path / "access.log"
    config = AccessLog.model_validate({
        "filePath": str(path), "format": "json", "addInternals": "true",
        "filters": {"statuscodes": ["400-499"], "MinDuration": "1s"},
        "fields": {"names": {"ClientHost": "drop"},
                   "headers": {"defaultmode": "redact"}}})
    log = HTTPAccessLog.from_config(config)
    log.record(record(status=200))
    log.record(record(status=404, request_headers=[(b"Accept", b"*/*")]))
    log.close()
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(entries) == 1 and entries[0]["DownstreamStatus"] == 404
    assert "ClientHost" not in entries[0] and entries[0]["request_Accept"] == "REDACTED"
    assert log.add_internals


def test_http_and_tcp_access_logs_can_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    shared = LogFile(str(path))
    http = HTTPAccessLog(shared)
    tcp = TCPAccessLog(output=shared)
    http.record(record())
    connection = ConnectionRecord("db", client_ip="127.0.0.1", client_port=5000)
    connection.finish(CloseReason.NORMAL, "", Side.CLIENT)
    tcp.record(connection)
    http.close()
    tcp.close()  # a shared file closes once
    written = path.read_text().splitlines()
    assert len(written) == 2 and '"GET / HTTP/1.1" 200' in written[0]
    assert json.loads(written[1])["entrypoint"] == "db"


def test_buffered_lines_are_written_in_one_batch(tmp_path: Path) -> None:
    path = tmp_path / "access.log"

    async def run() -> list[int]:
        log = HTTPAccessLog(LogFile(str(path), buffering=2))
        sizes = []
        for _ in range(3):
            log.record(record())
            sizes.append(len(path.read_text().splitlines()))
        log.close()
        sizes.append(len(path.read_text().splitlines()))
        return sizes

    assert asyncio.run(run()) == [0, 0, 3, 3]


def test_trailers_join_the_response_header_fields_as_in_gos_header_map(utc: None) -> None:
    entry = json_line(record(origin_headers=[(b"Trailer", b"Grpc-Status")], origin_duration=0.001,
                             response_headers=[(b"Trailer", b"Grpc-Status")],
                             response_trailers=[(b"grpc-status", b"7")]),
                      fields={"headers": {"defaultMode": "keep"}})
    assert (entry["origin_Grpc-Status"], entry["downstream_Grpc-Status"]) == ("7", "7")
