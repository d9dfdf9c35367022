"""Go's net/url pieces (switchyard.gourl): escaping, EscapedPath, JoinPath, Parse and String."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchyard.gourl import URLPath, escape_path, join_path, parse_url, unescape


@pytest.mark.parametrize(("raw", "path", "kept_raw"), [
    (b"/a/b", b"/a/b", b""),
    (b"/a%2Fb", b"/a/b", b"/a%2Fb"),
    (b"/a%20b", b"/a b", b""),
    (b"/a%25b", b"/a%b", b""),
    (b"/%61", b"/a", b"/%61"),
])
def test_set_path_keeps_the_raw_form_only_when_it_differs(raw: bytes, path: bytes,
                                                          kept_raw: bytes) -> None:
    url = URLPath.parse(raw)
    assert (url.path, url.raw) == (path, kept_raw)
    assert url.escaped() == raw


def test_an_invalid_raw_path_falls_back_to_the_escaped_decoded_one() -> None:
    assert URLPath(b"/a b/x/y", b"/a b/x%2Fy").escaped() == b"/a%20b/x/y"
    assert URLPath(b"*").escaped() == b"*"


def test_bad_escapes_are_refused_with_go_wording() -> None:
    with pytest.raises(ValueError, match='invalid URL escape "%zz"'):
        unescape(b"/%zz")
    with pytest.raises(ValueError, match='invalid URL escape "%2"'):
        unescape(b"/%2")


@pytest.mark.parametrize(("raw", "cleaned"), [
    (b"/a//b", b"/a/b"), (b"/a/./b/", b"/a/b/"), (b"/a/../../b", b"/b"), (b"//", b"/"),
    (b"/a%2F..%2Fb", b"/a%2F..%2Fb"),
])
def test_join_path_cleans_the_escaped_path(raw: bytes, cleaned: bytes) -> None:
    assert join_path(URLPath.parse(raw)).escaped() == cleaned


@pytest.mark.parametrize(("raw", "written"), [
    (b"https://example.com/a b?x=1", b"https://example.com/a%20b?x=1"),
    (b"https://example.com:8443/", b"https://example.com:8443/"),
    (b"HTTP://h/p", b"http://h/p"),
    (b"https://h", b"https://h"),
    (b"https://h?", b"https://h?"),
    (b"https://h/#frag ment", b"https://h/#frag%20ment"),
    (b"https://user:p%40ss@h/", b"https://user:p%40ss@h/"),
    (b"/relative/path", b"/relative/path"),
    (b"mailto:someone@example.com", b"mailto:someone@example.com"),
    (b"https://[::1]:8443/x", b"https://[::1]:8443/x"),
    (b"https:///x", b"https:///x"),
])
def test_parse_then_string(raw: bytes, written: bytes) -> None:
    assert parse_url(raw).string() == written


@pytest.mark.parametrize(("raw", "reason"), [
    (b"https://h/%zz", "invalid URL escape"),
    (b"https://h:port/", 'invalid port ":port" after host'),
    (b"https://h h/", "invalid character \" \" in host name"),
    (b":foo", "missing protocol scheme"),
    (b"a:b/c:d", None),  # a scheme: opaque, fine
    (b"1a:b", "first path segment in URL cannot contain colon"),
    (b"https://h/\x01", "invalid control character"),
])
def test_parse_refuses_what_go_refuses(raw: bytes, reason: str | None) -> None:
    if reason is None:
        parse_url(raw)
        return
    with pytest.raises(ValueError, match=reason):
        parse_url(raw)


@given(st.binary(max_size=20))
def test_escaped_path_always_decodes_back_to_the_path(path: bytes) -> None:
    url = URLPath(path)
    assert unescape(url.escaped()) == path or path == b"*"
    assert URLPath.parse(escape_path(path)).path == path
