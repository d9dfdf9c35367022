"""The Consul KV provider: Traefik's KV layout under a root key, followed by blocking queries."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from pydantic import Field

from switchyard.config.dynamic import StrList, TraefikModel
from switchyard.config.loader import ConfigLoadError
from switchyard.providers.clienttls import ClientTLS
from switchyard.providers.consulapi import (
    DEFAULT_ADDRESS,
    ConsulClient,
    ConsulEndpoint,
    ConsulSession,
)
from switchyard.providers.kv import (
    RemoteProvider,
    Session,
    StoreUnavailable,
    kv_provider,
    strict_text,
)

__all__ = ["ConsulOptions", "consul_providers", "pairs_from_kv_listing"]

NAME = "consul"


class ConsulOptions(TraefikModel):
    """``providers.consul``, with Traefik's option names and defaults."""

    endpoints: StrList = Field(default_factory=lambda: [DEFAULT_ADDRESS])
    root_key: str = "traefik"
    token: str = ""
    tls: ClientTLS | None = None
    namespaces: StrList = Field(default_factory=list)


def consul_providers(options: ConsulOptions) -> list[RemoteProvider[dict[str, str]]]:
    """``consul``, or one ``consul-<namespace>`` per namespace (Consul Enterprise).

    Raises ConfigLoadError for options it cannot use.
    """
    if "*" in options.namespaces:
        raise ConfigLoadError("providers.consul.namespaces: the wildcard namespace * is not "
                              "supported (nor by Traefik); list the namespaces to read")
    namespaces = options.namespaces or [""]
    providers = []
    for namespace in namespaces:
        # As Traefik's KV client does, tls alone switches an endpoint to https.
        scheme = "https" if options.tls is not None else ""
        endpoints = [ConsulEndpoint.parse(address, "providers.consul.endpoints", scheme=scheme,
                                          tls=options.tls, token=options.token,
                                          namespace=namespace)
                     for address in options.endpoints]
        name = f"{NAME}-{namespace}" if namespace else NAME
        connect = _Connector(endpoints, options.root_key)
        providers.append(kv_provider(name, ",".join(options.endpoints), options.root_key,
                                     connect.open))
    return providers


def pairs_from_kv_listing(listing: object) -> dict[str, str]:
    """``GET /v1/kv/<prefix>?recurse`` (a list of entries, Value in base64) as key -> text.

    Folder entries (a key ending in ``/``, as Consul's UI creates) hold no configuration and
    are left out. StoreUnavailable for an answer not in Consul's shape, SourceUnreadable for
    a value that is not UTF-8.
    """
    if listing is None:
        return {}  # 404: no key under the prefix
    if not isinstance(listing, list):
        raise StoreUnavailable("GET /v1/kv: not a list of entries")
    pairs: dict[str, str] = {}
    for entry in listing:
        if not isinstance(entry, dict) or not isinstance(entry.get("Key"), str):
            raise StoreUnavailable("GET /v1/kv: an entry without a Key")
        key = entry["Key"]
        encoded = entry.get("Value")
        try:
            raw = base64.b64decode(encoded, validate=True) if encoded else b""
        except (binascii.Error, TypeError, ValueError):
            raise StoreUnavailable(f'GET /v1/kv: key "{key}": Value is not base64') from None
        if key.endswith("/") and not raw:
            continue
        pairs[key] = strict_text(raw, f'key "{key}"')
    return pairs


@dataclass
class _Connector:
    endpoints: list[ConsulEndpoint]
    root_key: str

    async def open(self) -> Session[dict[str, str]]:
        prefix = self.root_key.strip("/") + "/"
        path, params = f"/kv/{prefix}", {"recurse": "true"}

        async def read(client: ConsulClient) -> dict[str, str]:
            listing, _ = await client.get(path, params, allow_missing=True)
            return pairs_from_kv_listing(listing)

        problems = []
        for endpoint in self.endpoints:
            try:
                return await ConsulSession.open(endpoint, read, [(path, params)], 0.0)
            except StoreUnavailable as error:
                problems.append(f"{endpoint.base_url}: {error}")
        raise StoreUnavailable("; ".join(problems) or "no endpoints configured")
