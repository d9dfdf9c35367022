"""What HTTP rules see of a request: host, path, query and headers as Go and Traefik derive them."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchyard.rules.request import (
    MAX_QUERY_SEPARATORS,
    Headers,
    RequestMeta,
    canonical_header_key,
    canonical_host,
    entrypoint_path,
    is_header_token,
    parse_query,
    routing_path,
    split_host_port,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("example.com", "example.com"),
        ("Example.COM:8080", "example.com"),
        ("example.com:", "example.com"),
        ("[::1]:8080", "::1"),
        ("[::1]", "::1"),  # no port: Traefik strips the brackets itself
        ("::1", "::1"),  # too many colons: kept as it is
        (" Example.com ", "example.com"),
        ("dot.example.org.:80", "dot.example.org."),
        ("", ""),
    ],
)
def test_canonical_host_drops_port_and_brackets_and_lowers_case(raw: str, expected: str) -> None:
    assert canonical_host(raw) == expected


@pytest.mark.parametrize(
    ("hostport", "reason"),
    [
        ("example.com", "missing port"),
        ("[::1", "missing ']'"),
        ("[::1]", "missing port"),
        ("[::1]:80:90", "too many colons"),
        ("a:b:c", "too many colons"),
        ("a]:80", "unexpected ']'"),
        ("[a]x:80", "missing port"),
    ],
)
def test_split_host_port_refuses_what_go_refuses(hostport: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        split_host_port(hostport)


def test_split_host_port_accepts_an_empty_port_and_bracketed_ipv6() -> None:
    assert split_host_port("example.com:") == ("example.com", "")
    assert split_host_port("[fe80::1%eth0]:443") == ("fe80::1%eth0", "443")


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("content-type", "Content-Type"),
        ("X-MY-HEADER", "X-My-Header"),
        ("x_a", "X_a"),
        ("a--b", "A--B"),
        ("x y", "x y"),  # not a token: unchanged, and no request can carry it
        ("ünicode", "ünicode"),
    ],
)
def test_header_keys_are_canonicalized_as_go_does(name: str, canonical: str) -> None:
    assert canonical_header_key(name) == canonical


def test_header_tokens_exclude_separators_and_spaces() -> None:
    assert is_header_token("X-Forwarded-For")
    assert is_header_token("!#$%&'*+-.^_`|~")
    assert not is_header_token("")
    assert not is_header_token("a:b")
    assert not is_header_token("a b")


def test_headers_keep_every_value_in_order_whatever_the_case() -> None:
    headers = Headers([("X-A", "1"), ("x-a", "2"), ("Other", "3")])
    assert headers.values("X-a") == ("1", "2")
    assert headers.values("missing") == ()
    assert len(headers) == 3
    assert list(headers) == [("X-A", "1"), ("x-a", "2"), ("Other", "3")]


def test_headers_accept_a_mapping() -> None:
    assert Headers({"Accept": "text/html"}).values("accept") == ("text/html",)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {}),
        ("a=1&a=2&b", {"a": ("1", "2"), "b": ("",)}),
        ("k=a+b&j=a%20b", {"k": ("a b",), "j": ("a b",)}),
        ("&&a=1&", {"a": ("1",)}),
        ("a=1;b=2&c=3", {"c": ("3",)}),  # Go skips pairs with ';'
        ("bad=%zz&good=1", {"good": ("1",)}),
        ("%41=%42", {"A": ("B",)}),
        ("x==y", {"x": ("=y",)}),
    ],
)
def test_query_is_parsed_like_go_parse_query(query: str, expected: dict[str, tuple[str, ...]]) -> None:
    assert parse_query(query) == expected


def test_query_with_too_many_separators_parses_to_nothing_as_in_go() -> None:
    at_limit = "&".join(["a=1"] * MAX_QUERY_SEPARATORS)  # 9,999 separators
    assert parse_query(at_limit)["a"] == ("1",) * MAX_QUERY_SEPARATORS
    assert parse_query(at_limit + "&z=") == {}


@given(st.dictionaries(st.text(min_size=1), st.lists(st.text(), min_size=1, max_size=3)))
def test_query_parsing_inverts_standard_form_encoding(params: dict[str, list[str]]) -> None:
    encoded = urllib.parse.urlencode([(k, v) for k, vs in params.items() for v in vs])
    expected = {k: tuple(vs) for k, vs in params.items()}
    assert parse_query(encoded) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/plain/path", "/plain/path"),
        ("/a%2fb", "/a%2Fb"),  # escapes are upper-cased
        ("/%7Ex/%41", "/~x/A"),  # unreserved characters are decoded
        ("/foo%20bar", "/foo%20bar"),
        ("/a/b/../c", "/a/c"),
        ("/a//c", "/a/c"),
        ("/a/./c/", "/a/c/"),
        ("/a/%2E%2E/b", "/b"),  # decoded dots are dot segments too
        ("/../../x", "/x"),
        ("/a(b)", "/a(b)"),
        ("/é", "/%C3%A9"),
        ("*", "*"),
        ("/", "/"),
    ],
)
def test_entry_point_normalizes_and_sanitizes_the_path(target: str, expected: str) -> None:
    assert entrypoint_path(target) == expected


def test_sanitizing_can_be_switched_off() -> None:
    assert entrypoint_path("/a//b/../c", sanitize=False) == "/a//b/../c"
    assert entrypoint_path("/%7e", sanitize=False) == "/~"


@pytest.mark.parametrize("target", ["/%zz", "/a%2", "/%"])
def test_a_bad_escape_in_the_path_is_refused(target: str) -> None:
    with pytest.raises(ValueError, match="invalid URL escape"):
        entrypoint_path(target)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/foo%20bar", "/foo bar"),
        ("/a%2Fb", "/a%2Fb"),  # reserved characters stay encoded
        ("/a%25b", "/a%25b"),
        ("/%3A%40%21", "/%3A%40%21"),
        ("/a%2fb", "/a/b"),  # only upper-case forms are kept; the entry point upper-cases
        ("/plain", "/plain"),
        ("/%C3%A9", "/é"),
    ],
)
def test_routing_path_decodes_all_but_reserved_characters(path: str, expected: str) -> None:
    assert routing_path(path) == expected


def test_routing_path_of_a_malformed_escape_is_none() -> None:
    assert routing_path("/a%2") is None
    assert routing_path("/%zz") is None


def test_request_meta_derives_what_rules_compare() -> None:
    meta = RequestMeta("Example.com:8443", "/foo%20bar", query="a=1&a=2", client_ip="10.0.0.1")
    assert meta.canonical_host == "example.com"
    assert meta.routing_path == "/foo bar"
    assert meta.query_params == {"a": ("1", "2")}
    assert meta.method == "GET"
    assert meta.headers.values("anything") == ()
    assert not meta.tls
