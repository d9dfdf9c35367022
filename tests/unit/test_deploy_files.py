"""The container recipe and the cluster manifests in the repository hold together.

No image is built and no cluster runs here: these read the files as Docker, Compose and
Kubernetes would, and check them against what Switchyard reads (its static configuration
from the same variables, the kinds its kubernetesCRD provider lists and watches).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from switchyard.config.sources import read_static
from switchyard.providers.kubeapi import INGRESS_RESOURCES, RESOURCES

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "deploy" / "kubernetes"


def documents(path: Path) -> list[dict[str, Any]]:
    found = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for doc in found:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc
    return found


def manifests() -> list[dict[str, Any]]:
    return [doc for path in sorted(KUBE.glob("*.yaml")) for doc in documents(path)]


def one(kind: str, name: str = "switchyard") -> dict[str, Any]:
    [found] = [d for d in manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def static_from_env(env: dict[str, str], tmp_path: Path) -> Any:
    # From an empty directory and HOME, so that no traefik.yml is found instead.
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        static, issues, source = read_static(None, [], env | {"HOME": str(tmp_path)})
    finally:
        os.chdir(here)
    assert source.kind == "environment"
    assert [i for i in issues if i.severity == "error"] == []
    return static


def test_the_crds_define_every_traefik_kind_the_provider_watches() -> None:
    crds = {(d["spec"]["group"], d["spec"]["names"]["plural"]): d for d in manifests()
            if d["kind"] == "CustomResourceDefinition"}
    wanted = {(group, plural) for group, _, _, plural in RESOURCES if group == "traefik.io"}
    assert set(crds) == wanted
    for (group, plural), crd in crds.items():
        assert crd["metadata"]["name"] == f"{plural}.{group}"
        [version] = crd["spec"]["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True,
                                                                             True)


def test_the_cluster_role_lets_the_service_account_read_every_watched_kind() -> None:
    rules = one("ClusterRole")["rules"]
    for group, _, _, plural in (*RESOURCES, *INGRESS_RESOURCES):
        assert any(group in rule["apiGroups"] and plural in rule["resources"]
                   and {"get", "list", "watch"} <= set(rule["verbs"]) for rule in rules), plural
    assert not any(set(rule["verbs"]) - {"get", "list", "watch"} for rule in rules)
    binding = one("ClusterRoleBinding")
    account = one("ServiceAccount")
    assert binding["roleRef"]["name"] == "switchyard"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "switchyard",
                                    "namespace": account["metadata"]["namespace"]}]
    spec = one("Deployment")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == account["metadata"]["name"]


def test_the_deployment_configures_the_api_watch_ping_and_its_ports(tmp_path: Path) -> None:
    [container] = one("Deployment")["spec"]["template"]["spec"]["containers"]
    static = static_from_env({e["name"]: e["value"] for e in container["env"]}, tmp_path)
    assert static.providers.kubernetes_crd is not None
    assert "manifests" not in static.providers.kubernetes_crd  # the API, not files
    assert static.providers.kubernetes_ingress is not None
    assert "manifests" not in static.providers.kubernetes_ingress
    assert static.ping is not None and static.ping.entry_point == "traefik"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    listened = {int(ep.address.rsplit(":", 1)[1]) for ep in static.entry_points.values()}
    assert set(ports.values()) == listened
    assert container["livenessProbe"]["exec"]["command"] == ["switchyard", "healthcheck"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ping"
    assert ports[container["readinessProbe"]["httpGet"]["port"]] == int(
        static.entry_points["traefik"].address.rsplit(":", 1)[1])
    for service in (d for d in manifests() if d["kind"] == "Service"):
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)


def test_the_image_runs_unprivileged_and_checks_its_health_with_healthcheck() -> None:
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()]
    instructions = [line.split()[0] for line in lines if line and not line.startswith("#")
                    and line.split()[0].isupper()]
    assert instructions[0] in ("ARG", "FROM") and "FROM" in instructions
    user = next(line for line in lines if line.startswith("USER "))
    assert user.split()[1].split(":")[0] not in ("root", "0")
    health = "\n".join(lines[lines.index(next(l for l in lines if l.startswith("HEALTHCHECK"))):])
    assert 'CMD ["switchyard", "healthcheck"]' in health
    entrypoint = (REPO / "deploy" / "docker" / "entrypoint.sh").read_text()
    assert "switchyard run" in entrypoint


def test_the_compose_example_configures_a_docker_provider_and_ping(tmp_path: Path) -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    switchyard = compose["services"]["switchyard"]
    static = static_from_env(dict(switchyard["environment"]), tmp_path)
    assert static.providers.docker is not None and static.ping is not None
    published = {int(p.split(":")[1]) for p in switchyard["ports"]}
    assert published == {int(ep.address.rsplit(":", 1)[1])
                         for ep in static.entry_points.values()}
    for name, service in compose["services"].items():
        if name != "switchyard":
            assert service["networks"] == switchyard["networks"]


def test_the_ingress_class_names_the_controller_the_ingress_provider_reads(
        tmp_path: Path) -> None:
    from switchyard.providers.kubeobjects import read_manifests
    from switchyard.providers.kubernetes_ingress import (
        KubernetesIngressOptions,
        config_from_ingresses,
    )

    classes = [d for d in manifests() if d["kind"] == "IngressClass"]
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "app", "namespace": "default"},
               "spec": {"ingressClassName": classes[0]["metadata"]["name"],
                        "defaultBackend": {"service": {"name": "app", "port": {"number": 80}}}}}
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "app", "namespace": "default"},
               "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 80}]}}
    (tmp_path / "all.yaml").write_text(yaml.safe_dump_all([*classes, ingress, service]))
    found, _ = read_manifests(str(tmp_path / "all.yaml"))
    config, issues = config_from_ingresses(found, KubernetesIngressOptions(
        native_lb_by_default=True))
    assert issues == [] and "default-router" in config.http["routers"]
