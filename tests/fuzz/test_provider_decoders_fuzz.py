"""Fuzz what providers decode (KV pairs, labels, manifests) and the API's number reader."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from switchyard.api.handlers import go_atoi
from switchyard.providers.base import load_guarded
from switchyard.providers.kubernetes import (
    KubernetesCRDOptions,
    KubernetesCRDProvider,
    config_from_manifests,
    read_manifests,
)
from switchyard.providers.kv import SourceUnreadable, config_from_pairs, strict_text
from switchyard.providers.labels import config_from_labels

FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

SEGMENTS = ["tcp", "routers", "services", "middlewares", "r", "s", "rule", "service",
            "entrypoints", "loadbalancer", "servers", "address", "0", "1", "99999999999999999999",
            "tls", "passthrough", "domains", "main", "sans", "weighted", "weight", "ipallowlist",
            "sourcerange", "inflightconn", "amount", "proxyprotocol", "version", "", "²"]
segment = st.sampled_from(SEGMENTS) | st.text(max_size=4)
values = st.sampled_from(["true", "false", "HostSNI(`*`)", "127.0.0.1:80", "10s", "-1", "1e400",
                          "nan", "\x18", ""]) | st.text(max_size=10)


@settings(FAST, max_examples=120)
@given(st.dictionaries(st.lists(segment, min_size=1, max_size=7).map("/".join), values,
                       max_size=10))
@example({"tcp/routers/r/rule": "HostSNI(`*`)\x18", "tcp/routers/r/entrypoints/"
          + "9" * 5000: "ep"})
def test_any_kv_pairs_decode_to_a_config_and_issues(pairs: dict[str, str]) -> None:
    config_from_pairs({f"traefik/{key}": value for key, value in pairs.items()}, "traefik", "kv")


@FAST
@given(st.dictionaries(st.lists(segment, min_size=1, max_size=7).map(
    lambda parts: "traefik." + ".".join(parts)), values, max_size=10))
@example({"traefik.tcp.routers.r.rule": "\x18", "traefik.tcp.routers.r.tls.domains[9999999999]"
          ".main": "x"})
def test_any_labels_decode_to_a_config_and_issues(labels: dict[str, str]) -> None:
    config_from_labels(labels, "container")


@FAST
@given(st.binary(max_size=60))
@example(b"HostSNI(\xff\xfe`*`)")
@example(b"\xc3\x28")
def test_store_bytes_are_text_or_an_error_naming_the_key(data: bytes) -> None:
    try:
        text = strict_text(data, 'key "traefik/tcp/routers/r/rule"')
    except SourceUnreadable as error:
        assert str(error).startswith('key "traefik/tcp/routers/r/rule": not UTF-8 text')
    else:
        assert text.encode() == data


def check_one_input(data: bytes) -> None:
    """The decoders' properties for one input (the atheris entry point's body).

    The bytes are read as ``key=value`` lines, the form of KV pairs and container labels.
    """
    pairs: dict[str, str] = {}
    for index, line in enumerate(data.split(b"\n")):
        key, _, value = line.partition(b"=")
        try:
            pairs[strict_text(key, f"line {index}")] = strict_text(value, f"line {index}")
        except SourceUnreadable as error:
            assert str(error).startswith(f"line {index}: not UTF-8 text")
    config_from_pairs({f"traefik/{key}": value for key, value in pairs.items()}, "traefik", "kv")
    config_from_labels({f"traefik.{key}": value for key, value in pairs.items()}, "container")
    for text in (data.decode("latin-1"), *pairs):
        value, in_range = go_atoi(text)
        assert in_range or value in (0, 2**63 - 1, -(2**63))


@pytest.fixture(scope="module")
def scratch() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="switchyard-fuzz-") as directory:
        yield directory


scalars = st.none() | st.booleans() | st.integers(-5, 70_000) | st.text(max_size=8)
trees = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["name", "namespace", "spec", "routes", "match", "services", "port", "tls",
                     "labels", "annotations", "items", "subsets", "addresses", "ip", "ports",
                     "metadata", "kind", "secretName", "data", "endpoints"]), inner, max_size=4),
    max_leaves=20)
objects = st.fixed_dictionaries({
    "kind": st.sampled_from(["IngressRouteTCP", "MiddlewareTCP", "TLSOption", "Service",
                             "Endpoints", "Secret", "EndpointSlice", "List", "Pod"]),
    "apiVersion": st.sampled_from(["traefik.io/v1alpha1", "v1", "discovery.k8s.io/v1"]),
    "metadata": trees | st.fixed_dictionaries({"name": st.sampled_from(["a", "app"])}),
    "spec": trees, "subsets": trees, "items": trees, "data": trees,
})


@settings(FAST, max_examples=60)  # each example writes and parses a manifest file
@given(st.lists(objects, max_size=4))
@example([{"kind": "Service", "apiVersion": "v1", "metadata": {"name": "a", "labels": ["x"]}}])
@example([{"kind": "List", "apiVersion": "v1", "items": 7}])
def test_any_manifest_objects_decode_to_a_config_and_issues(
        scratch: str, manifests: list[dict[str, Any]]) -> None:
    path = os.path.join(scratch, "objects.yaml")
    with open(path, "w", encoding="utf-8") as stream:
        yaml.safe_dump_all(manifests, stream)
    found, _ = read_manifests(path)
    config_from_manifests(found, KubernetesCRDOptions())


@FAST
@given(st.binary(max_size=200))
@example(b"kind: Service\n\x18\n")
@example(b"\xff")
def test_any_manifest_file_is_a_config_or_the_providers_error(scratch: str, data: bytes) -> None:
    path = os.path.join(scratch, "bytes.yaml")
    with open(path, "wb") as stream:
        stream.write(data)
    provider = KubernetesCRDProvider(KubernetesCRDOptions(manifests=path))

    update = load_guarded(provider.name, path, provider.load)

    assert (update.config is None) == bool(update.error)
    if update.config is None:
        assert path in update.error


@FAST
@given(st.from_regex(r"[+-]?[0-9]{1,40}", fullmatch=True))
@example("0" * 5000 + "12")
@example("9223372036854775807")
@example("-9223372036854775808")
def test_go_atoi_agrees_with_int_within_int64_and_clamps_outside(text: str) -> None:
    value, in_range = go_atoi(text)
    digits = text.lstrip("+-").lstrip("0") or "0"  # int() refuses 4,300+ digits, zeros too
    exact = -int(digits) if text.startswith("-") else int(digits)

    assert in_range == (-(2**63) <= exact < 2**63)
    assert value == (exact if in_range else (2**63 - 1 if exact > 0 else -(2**63)))


@FAST
@given(st.text(alphabet=st.sampled_from("+-0123456789 _.e٣１x") | st.characters(), max_size=30))
@example("1" * 5000 + "x")
@example("+")
@example("+-5")
@example(" 1")
def test_go_atoi_refuses_anything_but_a_sign_and_ascii_digits(text: str) -> None:
    if re.fullmatch(r"[+-]?[0-9]+", text) is None:
        assert go_atoi(text) == (0, False)


@FAST
@given(st.binary(max_size=200))
@example(b"tcp/routers/r/rule=HostSNI(\xff`*`)\ntcp/routers/r/service=\x18")
@example(b"tcp/routers/r/entrypoints/" + b"9" * 5000 + b"=ep")
def test_key_value_lines_of_any_bytes_decode(data: bytes) -> None:
    check_one_input(data)
