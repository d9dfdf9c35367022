"""gRPC-Web by hand: requests as a browser's grpc-web client sends them, answers taken apart.

``call(port, method, path, headers, body)`` sends one request over HTTP/1.1 and returns what
a client observes, normalised for comparison: status, header fields (without Date; the order
of Access-Control-Expose-Headers, which Go takes from a map, sorted), and the body with the
text form's base64 parts decoded, split into gRPC-Web frames.
"""

from __future__ import annotations

import base64
import http.client
from typing import Any

from tests.grpckit import grpc_frames

__all__ = ["call", "decode_text"]


def decode_text(body: bytes) -> bytes:
    """A grpc-web-text body: one or more padded base64 parts."""
    out, rest = b"", body
    while rest:
        pad = rest.find(b"=")
        end = len(rest) if pad < 0 else min(len(rest), (pad // 4 + 1) * 4)
        out += base64.b64decode(rest[:end])
        rest = rest[end:]
    return out


def call(port: int, method: str, path: str, headers: dict[str, str],
         body: bytes = b"") -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        fields = []
        for name, value in response.getheaders():
            if name.lower() == "date":
                continue
            if name.lower() == "access-control-expose-headers":
                value = ", ".join(sorted(part.strip() for part in value.split(",")))
            fields.append((name, value))
        content_type = response.getheader("Content-Type") or ""
        if content_type.startswith("application/grpc-web-text"):
            data = decode_text(data)
        frames = grpc_frames(data) if content_type.startswith("application/grpc-web") else data
        return {"status": response.status, "fields": sorted(fields), "body": frames}
    finally:
        connection.close()
