"""What the reverse proxy changes on the way through: target path, Host, hop-by-hop fields, XFF.

Pure functions over heads, as Traefik's reverse proxy (Go's httputil.ReverseProxy with Traefik's
rewrite) does it, so each rule can be tested without sockets.
"""

from __future__ import annotations

from switchyard.http.message import Headers, split_target

__all__ = [
    "HOP_BY_HOP",
    "backend_request_fields",
    "backend_request_head",
    "join_url_path",
    "outgoing_target",
    "response_headers_for_client",
]

#: Go's hop-by-hop list (lower-case); the fields a Connection header names are dropped too.
HOP_BY_HOP = frozenset({
    b"connection", b"proxy-connection", b"keep-alive", b"proxy-authenticate",
    b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade",
})


def join_url_path(base: bytes, path: bytes) -> bytes:
    """The server URL's path joined with the request path by exactly one slash.

    Works on the escaped forms, which gives the same bytes on the wire as Go's JoinURLPath.
    """
    if not base:
        return path or b"/"
    base_slash = base.endswith(b"/")
    path_slash = path.startswith(b"/")
    if base_slash and path_slash:
        return base + path[1:]
    if not base_slash and not path_slash:
        return base + b"/" + path
    return base + path


_QUESTION = ord("?")


def outgoing_target(target: bytes, server_path: bytes, preserve_path: bool) -> bytes:
    """The request-target sent to the backend.

    The request's own path (an absolute-form target reduced to path and query); with
    ``preservePath`` the server URL's path goes in front. ``;`` in the query becomes ``&``, as
    Traefik does.
    """
    # `63 in target` is '?' as an int: much cheaper than a bytes-in-bytes search.
    if target[:1] != b"/" or _QUESTION in target or preserve_path:
        path, query = split_target(target)
        if target == b"*":
            return target
        if preserve_path:
            path = join_url_path(server_path, path)
        if not path:
            path = b"/"
        if query or b"?" in target:
            return path + b"?" + query.replace(b";", b"&")
        return path
    return target


def backend_request_head(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], *,
                         client_ip: str | None, host: bytes, replace_host: bool,
                         chunked: bool) -> bytes:
    """The request head sent to the backend, serialized (HTTP/1.1 whatever the client spoke).

    Drops hop-by-hop fields and the fields Connection names; keeps ``TE: trailers``; keeps an
    Upgrade handshake (``Connection: Upgrade`` with an Upgrade field) as one; appends the client
    to X-Forwarded-For (None: do not append). ``host`` replaces the Host field with
    ``replace_host`` (``passHostHeader: false``) and is sent when the request had none.
    ``chunked``: the body follows with chunked framing.
    """
    parts = _forwarded_fields([method, b" ", target, b" HTTP/1.1\r\n"], headers,
                              client_ip=client_ip, host=host, replace_host=replace_host)
    parts.append(b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"\r\n")
    return b"".join(parts)


def backend_request_fields(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], *,
                           scheme: bytes, client_ip: str | None, host: bytes,
                           replace_host: bool) -> list[tuple[bytes, bytes]]:
    """The same request as backend_request_head, as HTTP/2 header fields: pseudo-fields first,
    the Host value as ``:authority``, names in lower case (Upgrade never goes over HTTP/2)."""
    parts = _forwarded_fields([], headers, client_ip=client_ip, host=host,
                              replace_host=replace_host)
    authority = host
    fields: list[tuple[bytes, bytes]] = []
    for index in range(0, len(parts), 4):
        name = parts[index].lower()
        if name == b"host":
            authority = parts[index + 2]
        elif name not in _NOT_OVER_H2:
            fields.append((name, parts[index + 2]))
    return [(b":method", method), (b":scheme", scheme), (b":authority", authority),
            (b":path", target), *fields]


# The fields _forwarded_fields does more with than pass them on.
_FORWARDING_LOOKS_AT = HOP_BY_HOP | {b"x-forwarded-for", b"host"}
# The fields response_headers_for_client does more with than pass them on.
_RESPONSE_LOOKS_AT = HOP_BY_HOP | {b"content-length"}

# What an Upgrade handshake leaves that HTTP/2 forbids.
_NOT_OVER_H2 = frozenset({b"connection", b"upgrade"})


def _forwarded_fields(parts: list[bytes], headers: list[tuple[bytes, bytes]], *,
                      client_ip: str | None, host: bytes, replace_host: bool) -> list[bytes]:
    """Appends the forwarded fields to ``parts`` as groups of four: name, ``: ``, value, CRLF."""
    start = len(parts)
    named: list[bytes] | None = None
    forwarded_for: list[bytes] | None = None
    te_trailers = has_host = False
    upgrade: bytes | None = None
    for name, value in headers:
        lower = name.lower()
        if lower not in _FORWARDING_LOOKS_AT:  # most fields: one test, passed on as they are
            parts += (name, b": ", value, b"\r\n")
            continue
        if lower in HOP_BY_HOP:
            if lower == b"connection":
                tokens = [token.strip().lower() for token in value.split(b",")]
                named = tokens if named is None else named + tokens
            elif lower == b"te" and not te_trailers:
                te_trailers = any(token.strip().lower() == b"trailers"
                                  for token in value.split(b","))
            elif lower == b"upgrade" and upgrade is None:
                upgrade = value
            continue
        if lower == b"x-forwarded-for":
            if forwarded_for is None:
                forwarded_for = [value]
            else:
                forwarded_for.append(value)
            continue
        if lower == b"host":
            if replace_host:
                continue
            has_host = True
        parts += (name, b": ", value, b"\r\n")
    if named is not None:
        # Rare: Connection named end-to-end fields; drop them from what was written so far.
        dropped = {token for token in named if token and token not in HOP_BY_HOP}
        if dropped:
            parts[start:] = _without(parts[start:], dropped)
        if b"upgrade" not in named:
            upgrade = None
    else:
        upgrade = None
    if not has_host:
        parts[start:start] = (b"Host", b": ", host, b"\r\n")
    if te_trailers:
        parts += (b"Te", b": ", b"trailers", b"\r\n")
    if upgrade is not None:
        parts += (b"Connection", b": ", b"Upgrade", b"\r\n", b"Upgrade", b": ", upgrade, b"\r\n")
    if client_ip is not None:
        if forwarded_for is None:
            forwarded_for = [client_ip.encode("latin-1")]
        else:
            forwarded_for.append(client_ip.encode("latin-1"))
    if forwarded_for is not None:
        parts += (b"X-Forwarded-For", b": ", b", ".join(forwarded_for), b"\r\n")
    return parts


def _without(parts: list[bytes], dropped: set[bytes]) -> list[bytes]:
    kept: list[bytes] = []
    for index in range(0, len(parts), 4):
        if parts[index].lower() not in dropped:
            kept += parts[index:index + 4]
    return kept


def response_headers_for_client(headers: list[tuple[bytes, bytes]], *,
                                switching: bool) -> tuple[Headers, bool]:
    """The backend response's fields as the client gets them (a new list), and whether the
    backend framed its body (Content-Length or Transfer-Encoding; otherwise it ends at close).

    Hop-by-hop fields and those Connection names go; a ``101 Switching Protocols`` keeps
    Connection and Upgrade, which are its point. ``Trailer`` stays: Go's proxy announces the
    trailer names the backend announced.
    """
    out = Headers()
    add = out.append
    named: list[bytes] | None = None
    framed = False
    for pair in headers:
        lower = pair[0].lower()
        if lower not in _RESPONSE_LOOKS_AT:
            add(pair)
            continue
        if lower in HOP_BY_HOP:
            if lower == b"trailer" or switching and (lower == b"connection"
                                                     or lower == b"upgrade"):
                add(pair)
            elif lower == b"connection":
                tokens = [token.strip().lower() for token in pair[1].split(b",")]
                named = tokens if named is None else named + tokens
            elif lower == b"transfer-encoding":
                framed = True
            continue
        if lower == b"content-length":
            framed = True
        add(pair)
    if named is not None:
        for token in named:
            if token and token not in HOP_BY_HOP:
                out.remove(token)
    return out, framed
