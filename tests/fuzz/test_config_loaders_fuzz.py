"""Fuzz the configuration loaders: any file gives a config or a ConfigLoadError naming it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from switchyard.config.loader import (
    ConfigLoadError,
    load_dynamic,
    load_dynamic_from_dict,
    load_static,
    static_from_dict,
)

FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

VALID_DYNAMIC_YAML = """\
tcp:
  routers:
    db:
      entryPoints: [tls]
      rule: "HostSNI(`db.example.com`) && ClientIP(`10.0.0.0/8`)"
      service: db
      tls: {passthrough: true}
  services:
    db:
      loadBalancer:
        servers: [{address: "10.0.0.5:5432"}]
"""
VALID_DYNAMIC_TOML = """\
[tcp.routers.db]
  entryPoints = ["tls"]
  rule = "HostSNI(`db.example.com`)"
  service = "db"
[[tcp.services.db.loadBalancer.servers]]
  address = "10.0.0.5:5432"
"""
VALID_STATIC_YAML = """\
entryPoints:
  tls: {address: ":9443", transport: {respondingTimeouts: {readTimeout: 60s}}}
providers:
  file: {filename: dynamic.yml}
log: {level: INFO}
"""
VALID_STATIC_TOML = """\
[entryPoints.tls]
  address = ":9443"
[providers.file]
  filename = "dynamic.yml"
"""

# C0 controls but tab, LF and CR; DEL; C1 controls; BOMs and non-characters. PyYAML refuses
# most of them before it starts parsing, which is how \x18 once ended the file watch.
CONTROL = [chr(c) for c in [*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F,
                            *range(0x80, 0xA0)]] + ["\ufeff", "\ufffe", "\uffff", "\u2028"]


def mutate(text: str, position: int, insert: str, mode: str) -> str:
    position %= len(text) + 1
    if mode == "drop":
        return text[:position] + text[position + 1:]
    return text[:position] + insert + text[position + (mode == "replace"):]


def mutations(valid: str) -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda pos, insert, mode: mutate(valid, pos, insert, mode).encode(),
        st.integers(0, 10_000), st.sampled_from(CONTROL) | st.text(max_size=3),
        st.sampled_from(["insert", "replace", "drop"]))


raw_bytes = st.binary(max_size=300)
yaml_ish = st.text(alphabet=st.sampled_from(list("tcp:routers- {}[]\"'`#&*!|>%@,?\n\t ")
                                            + CONTROL), max_size=120).map(str.encode)


@pytest.fixture(scope="module")
def scratch() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="switchyard-fuzz-") as directory:
        yield directory


def written(directory: str, name: str, content: bytes) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as stream:
        stream.write(content)
    return path


def assert_only_config_load_error(load: Callable[[], Any], path: str) -> None:
    try:
        load()
    except ConfigLoadError as error:
        assert str(error).startswith(path), f"the error does not name the file: {error}"
    except Exception as error:  # noqa: BLE001 - the property is that nothing else escapes
        pytest.fail(f"{path}: {type(error).__name__} escaped the loader, which may raise only "
                    f"ConfigLoadError: {error}")


LOADERS: list[tuple[str, Callable[[str], Any]]] = [
    ("dynamic.yml", lambda path: load_dynamic(filename=path)),
    ("dynamic.toml", lambda path: load_dynamic(filename=path)),
    ("traefik.yml", load_static),
    ("traefik.toml", load_static),
]


def check_one_input(data: bytes, directory: str) -> None:
    """The property for one input (the atheris entry point's body): byte 0 picks the loader."""
    name, load = LOADERS[data[0] % len(LOADERS)] if data else LOADERS[0]
    path = written(directory, name, data[1:])
    assert_only_config_load_error(lambda: load(path), path)


# (file name, strategy) pairs: the extension picks the parser.
DYNAMIC_INPUTS = {
    "yaml-bytes": ("dynamic.yml", raw_bytes),
    "yaml-tokens": ("dynamic.yaml", yaml_ish),
    "yaml-mutated": ("dynamic.yml", mutations(VALID_DYNAMIC_YAML)),
    "toml-bytes": ("dynamic.toml", raw_bytes),
    "toml-mutated": ("dynamic.toml", mutations(VALID_DYNAMIC_TOML)),
}
STATIC_INPUTS = {
    "yaml-bytes": ("traefik.yml", raw_bytes),
    "yaml-mutated": ("traefik.yml", mutations(VALID_STATIC_YAML)),
    "toml-bytes": ("traefik.toml", raw_bytes),
    "toml-mutated": ("traefik.toml", mutations(VALID_STATIC_TOML)),
}

# The inputs of issue 13, for every file kind.
REGRESSIONS = [b"\x18", b"tcp:\n  routers: {}\n\x18\n", b'rule = "HostSNI(`*`)\x18"\n',
               b"\x00", b"\xff\xfe", b"tcp: {}\n\x1b[0m\n", "tcp: {}\n\u0085\n".encode()]


def with_regressions(test: Callable[..., None]) -> Callable[..., None]:
    for content in REGRESSIONS:
        test = example(content=content)(test)
    return test


@pytest.mark.parametrize("selector", range(len(LOADERS)))
@pytest.mark.parametrize("content", [b"tcp: {}\n", b"[tcp]\n", b"", b"\xff\xfe"])
def test_every_loader_takes_an_atheris_input(scratch: str, selector: int, content: bytes) -> None:
    check_one_input(bytes([selector]) + content, scratch)


@pytest.mark.parametrize("name,strategy", DYNAMIC_INPUTS.values(), ids=DYNAMIC_INPUTS.keys())
def test_a_dynamic_file_loads_or_raises_config_load_error(
        scratch: str, name: str, strategy: st.SearchStrategy[bytes]) -> None:
    @FAST
    @given(content=strategy)
    @with_regressions
    def check(content: bytes) -> None:
        path = written(scratch, name, content)
        assert_only_config_load_error(lambda: load_dynamic(filename=path), path)

    check()


@pytest.mark.parametrize("name,strategy", STATIC_INPUTS.values(), ids=STATIC_INPUTS.keys())
def test_a_static_file_loads_or_raises_config_load_error(
        scratch: str, name: str, strategy: st.SearchStrategy[bytes]) -> None:
    @FAST
    @given(content=strategy)
    @with_regressions
    def check(content: bytes) -> None:
        path = written(scratch, name, content)
        assert_only_config_load_error(lambda: load_static(path), path)

    check()


@FAST
@given(st.lists(raw_bytes | mutations(VALID_DYNAMIC_YAML), min_size=1, max_size=3))
@example([b"tcp: {}\n", b"\x18"])
def test_a_directory_loads_or_raises_config_load_error_naming_the_file(
        scratch: str, contents: list[bytes]) -> None:
    directory = tempfile.mkdtemp(dir=scratch)
    for index, content in enumerate(contents):
        written(directory, f"{index}.yml", content)
    assert_only_config_load_error(lambda: load_dynamic(directory=directory), directory)


# Values as YAML and TOML can hold them, shaped like a configuration.
KEYS = ["tcp", "tls", "routers", "services", "middlewares", "r", "s", "rule", "service",
        "entryPoints", "loadBalancer", "servers", "address", "weighted", "weight", "options",
        "certificates", "stores", "priority", "ipAllowList", "sourceRange", "inFlightConn",
        "amount", "serversTransports", "dialTimeout", "http", "udp", "providers", "file",
        "filename", "log", "level", "api", "insecure", "entryPoints", "transport"]
scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
           | st.sampled_from(CONTROL))
trees = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner,
                                       max_size=4), max_leaves=30)
documents = st.dictionaries(st.sampled_from(KEYS), trees, max_size=4)


@FAST
@given(documents)
def test_any_shape_of_dynamic_data_is_validated_element_by_element(raw: dict[str, Any]) -> None:
    _, issues = load_dynamic_from_dict(raw, "fuzz")

    assert all(issue.source == "fuzz" for issue in issues)


@FAST
@given(documents)
def test_any_shape_of_static_data_is_a_config_or_a_config_load_error(raw: dict[str, Any]) -> None:
    try:
        static_from_dict(raw, "fuzz")
    except ConfigLoadError as error:
        assert str(error).startswith("fuzz")


@FAST
@given(documents)
def test_any_shape_dumped_as_yaml_loads_or_raises_config_load_error(
        scratch: str, raw: dict[str, Any]) -> None:
    path = written(scratch, "dumped.yml", yaml.safe_dump(raw, allow_unicode=True).encode())
    assert_only_config_load_error(lambda: load_dynamic(filename=path), path)
    assert_only_config_load_error(lambda: load_static(path), path)
