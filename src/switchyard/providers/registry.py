"""Builds the configured providers from the static `providers` section."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from switchyard.config.dynamic import TraefikModel
from switchyard.config.loader import ConfigLoadError
from switchyard.config.static import StaticConfig
from switchyard.providers.base import Provider
from switchyard.providers.file import FileProvider

log = logging.getLogger("switchyard.providers")

_O = TypeVar("_O", bound=TraefikModel)


def build_providers(static: StaticConfig) -> list[Provider]:
    """One provider object per configured `providers.<name>` block, file first.

    Raises ConfigLoadError for options a provider cannot work with, naming the option.
    """
    section = static.providers
    providers: list[Provider] = []
    file_cfg = section.file if section else None
    if file_cfg is not None and (file_cfg.filename or file_cfg.directory):
        providers.append(FileProvider(file_cfg.filename, file_cfg.directory, file_cfg.watch))
    # Each provider is imported only when configured: their client libraries
    # (aiohttp, redis, kazoo) would otherwise cost every process ~20 MB and 0.1 s.
    if section.docker is not None:
        from switchyard.providers.docker import DockerOptions, docker_provider

        providers.append(docker_provider(_options(DockerOptions, section.docker, "docker")))
    if section.swarm is not None:
        from switchyard.providers.swarm import SwarmOptions, swarm_provider

        providers.append(swarm_provider(_options(SwarmOptions, section.swarm, "swarm")))
    if section.kubernetes_crd is not None:
        from switchyard.providers.kubernetes import KubernetesCRDOptions, KubernetesCRDProvider
        crd = _options(KubernetesCRDOptions, section.kubernetes_crd, "kubernetesCRD")
        if crd.manifests:
            providers.append(KubernetesCRDProvider(crd))
        else:
            from switchyard.providers.kubeapi import KubernetesAPIProvider, kube_config
            providers.append(KubernetesAPIProvider(crd, kube_config(crd)))
    if section.kubernetes_ingress is not None:
        from switchyard.providers.kubernetes_ingress import (
            KubernetesIngressOptions,
            kubernetes_ingress_provider,
        )
        providers.append(kubernetes_ingress_provider(_options(
            KubernetesIngressOptions, section.kubernetes_ingress, "kubernetesIngress")))
    if section.redis is not None:
        from switchyard.providers.redis import RedisOptions, redis_provider
        redis = _options(RedisOptions, section.redis, "redis")
        _unsupported(redis.sentinel, "redis.sentinel")
        providers.append(redis_provider(redis))
    if section.etcd is not None:
        from switchyard.providers.etcd import EtcdOptions, etcd_provider
        etcd = _options(EtcdOptions, section.etcd, "etcd")
        providers.append(etcd_provider(etcd))
    if section.consul_catalog is not None:
        from switchyard.providers.consul_catalog import (
            ConsulCatalogOptions,
            consul_catalog_providers,
        )
        providers.extend(consul_catalog_providers(
            _options(ConsulCatalogOptions, section.consul_catalog, "consulCatalog")))
    if section.consul is not None:
        from switchyard.providers.consul import ConsulOptions, consul_providers
        providers.extend(consul_providers(_options(ConsulOptions, section.consul, "consul")))
    if section.zoo_keeper is not None:
        from switchyard.providers.zookeeper import ZooKeeperOptions, zookeeper_provider
        providers.append(zookeeper_provider(
            _options(ZooKeeperOptions, section.zoo_keeper, "zooKeeper")))
    return providers


def _options(model: type[_O], raw: Mapping[str, Any], key: str) -> _O:
    """``providers.<key>`` validated; unknown options are logged and have no effect."""
    try:
        options = model.model_validate(dict(raw))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in detail['loc'])}: {detail['msg']}"
            for detail in error.errors(include_url=False))
        raise ConfigLoadError(f"providers.{key}: {problems}") from None
    for name in options.model_extra or {}:
        log.warning('providers.%s.%s: option not supported by Switchyard, ignored', key, name)
    return options


def _unsupported(value: object, option: str) -> None:
    if value:
        raise ConfigLoadError(f"providers.{option} is not supported yet: connect to the "
                              "server itself (endpoints), or remove the option")
