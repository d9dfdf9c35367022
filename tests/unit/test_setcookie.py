"""Set-Cookie values read and rewritten as Go's net/http does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchyard.http.middlewares.setcookie import read_set_cookie


@pytest.mark.parametrize(("line", "written"), [
    (b"a=1", b"a=1"),
    (b"be=2; path=/y; httponly", b"be=2; Path=/y; HttpOnly"),
    (b'q="x y"; Secure; SameSite=lax; Unknown=z', b'q="x y"; Secure; SameSite=Lax'),
    (b"d=1; Domain=.Example.com; Max-Age=0", b"d=1; Domain=Example.com; Max-Age=0"),
    (b"m=1; max-age=60; max-age=05", b"m=1; Max-Age=60"),
    (b"e=1; expires=Wed, 21 Oct 2015 07:28:00 GMT", b"e=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT"),
    (b"p=1; partitioned; samesite=bogus", b"p=1; Partitioned"),
])
def test_cookies_are_written_back_in_gos_form(line: bytes, written: bytes) -> None:
    cookie = read_set_cookie(line)
    assert cookie is not None and cookie.string() == written


@pytest.mark.parametrize("line", [b"", b"novalue", b"=1", b"a b=1", b'a=x"y', b"a=1\\"])
def test_cookies_go_cannot_read_are_dropped(line: bytes) -> None:
    assert read_set_cookie(line) is None


@given(st.binary(max_size=120))
def test_reading_never_crashes_and_what_is_read_reads_back_the_same(line: bytes) -> None:
    cookie = read_set_cookie(line)
    if cookie is not None:
        again = read_set_cookie(cookie.string())
        assert again is not None and again.string() == cookie.string()
