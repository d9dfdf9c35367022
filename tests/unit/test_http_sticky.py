"""Sticky cookies: names, values and Set-Cookie fields as Traefik makes them."""

from __future__ import annotations

import hashlib

from switchyard.http.message import Headers
from switchyard.http.sticky import StickyCookie, StickyTargets, cookie_name, cookie_value


def test_empty_cookie_name_is_derived_from_the_service_name() -> None:
    digest = hashlib.sha1(b"_TRAEFIK_BACKEND_app@file").hexdigest()
    assert cookie_name("", "app@file") == "_" + digest[:5]
    assert len(cookie_name("", "anything")) == 6


def test_configured_cookie_name_has_non_token_characters_replaced() -> None:
    assert cookie_name("my cookie/1", "svc") == "my_cookie_1"
    assert cookie_name("ok-name.v2~", "svc") == "ok-name.v2~"


def test_cookie_value_is_the_start_of_the_target_names_sha256() -> None:
    assert cookie_value("svc1") == hashlib.sha256(b"svc1").hexdigest()[:16]


def test_set_cookie_lists_attributes_in_gos_order() -> None:
    cookie = StickyCookie("sticky", secure=True, http_only=True, same_site="LAX", max_age=60,
                          path="/app", domain=".example.com")
    assert cookie.set_cookie("abc") == (
        b"sticky=abc; Path=/app; Domain=example.com; Max-Age=60; HttpOnly; Secure; SameSite=Lax")
    assert StickyCookie("s", max_age=-1).set_cookie("v") == b"s=v; Path=/; Max-Age=0"
    assert StickyCookie("s", same_site="bogus").set_cookie("v") == b"s=v; Path=/"


def test_current_cookie_value_finds_its_target_without_rewrite() -> None:
    targets = StickyTargets(StickyCookie("s"), [("a", "A"), ("b", "B")])
    headers = Headers([(b"Cookie", b"other=1; s=" + cookie_value("b").encode())])
    assert targets.lookup(headers) == ("B", False)


def test_legacy_cookie_values_find_their_target_and_ask_for_a_rewrite() -> None:
    targets = StickyTargets(StickyCookie("s"), [("http://10.0.0.1:80", "A")])
    # FNV-1 64 of the name, as Traefik 2 wrote it; Go's strconv gives no leading zeros.
    value = 0xCBF29CE484222325
    for byte in b"http://10.0.0.1:80":
        value = ((value * 0x100000001B3) & ((1 << 64) - 1)) ^ byte
    for legacy in ("http://10.0.0.1:80", format(value, "x")):
        assert targets.lookup(Headers([(b"Cookie", f"s={legacy}".encode())])) == ("A", True)


def test_unknown_or_missing_cookie_names_no_target() -> None:
    targets = StickyTargets(StickyCookie("s"), [("a", "A")])
    assert targets.lookup(Headers([(b"Cookie", b"s=nope")])) == (None, False)
    assert targets.lookup(Headers()) == (None, False)
    quoted = Headers([(b"Cookie", b's="' + cookie_value("a").encode() + b'"')])
    assert targets.lookup(quoted) == ("A", False)
