"""One bad element of an `http:` section is left out; the provider's other HTTP routers run."""

from __future__ import annotations

import yaml

from switchyard.build import build_runtime
from switchyard.config.http import validate_http_section
from switchyard.config.loader import load_dynamic_from_dict, static_from_dict

DYNAMIC = """
http:
  routers:
    good: {rule: "Host(`good.test`)", service: site}
    typo: {rule: "Host(`typo.test`)", service: site, priority: "high"}
  services:
    site: {loadBalancer: {servers: [{url: "http://127.0.0.1:8080"}]}}
    broken: {loadBalancer: {servers: "not a list"}}
"""


def test_a_bad_element_is_named_and_the_rest_of_the_section_runs() -> None:
    static, _ = static_from_dict({"entryPoints": {"web": {"address": ":80"}}}, "test")
    config, _ = load_dynamic_from_dict(yaml.safe_load(DYNAMIC), "file")
    runtime = build_runtime(static, {"file": config})
    assert runtime.http.routers["good@file"].status == "enabled"
    assert "typo@file" not in runtime.http.routers
    paths = {issue.path for issue in runtime.issues if issue.severity == "error"}
    assert {"http.routers.typo.priority", "http.services.broken.loadBalancer.servers"} <= paths
    assert "good.test" in str([r.rule.text for r in runtime.http.entry_routers["web"].plain])


def test_a_valid_section_is_read_whole() -> None:
    section, problems = validate_http_section({"routers": {"a": {"rule": "Path(`/`)",
                                                                 "service": "s"}}})
    assert problems == [] and set(section.routers) == {"a"}
    section, problems = validate_http_section({"routers": ["not", "a", "mapping"]})
    assert problems == [("http.routers", "must be a mapping of names to definitions")]
