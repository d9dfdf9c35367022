"""The Kubernetes providers on a live API server: list, then watch from the list's version.

Each kind a configuration is built from (kubernetesCRD: the eight ``traefik.io/v1alpha1``
CRDs, Services, EndpointSlices, Secrets, ConfigMaps; kubernetesIngress: Ingresses,
IngressClasses, Services, EndpointSlices, Secrets) is listed, in every namespace or in each
of ``namespaces`` (IngressClasses have none), and then watched from the resource version of that list. A watch the server
ends is resumed from the last version seen (lightkube does that); a ``410 Gone`` (the
version is too old) lists the kind again and watches from the new list. Any other failure
ends the whole watch: the server logs it, keeps the last good configuration and starts it
again after a backoff, which lists everything anew.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx  # lightkube's HTTP client
from lightkube import ALL_NS, ApiError, AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.core.exceptions import ConfigError
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.types import OnErrorAction, OnErrorResult

from switchyard.config.loader import ConfigIssue, ConfigLoadError
from switchyard.providers.base import ProviderUpdate, Publish, WatchLost
from switchyard.providers.kubernetes import (
    NAME,
    Convert,
    KubernetesCRDOptions,
    Manifest,
    config_from_manifests,
    manifest_from_object,
)
from switchyard.providers.kubernetes_ingress import KubernetesIngressOptions
from switchyard.providers.kv import run_sync

__all__ = ["INGRESS_RESOURCES", "RESOURCES", "KubernetesAPIProvider", "kube_config"]

log = logging.getLogger("switchyard.providers.kubernetes")

Resource = tuple[str, str, str, str]
_CORE: tuple[Resource, ...] = (
    ("", "v1", "Service", "services"),
    ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
    ("", "v1", "Secret", "secrets"),
)
#: (group, version, kind, plural) of every kind the kubernetesCRD configuration is built from.
RESOURCES: tuple[Resource, ...] = (
    ("traefik.io", "v1alpha1", "IngressRoute", "ingressroutes"),
    ("traefik.io", "v1alpha1", "Middleware", "middlewares"),
    ("traefik.io", "v1alpha1", "TraefikService", "traefikservices"),
    ("traefik.io", "v1alpha1", "ServersTransport", "serverstransports"),
    ("traefik.io", "v1alpha1", "IngressRouteTCP", "ingressroutetcps"),
    ("traefik.io", "v1alpha1", "MiddlewareTCP", "middlewaretcps"),
    ("traefik.io", "v1alpha1", "TLSOption", "tlsoptions"),
    ("traefik.io", "v1alpha1", "ServersTransportTCP", "serverstransporttcps"),
    *_CORE,
    ("", "v1", "ConfigMap", "configmaps"),
)
#: The same for the kubernetesIngress provider; IngressClasses have no namespace.
INGRESS_RESOURCES: tuple[Resource, ...] = (
    ("networking.k8s.io", "v1", "Ingress", "ingresses"),
    ("networking.k8s.io", "v1", "IngressClass", "ingressclasses"),
    *_CORE,
)
_CLUSTER_SCOPED = ("IngressClass",)
_RESOURCE_TYPES: dict[str, Any] = {
    kind: (create_global_resource if kind in _CLUSTER_SCOPED else create_namespaced_resource)(
        group, version, kind, plural)
    for group, version, kind, plural in dict.fromkeys((*RESOURCES, *INGRESS_RESOURCES))}
# A list's items carry no kind or apiVersion: the resource listed says them.
_API_VERSIONS = {kind: f"{group}/{version}" if group else version
                 for group, version, kind, _ in (*RESOURCES, *INGRESS_RESOURCES)}
_GONE = 410


def kube_config(options: KubernetesCRDOptions | KubernetesIngressOptions,
                environ: dict[str, str] | None = None,
                key: str = "kubernetesCRD") -> KubeConfig:
    """How to reach the API server, in Traefik's order of preference.

    ``endpoint`` (with ``token`` and ``certAuthFilePath``) when set; else the pod's service
    account when running in a cluster; else the ``KUBECONFIG`` file. ConfigLoadError with
    what to set otherwise.
    """
    environ = dict(os.environ) if environ is None else environ
    try:
        if options.endpoint:
            cluster: dict[str, Any] = {"server": options.endpoint}
            if options.cert_auth_file_path:
                cluster["certificate-authority"] = options.cert_auth_file_path
            user = {"token": options.token} if options.token else {}
            return KubeConfig.from_dict({
                "clusters": [{"name": "api", "cluster": cluster}],
                "users": [{"name": "switchyard", "user": user}],
                "contexts": [{"name": "api", "context": {"cluster": "api",
                                                         "user": "switchyard"}}],
                "current-context": "api"})
        if environ.get("KUBERNETES_SERVICE_HOST"):
            return KubeConfig.from_service_account()
        if environ.get("KUBECONFIG"):
            return KubeConfig.from_file(environ["KUBECONFIG"].split(os.pathsep)[0])
    except (ConfigError, OSError, ValueError) as error:
        raise ConfigLoadError(f"providers.{key}: cannot use the API server settings: "
                              f"{error}") from None
    raise ConfigLoadError(
        f"providers.{key}: no API server to watch: set endpoint (and token, "
        "certAuthFilePath), run in a cluster with a service account, set KUBECONFIG, or read "
        "manifest files with manifests")


@dataclass
class _Stream:
    """One kind in one namespace (or all): its objects as last listed and watched."""

    kind: str
    namespace: str
    objects: dict[tuple[str, str], Manifest] = field(default_factory=dict)


class KubernetesAPIProvider:
    """``providers.kubernetesCRD`` against an API server (``endpoint`` or in-cluster)."""

    def __init__(self, options: KubernetesCRDOptions | KubernetesIngressOptions,
                 config: KubeConfig, *, name: str = NAME,
                 resources: tuple[Resource, ...] = RESOURCES,
                 convert: Convert | None = None, key: str = "kubernetesCRD") -> None:
        self.name = name
        self.options = options
        self.config = config
        if convert is None:
            assert isinstance(options, KubernetesCRDOptions)
            crd = options
            convert = lambda manifests: config_from_manifests(manifests, crd)
        self.convert = convert
        namespaces = list(options.namespaces) or [ALL_NS]
        # A cluster-scoped kind is listed once, whatever the namespaces.
        self.streams = [_Stream(kind, namespace)
                        for _, _, kind, _ in resources
                        for namespace in ([ALL_NS] if kind in _CLUSTER_SCOPED else namespaces)]
        current = config.get()
        self.source = f"{key} {current.cluster.server if current else '(no cluster)'}"
        self.relists = 0  # how often a 410 Gone made a kind be listed again

    def load(self) -> ProviderUpdate:
        return run_sync(self._load_once)

    async def _load_once(self) -> ProviderUpdate:
        client = AsyncClient(config=self.config, field_manager="switchyard")
        try:
            for stream in self.streams:
                await self._list(client, stream)
            return self._update()
        except (ApiError, httpx.HTTPError, OSError) as error:
            return ProviderUpdate(self.name, None, error=self._problem(error))
        finally:
            await client.close()

    async def watch(self, publish: Publish) -> None:
        if not self.options.watch:
            return
        client = AsyncClient(config=self.config, field_manager="switchyard")
        try:
            versions = {}
            for stream in self.streams:
                versions[id(stream)] = await self._list(client, stream)
            publish(self._update())
            async with asyncio.TaskGroup() as group:
                for stream in self.streams:
                    group.create_task(self._follow(client, stream, versions[id(stream)],
                                                   publish))
        except* (ApiError, httpx.HTTPError, OSError) as errors:
            problem = self._problem(errors.exceptions[0])
            publish(ProviderUpdate(self.name, None, error=problem))
            raise WatchLost(problem) from None
        finally:
            await client.close()

    async def _list(self, client: AsyncClient, stream: _Stream) -> str:
        """List one kind; its objects replace what was known. The list's resource version."""
        listing = client.list(_RESOURCE_TYPES[stream.kind], **self._scope(stream))
        objects: dict[tuple[str, str], Manifest] = {}
        async for item in listing:
            manifest = self._manifest(stream.kind, item.to_dict())
            if manifest is not None:
                objects[manifest.namespace, manifest.name] = manifest
        stream.objects = objects
        try:
            return str(listing.resourceVersion)
        except Exception:  # noqa: BLE001 - lightkube's NotReadyError: an empty, unversioned list
            return ""

    async def _follow(self, client: AsyncClient, stream: _Stream, version: str,
                      publish: Publish) -> None:
        while True:
            try:
                async for event, item in client.watch(
                        _RESOURCE_TYPES[stream.kind], **self._scope(stream),
                        resource_version=version or None, on_error=_raise):
                    self._apply(stream, event, item.to_dict())
                    publish(self._update())
            except ApiError as error:
                if error.status.code != _GONE:
                    raise
                # The version is too old to watch from: what happened since is unknown,
                # so the kind is listed again and watched from that list.
                self.relists += 1
                log.info("%s: %s watch expired (410 Gone); listing them again", self.source,
                         stream.kind)
                version = await self._list(client, stream)
                publish(self._update())

    @staticmethod
    def _scope(stream: _Stream) -> dict[str, Any]:
        return {} if stream.kind in _CLUSTER_SCOPED else {"namespace": stream.namespace}

    def _apply(self, stream: _Stream, event: str, body: dict[str, Any]) -> None:
        manifest = self._manifest(stream.kind, body)
        if manifest is None:
            return
        key = (manifest.namespace, manifest.name)
        if event == "DELETED":
            stream.objects.pop(key, None)
        elif event in ("ADDED", "MODIFIED"):
            stream.objects[key] = manifest

    def _manifest(self, kind: str, body: dict[str, Any]) -> Manifest | None:
        body.setdefault("kind", kind)
        body.setdefault("apiVersion", _API_VERSIONS[kind])
        issues: list[ConfigIssue] = []
        return manifest_from_object(body, "api", issues)

    def _update(self) -> ProviderUpdate:
        manifests = [m for stream in self.streams for m in stream.objects.values()]
        config, issues = self.convert(manifests)
        return ProviderUpdate(self.name, config, issues)

    def _problem(self, error: BaseException) -> str:
        if isinstance(error, ApiError):
            code, reason = error.status.code, error.status.message
        elif isinstance(error, httpx.HTTPStatusError):
            code, reason = error.response.status_code, error.response.reason_phrase
        else:
            return f"{self.source}: {error or type(error).__name__}"
        hint = " (check the token)" if code == 401 else (
            " (check the ClusterRole's rules for this kind)" if code == 403 else "")
        return f"{self.source}: HTTP {code}: {reason}{hint}"
        return f"{self.source}: {error or type(error).__name__}"


def _raise(_error: Exception, _count: int) -> OnErrorResult:
    """A failed watch request ends the watch, so the provider decides what comes next."""
    return OnErrorResult(OnErrorAction.RAISE)

