"""`--entryPoints.<n>.http.tls=true`, the flag form Traefik's docs use, switches TLS on."""

from __future__ import annotations

import pytest
import yaml

from switchyard.build import build_runtime
from switchyard.config.loader import load_dynamic_from_dict, static_from_dict

DYNAMIC = """
http:
  routers:
    web: {rule: "Host(`web.test`)", service: s, entryPoints: [websecure]}
  services:
    s: {loadBalancer: {servers: [{url: "http://127.0.0.1:8080"}]}}
"""


@pytest.mark.parametrize(("value", "https"), [("true", True), (True, True), ("false", False),
                                               ({}, True)])
def test_http_tls_true_makes_the_entry_points_routers_https(value: object, https: bool) -> None:
    static, issues = static_from_dict(
        {"entryPoints": {"websecure": {"address": ":8443", "http": {"tls": value}}}}, "flags")
    assert not [i for i in issues if i.severity == "error"], issues
    config, _ = load_dynamic_from_dict(yaml.safe_load(DYNAMIC), "file")
    runtime = build_runtime(static, {"file": config})
    assert not [i for i in runtime.issues if i.severity == "error"], runtime.issues
    domains = [d.domain for d in runtime.http.https_domains.get("websecure", ())]
    assert ("web.test" in domains) is https
