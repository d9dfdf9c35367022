"""What the reverse proxy changes on the way through: target path, Host, hop-by-hop fields, XFF.

Pure functions over heads, as Traefik's reverse proxy (Go's httputil.ReverseProxy with Traefik's
rewrite) does it, so each rule can be tested without sockets.
"""

from __future__ import annotations

from switchyard.http.message import Headers, split_target

__all__ = [
    "HOP_BY_HOP",
    "join_url_path",
    "outgoing_target",
    "request_headers_for_backend",
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


def outgoing_target(target: bytes, server_path: bytes, preserve_path: bool) -> bytes:
    """The request-target sent to the backend.

    The request's own path (an absolute-form target reduced to path and query); with
    ``preservePath`` the server URL's path goes in front. ``;`` in the query becomes ``&``, as
    Traefik does.
    """
    if target[:1] != b"/" or b"?" in target or preserve_path:
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


def request_headers_for_backend(headers: Headers, *, client_ip: str | None,
                                host: bytes | None, upgrade: bytes | None) -> Headers:
    """The fields sent to the backend (a new list).

    Drops hop-by-hop fields and the fields Connection names; keeps ``TE: trailers``; appends the
    client to X-Forwarded-For (None: do not append); replaces Host when ``host`` is given
    (``passHostHeader: false``); with ``upgrade`` (the protocol of an Upgrade handshake) sends
    ``Connection: Upgrade`` and ``Upgrade`` on.
    """
    out = Headers()
    named: list[bytes] = []
    forwarded_for: list[bytes] = []
    te_trailers = False
    for pair in headers:
        name = pair[0]
        lower = name.lower()
        if lower in HOP_BY_HOP:
            if lower == b"connection":
                named.extend(token.strip().lower() for token in pair[1].split(b","))
            elif lower == b"te" and not te_trailers:
                te_trailers = any(token.strip().lower() == b"trailers"
                                  for token in pair[1].split(b","))
            continue
        if lower == b"x-forwarded-for":
            forwarded_for.append(pair[1])
            continue
        if lower == b"host" and host is not None:
            continue
        out.append(pair)
    if named:
        for token in named:
            if token and token not in HOP_BY_HOP:
                out.remove(token)
    if host is not None:
        out.insert(0, (b"Host", host))
    if te_trailers:
        out.append((b"Te", b"trailers"))
    if upgrade is not None:
        out.append((b"Connection", b"Upgrade"))
        out.append((b"Upgrade", upgrade))
    if client_ip is not None:
        forwarded_for.append(client_ip.encode("latin-1"))
    if forwarded_for:
        out.append((b"X-Forwarded-For", b", ".join(forwarded_for)))
    return out


def response_headers_for_client(headers: Headers, *, switching: bool) -> Headers:
    """The backend response's fields as the client gets them (a new list).

    Hop-by-hop fields and those Connection names go; a ``101 Switching Protocols`` keeps
    Connection and Upgrade, which are its point.
    """
    out = Headers()
    named: list[bytes] = []
    for pair in headers:
        lower = pair[0].lower()
        if lower in HOP_BY_HOP:
            if switching and lower in (b"connection", b"upgrade"):
                out.append(pair)
            elif lower == b"connection":
                named.extend(token.strip().lower() for token in pair[1].split(b","))
            continue
        out.append(pair)
    for token in named:
        if token and token not in HOP_BY_HOP:
            out.remove(token)
    return out
