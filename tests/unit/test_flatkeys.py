"""The flat key/value decoder shared by labels and KV stores."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchyard.config.dynamic import DynamicConfig
from switchyard.providers.flatkeys import (
    canonical,
    decode,
    kv_path,
    label_path,
    normalize_name,
    parse_bool,
)


def test_label_keys_split_on_dots_with_bracketed_list_indexes() -> None:
    assert label_path("tcp.routers.r.tls.domains[0].sans") == (
        "tcp", "routers", "r", "tls", "domains", 0, "sans")
    assert label_path("a.b[1][2]") == ("a", "b", 1, 2)


@pytest.mark.parametrize("key", ["a..b", "a.[0]", "a.b[x]", "a.b]", ""])
def test_malformed_label_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        label_path(key)


def test_kv_keys_split_on_slashes_with_numeric_segments_as_indexes() -> None:
    assert kv_path("tcp/routers/r/entrypoints/0") == ("tcp", "routers", "r", "entrypoints", 0)
    assert kv_path("tcp/routers/r/rule/") == ("tcp", "routers", "r", "rule")
    with pytest.raises(ValueError):
        kv_path("tcp//routers")


def test_keys_differing_only_in_case_merge_under_the_first_sorted_spelling() -> None:
    tree, issues = decode({"tcp.routers.Web.rule": "r", "tcp.Routers.web.service": "s"},
                          label_path, "test")

    # Byte order sorts capitals first: "tcp.Routers.web..." is the first key.
    assert tree == {"tcp": {"Routers": {"web": {"rule": "r", "service": "s"}}}}
    assert issues == []


def test_indexed_keys_become_a_list_in_index_order() -> None:
    tree, _ = decode({"e/10": "c", "e/2": "b", "e/0": "a"}, kv_path, "test")

    assert tree == {"e": ["a", "b", "c"]}


def test_a_bad_key_is_reported_with_its_full_spelling_and_the_rest_decodes() -> None:
    tree, issues = decode({"a..b": "x", "ok": "y"}, label_path, "src",
                          shown=lambda key: "traefik." + key)

    assert tree == {"ok": "y"}
    assert [(i.source, i.path, i.severity) for i in issues] == [("src", "traefik.a..b", "error")]


def test_mixing_indexes_and_names_under_one_key_is_an_error() -> None:
    tree, issues = decode({"s/0": "a", "s/name": "b"}, kv_path, "test")

    assert tree == {"s": {"name": "b"}}
    assert [i.path for i in issues] == ["s"]


def test_a_true_section_with_sub_keys_keeps_the_sub_keys_silently() -> None:
    tree, issues = decode({"r.tls": "true", "r.tls.passthrough": "true"}, label_path, "test")

    assert tree == {"r": {"tls": {"passthrough": "true"}}}
    assert issues == []


def test_canonical_turns_boolean_sections_into_presence_and_respells_known_keys() -> None:
    raw = {"TCP": {"routers": {"MyRouter": {"RULE": "x", "tls": "true", "Custom": "1"},
                               "plain": {"tls": "false"}},
                   "services": {"s": {"loadbalancer": {"servers": [{"ADDRESS": "a:1"}]}}}}}

    assert canonical(raw, DynamicConfig) == {
        "tcp": {"routers": {"MyRouter": {"rule": "x", "tls": {}, "Custom": "1"},
                            "plain": {}},
                "services": {"s": {"loadBalancer": {"servers": [{"address": "a:1"}]}}}}}


def test_go_booleans_are_recognised_and_nothing_else() -> None:
    assert [parse_bool(v) for v in ("true", "T", "1", "FALSE", "0", "yes", "")] == [
        True, True, True, False, False, None, None]


def test_names_normalize_like_traefik_provider_normalize() -> None:
    assert normalize_name("whoami_demo") == "whoami-demo"
    assert normalize_name("/default-test.route") == "default-test-route"


_NAMES = st.text(alphabet="abcdefghij-", min_size=1, max_size=6).filter(lambda s: s[0] != "-")


@given(st.dictionaries(st.tuples(_NAMES, _NAMES, _NAMES), st.text(max_size=10), max_size=8))
def test_nested_values_survive_a_flatten_and_decode(flat: dict[tuple[str, str, str], str]) -> None:
    pairs = {"/".join(k): v for k, v in flat.items()}
    tree, issues = decode(pairs, kv_path, "test")

    assert issues == []
    found = {}
    for a, level in tree.items():
        for b, inner in level.items():
            for c, value in inner.items():
                found[f"{a}/{b}/{c}"] = value
    assert found == pairs
