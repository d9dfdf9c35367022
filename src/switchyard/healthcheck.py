"""`switchyard healthcheck`: asks a running instance's /ping, as `traefik healthcheck` does."""

from __future__ import annotations

import http.client
from dataclasses import dataclass

from switchyard.config.static import INTERNAL_ENTRY_POINT, StaticConfig, parse_entry_point_address

__all__ = ["HealthcheckError", "PingTarget", "check_health", "ping_target"]

#: Traefik's client timeout for the health check.
TIMEOUT = 5.0
# Where an entry point listening on every address is reached from the same host.
_LOCAL = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


@dataclass(frozen=True)
class PingTarget:
    """Where /ping is asked: the URL as Traefik prints it, and the host and port dialled."""

    url: str
    host: str
    port: int


class HealthcheckError(Exception):
    """The check could not be made; the message says why, in Traefik's words where it has them."""


def ping_target(static: StaticConfig) -> PingTarget:
    """The /ping address of ``static``'s ping entry point; HealthcheckError when there is none."""
    if static.ping is None:
        raise HealthcheckError("please enable `ping` to use health check")
    name = static.ping.entry_point or INTERNAL_ENTRY_POINT
    entry_point = static.entry_points.get(name)
    if entry_point is None and name != INTERNAL_ENTRY_POINT:
        raise HealthcheckError(f"ping: missing {name} entry point")
    # The traefik entry point exists on :8080 when nothing defines it (effective configuration).
    address = entry_point.address if entry_point is not None else ":8080"
    host, port, _ = parse_entry_point_address(address)
    written = address.partition("/")[0]
    return PingTarget(f"http://{written}/ping", _LOCAL.get(host, host), port)


def check_health(static: StaticConfig, timeout: float = TIMEOUT) -> tuple[bool, str]:
    """(healthy, the line to print): HEAD /ping must answer 200, as for `traefik healthcheck`."""
    try:
        target = ping_target(static)
    except HealthcheckError as error:
        return False, f"Error calling healthcheck: {error}"
    connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        connection.request("HEAD", "/ping")
        response = connection.getresponse()
    except (OSError, http.client.HTTPException) as error:
        return False, f'Error calling healthcheck: Head "{target.url}": {error}'
    finally:
        connection.close()
    if response.status != 200:
        return False, f"Bad healthcheck status: {response.status} {response.reason}"
    return True, f"OK: {target.url}"
