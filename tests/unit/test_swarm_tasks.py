"""Swarm services and tasks as the label decoder sees them, named as Traefik names them."""

from __future__ import annotations

from switchyard.providers.swarm import containers_from_swarm


def test_tasks_decode_as_traefik_names_them() -> None:
    networks = [{"Id": "n1", "Name": "back"}, {"Id": "n2", "Name": "other"}]
    services = [
        {"ID": "s1", "Spec": {"Name": "web", "Labels": {"a": "b"}, "Mode": {"Replicated": {}}}},
        {"ID": "s2", "Spec": {"Name": "agent", "Mode": {"Global": {}}}},
        {"ID": "s3", "Spec": {"Name": "vip", "Labels": {"traefik.swarm.lbswarm": "true"}},
         "Endpoint": {"VirtualIPs": [{"NetworkID": "n1", "Addr": "10.0.1.2/24"}]}},
    ]
    attached = [{"Network": {"ID": "n1"}, "Addresses": ["10.0.1.7/24"]},
                {"Network": {"ID": "ingress"}, "Addresses": ["10.0.0.9/24"]}]
    tasks = [
        {"ID": "t2", "ServiceID": "s1", "Slot": 2, "Status": {"State": "running"},
         "NetworksAttachments": attached},
        {"ID": "t1", "ServiceID": "s1", "Slot": 1, "Status": {"State": "starting"},
         "NetworksAttachments": attached},
        {"ID": "tg", "ServiceID": "s2", "Status": {"State": "running"},
         "NetworksAttachments": attached},
        {"ID": "tn", "ServiceID": "s1", "Slot": 3, "Status": {"State": "running"}},
    ]
    found = {c.name: (c.service_name, dict(c.networks), dict(c.labels))
             for c in containers_from_swarm(services, networks, tasks)}
    assert found == {
        "web.2": ("web", {"back": "10.0.1.7"}, {"a": "b"}),
        "agent.tg": ("agent", {"back": "10.0.1.7"}, {}),
        "vip": ("vip", {"back": "10.0.1.2"}, {"traefik.swarm.lbswarm": "true"}),
    }
