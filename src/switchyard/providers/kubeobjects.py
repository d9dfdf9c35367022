"""Kubernetes objects as the Kubernetes providers read them: manifests, Secrets, Services, endpoints."""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from switchyard.config.dynamic import TraefikModel
from switchyard.config.loader import ConfigIssue, ConfigLoadError

__all__ = [
    "CORE_KINDS",
    "Cluster",
    "Manifest",
    "Problem",
    "ca_bundle",
    "config_map_ca",
    "index_manifests",
    "label_selector",
    "manifest_from_object",
    "read_manifests",
    "secret_entries",
    "secret_value",
    "service_port",
    "serving_endpoints",
    "tls_pair",
    "validated",
]

#: The core kinds a configuration is built from, with the apiVersions they come in.
CORE_KINDS = {"Service": ("v1",), "Endpoints": ("v1",), "Secret": ("v1",),
              "ConfigMap": ("v1",),
              "EndpointSlice": ("discovery.k8s.io/v1", "discovery.k8s.io/v1beta1")}
_MANIFEST_EXTENSIONS = (".yml", ".yaml", ".json")
_SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object, and where it was read."""

    kind: str
    api_version: str
    namespace: str
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    body: Mapping[str, Any]
    origin: str

    @property
    def source(self) -> str:
        """How issues name the object: ``file: Kind namespace/name``."""
        return f"{self.origin}: {self.kind} {self.namespace}/{self.name}"


class Problem(Exception):
    """An object, or a part of it, that cannot be turned into configuration; says why."""


# --- reading manifests -------------------------------------------------------------------


def read_manifests(path: str) -> tuple[list[Manifest], list[ConfigIssue]]:
    """Every object in a manifest file or a directory of them (YAML documents, JSON, Lists).

    A file that cannot be read or parsed raises ConfigLoadError, as for the file provider,
    so the last good configuration keeps serving; an object without a kind or a name is
    an issue and is skipped.
    """
    files = [path] if os.path.isfile(path) else _manifest_files(path)
    manifests: list[Manifest] = []
    issues: list[ConfigIssue] = []
    for name in files:
        try:
            with open(name, encoding="utf-8") as stream:
                documents = list(yaml.safe_load_all(stream))
        except OSError as error:
            raise ConfigLoadError(f"{name}: cannot read: {error.strerror or error}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise ConfigLoadError(f"{name}: invalid YAML: {error}") from None
        for index, document in enumerate(documents):
            for item in _items(document):
                origin = name if len(documents) == 1 else f"{name}#{index + 1}"
                manifest = manifest_from_object(item, origin, issues)
                if manifest is not None:
                    manifests.append(manifest)
    return manifests, issues


def _manifest_files(directory: str) -> list[str]:
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as error:
        raise ConfigLoadError(f"{directory}: cannot read directory: {error.strerror or error}"
                              ) from None
    found: list[str] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue  # editor swap files, ConfigMap "..data" links
        if entry.is_dir(follow_symlinks=False):
            found.extend(_manifest_files(entry.path))
        elif os.path.splitext(entry.name)[1].lower() in _MANIFEST_EXTENSIONS:
            found.append(entry.path)
    return found


def _string_map(metadata: Mapping[str, Any], key: str, origin: str,
                issues: list[ConfigIssue]) -> dict[str, str]:
    value = metadata.get(key) or {}
    if not isinstance(value, dict):
        issues.append(ConfigIssue(origin, f"metadata.{key}", f"expected a mapping of {key}, "
                                  f"got {_describe(value)}; ignored", "warning"))
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _describe(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    return "text" if isinstance(value, str) else f"the value {json.dumps(value, default=str)}"


def _items(document: Any) -> list[Any]:
    if isinstance(document, dict) and str(document.get("kind", "")).endswith("List"):
        items = document.get("items") or []
        # Anything but a list holds no objects; each non-object item is reported by _manifest.
        return items if isinstance(items, list) else [items]
    return [] if document is None else [document]


def manifest_from_object(item: Any, origin: str, issues: list[ConfigIssue]) -> Manifest | None:
    """One object (a decoded manifest document or an API answer) as a Manifest, or None."""
    if not isinstance(item, dict) or not item.get("kind"):
        issues.append(ConfigIssue(origin, "kind", "not a Kubernetes object (no kind); "
                                  "ignored", "warning"))
        return None
    metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
    assert isinstance(metadata, dict)
    if not metadata.get("name"):
        issues.append(ConfigIssue(origin, "metadata.name", f"{item['kind']} without a name; "
                                  "ignored", "error"))
        return None
    return Manifest(
        kind=str(item["kind"]), api_version=str(item.get("apiVersion", "")),
        namespace=str(metadata.get("namespace") or "default"), name=str(metadata["name"]),
        labels=_string_map(metadata, "labels", origin, issues),
        annotations=_string_map(metadata, "annotations", origin, issues),
        body=item, origin=origin,
    )


# --- the objects, indexed ----------------------------------------------------------------


@dataclass
class Cluster:
    """The objects a configuration is built from, indexed the way the builders look them up.

    ``objects`` are the provider's own kinds (CRDs, Ingresses) in the order read.
    """

    services: dict[tuple[str, str], Manifest] = field(default_factory=dict)
    endpoints: dict[tuple[str, str], Manifest] = field(default_factory=dict)
    slices: dict[tuple[str, str], list[Manifest]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], Manifest] = field(default_factory=dict)
    config_maps: dict[tuple[str, str], Manifest] = field(default_factory=dict)
    objects: list[Manifest] = field(default_factory=list)

    def of_kind(self, *kinds: str) -> list[Manifest]:
        return [m for m in self.objects if m.kind in kinds]


_C = TypeVar("_C", bound=Cluster)


def index_manifests(manifests: Iterable[Manifest], own: Mapping[str, tuple[str, ...]],
                    cluster: _C, namespaces: Iterable[str], selects: Callable[[Manifest], bool],
                    issues: list[ConfigIssue], cluster_scoped: Iterable[str] = ()) -> _C:
    """Sort objects into ``cluster`` (empty): ``own`` kinds (kind -> apiVersions) that
    ``selects`` accepts go to ``objects``; the core kinds are indexed by namespace and name.

    Objects outside ``namespaces`` (when given) are left out, but for ``cluster_scoped``
    kinds, which have no namespace.
    """
    watched = set(namespaces)
    unscoped = set(cluster_scoped)
    for manifest in manifests:
        if watched and manifest.namespace not in watched and manifest.kind not in unscoped:
            continue
        key = (manifest.namespace, manifest.name)
        if manifest.kind in own:
            versions = own[manifest.kind]
            if manifest.api_version not in versions:
                issues.append(ConfigIssue(manifest.source, "apiVersion", f'"{manifest.api_version}"'
                                          f" is not one of {', '.join(versions)}; ignored",
                                          "warning"))
            elif selects(manifest):
                cluster.objects.append(manifest)
        elif manifest.kind in CORE_KINDS and manifest.api_version in CORE_KINDS[manifest.kind]:
            if manifest.kind == "EndpointSlice":
                owner = manifest.labels.get(_SERVICE_NAME_LABEL, "")
                cluster.slices.setdefault((manifest.namespace, owner), []).append(manifest)
            else:
                index = {"Service": cluster.services, "Endpoints": cluster.endpoints,
                         "Secret": cluster.secrets, "ConfigMap": cluster.config_maps}
                index[manifest.kind][key] = manifest
    return cluster


def label_selector(text: str) -> Callable[[Mapping[str, str]], bool]:
    """Kubernetes equality-based selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``."""
    terms: list[tuple[str, str, str]] = []  # (operator, key, value)
    for term in (t.strip() for t in text.split(",") if t.strip()):
        if "!=" in term:
            key, value = term.split("!=", 1)
            terms.append(("!=", key.strip(), value.strip()))
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            terms.append(("=", key.strip(), value.strip()))
        elif term.startswith("!"):
            terms.append(("!", term[1:].strip(), ""))
        else:
            terms.append(("", term, ""))

    def matches(labels: Mapping[str, str]) -> bool:
        for operator, key, value in terms:
            if operator == "=" and labels.get(key) != value:
                return False
            if operator == "!=" and labels.get(key) == value:
                return False
            if operator == "!" and key in labels:
                return False
            if operator == "" and key not in labels:
                return False
        return True

    return matches


def validated(model: type[TraefikModel], raw: Any, crd: Manifest, path: str,
              issues: list[ConfigIssue]) -> Any:
    """``model`` from ``raw``, or None with one issue per problem, each at its path."""
    try:
        value = model.model_validate(raw)
    except ValidationError as error:
        for detail in error.errors(include_url=False):
            where = path + "".join(f"[{p}]" if isinstance(p, int) else f".{p}"
                                   for p in detail["loc"])
            message = ("required field is missing" if detail["type"] == "missing"
                       else f"{detail['msg'][:1].lower()}{detail['msg'][1:]}, got "
                            f"{json.dumps(detail['input'], default=str)[:60]}")
            issues.append(ConfigIssue(crd.source, where, message, "error"))
        return None
    for key in value.model_extra or {}:
        issues.append(ConfigIssue(crd.source, f"{path}.{key}", f'unknown field "{key}" is '
                                  "ignored", "warning"))
    return value


# --- Secrets and ConfigMaps --------------------------------------------------------------


def secret_entries(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    """Every entry of a Secret as text: ``data`` decoded from base64, ``stringData`` as is.

    ``stringData`` wins over ``data`` for the same key, as the API server merges them.
    """
    secret = cluster.secrets.get((namespace, name))
    if secret is None:
        raise Problem(f"secret {namespace}/{name} not found: add its Secret manifest")
    entries: dict[str, str] = {}
    for key, encoded in (secret.body.get("data") or {}).items():
        try:
            entries[str(key)] = base64.b64decode(str(encoded or ""), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as error:
            raise Problem(f"secret {namespace}/{name}: {key} is not base64 text: {error}"
                          ) from None
    entries.update({str(k): str(v) for k, v in (secret.body.get("stringData") or {}).items()})
    return entries


def secret_value(cluster: Cluster, namespace: str, name: str, *keys: str) -> str:
    """The first of ``keys`` present and not empty in a Secret."""
    entries = secret_entries(cluster, namespace, name)
    for key in keys:
        if entries.get(key):
            return entries[key]
    raise Problem(f"secret {namespace}/{name} has none of {', '.join(keys)}")


def tls_pair(cluster: Cluster, namespace: str, name: str) -> tuple[str, str]:
    """``tls.crt`` and ``tls.key`` of a Secret, both required and not empty."""
    entries = secret_entries(cluster, namespace, name)
    missing = [key for key in ("tls.crt", "tls.key") if key not in entries]
    if missing:
        raise Problem(f"secret {namespace}/{name} is missing the following TLS data entries: "
                      f"{', '.join(missing)}")
    empty = [key for key in ("tls.crt", "tls.key") if not entries[key]]
    if empty:
        raise Problem(f"secret {namespace}/{name} contains the following empty TLS data "
                      f"entries: {', '.join(empty)}")
    return entries["tls.crt"], entries["tls.key"]


def ca_bundle(cluster: Cluster, namespace: str, name: str) -> str:
    """A CA in a Secret: ``tls.ca``, else ``ca.crt``, else a Secret's only entry (as Traefik)."""
    entries = secret_entries(cluster, namespace, name)
    for key in ("tls.ca", "ca.crt"):
        if key in entries:
            return entries[key]
    if len(entries) == 1:
        return next(iter(entries.values()))
    raise Problem(f"secret {namespace}/{name} contains neither tls.ca nor ca.crt")


def config_map_ca(cluster: Cluster, namespace: str, name: str) -> str:
    found = cluster.config_maps.get((namespace, name))
    data = (found.body.get("data") or {}) if found is not None else None
    if data is None:
        raise Problem(f"configMap {namespace}/{name} not found: add its ConfigMap manifest")
    for key in ("tls.ca", "ca.crt"):
        if data.get(key):
            return str(data[key])
    raise Problem(f"configMap {namespace}/{name} contains neither tls.ca nor ca.crt")


# --- Services and their endpoints --------------------------------------------------------


def service_port(service: Manifest, port: int | str) -> dict[str, Any] | None:
    """The Service port a reference names: a number matches ``port``, text matches ``name``."""
    for candidate in (service.body.get("spec") or {}).get("ports") or []:
        if isinstance(port, int) and candidate.get("port") == port:
            return dict(candidate)
        if isinstance(port, str) and str(candidate.get("name") or "") == port:
            return dict(candidate)
    return None


def serving_endpoints(cluster: Cluster, namespace: str, service: str,
                      port_name: str) -> list[tuple[str, int]]:
    """(address, port) of the endpoints that serve the Service port named ``port_name``.

    As Traefik's HTTP providers: an endpoint counts while its ``serving`` condition is not
    false (absent means true). Traefik keeps a terminating endpoint as a "fenced" server,
    which receives only sticky requests; Switchyard has no fenced servers and leaves
    terminating endpoints out. Each address is used once.
    """
    found: dict[str, int] = {}
    for slice_ in cluster.slices.get((namespace, service), []):
        number = next((p.get("port") for p in slice_.body.get("ports") or []
                       if str(p.get("name") or "") == port_name), None)
        if not number:
            continue
        for endpoint in slice_.body.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            if conditions.get("serving", True) is False or conditions.get("terminating"):
                continue
            for address in endpoint.get("addresses") or []:
                found.setdefault(str(address), int(number))
    return list(found.items())
