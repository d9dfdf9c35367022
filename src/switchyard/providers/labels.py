"""Traefik's label syntax (Docker labels, Consul tags) decoded into the dynamic configuration."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from switchyard.config.dynamic import DynamicConfig
from switchyard.config.http import HTTPSection
from switchyard.config.loader import ConfigIssue, load_dynamic_from_dict
from switchyard.providers.flatkeys import canonical, ci_get, decode, label_path

__all__ = ["config_from_labels", "decode_labels", "labels_from_lines", "validate_labels"]

ROOT = "traefik."

# Traefik decodes only these prefixes as dynamic configuration (label.DecodeConfiguration);
# every other `traefik.*` label (enable, docker.network, ...) is a provider setting.
_CONFIG_PREFIXES = ("http.", "tcp.", "udp.", "tls.stores.default.")


def labels_from_lines(lines: Iterable[str]) -> dict[str, str]:
    """``key=value`` strings (a compose file's label list, Consul tags) as a mapping."""
    labels: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition("=")
        labels[key.strip()] = value
    return labels


def decode_labels(
    labels: Mapping[str, str], source: str
) -> tuple[dict[str, Any], list[ConfigIssue]]:
    """The raw dynamic configuration the labels describe, with canonical key spellings.

    A service's ``loadbalancer.server.*`` labels become ``servers[0]``, Traefik's
    label-only spelling of the first server; its ``port`` key is left for the provider
    that knows the container's address to turn into ``address``.
    """
    pairs: dict[str, str] = {}
    for key, value in labels.items():
        if key[: len(ROOT)].lower() != ROOT:
            continue
        rest = key[len(ROOT):]
        if rest.lower().startswith(_CONFIG_PREFIXES):
            pairs[rest] = value
    raw, issues = decode(pairs, label_path, source, shown=lambda key: ROOT + key)
    _first_server_from_label(raw)
    shaped = canonical(raw, DynamicConfig)
    if not isinstance(shaped, dict):
        return {}, issues
    http = ci_get(shaped, "http")
    if http is not None and isinstance(http[1], dict):
        # DynamicConfig keeps http raw: its keys get their spelling from the HTTP models, so
        # that providers find loadBalancer in `...services.web.loadbalancer.server.port`.
        shaped[http[0]] = canonical(http[1], HTTPSection)
    return shaped, issues


def config_from_labels(
    labels: Mapping[str, str], source: str
) -> tuple[DynamicConfig, list[ConfigIssue]]:
    """Decode and validate labels as the file provider validates a file: per element."""
    raw, issues = decode_labels(labels, source)
    config, found = validate_labels(raw, source)
    return config, issues + found


def validate_labels(
    raw: Mapping[str, Any], source: str
) -> tuple[DynamicConfig, list[ConfigIssue]]:
    """``load_dynamic_from_dict``, with issue paths spelled as labels (``traefik.`` first)."""
    config, issues = load_dynamic_from_dict(raw, source)
    return config, [dataclasses.replace(i, path=ROOT + i.path) if i.path else i for i in issues]


def _first_server_from_label(raw: dict[str, Any]) -> None:
    for section in ("tcp", "udp", "http"):
        services = _path(raw, section, "services")
        if not isinstance(services, dict):
            continue
        for service in services.values():
            balancer = _path(service, "loadbalancer")
            if not isinstance(balancer, dict):
                continue
            found = ci_get(balancer, "server")
            if found is not None and isinstance(found[1], dict):
                del balancer[found[0]]
                balancer["servers"] = [found[1]]


def _path(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        found = ci_get(value, key)
        value = found[1] if found is not None else None
    return value
