"""The pure parts of the body middlewares: Accept-Encoding negotiation, media types, status
ranges, retry expressions and the encoded-character scan."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchyard.http.middlewares.compress import (
    IDENTITY,
    NOT_ACCEPTABLE,
    negotiate,
    parse_media_type,
)
from switchyard.http.middlewares.encodedcharacters import (
    EncodedCharactersOptions,
    denied_escapes,
    refuses,
)
from switchyard.http.middlewares.errorpages import parse_status_ranges
from switchyard.http.middlewares.retryexpr import RetryContext, parse_retry_expression

ENCODINGS = ("gzip", "br", "zstd")
codings = st.sampled_from(["gzip", "br", "zstd", "*", "identity", "deflate", "GZIP", ""])
weights = st.one_of(st.none(), st.sampled_from(["0", "0.5", "1", "0.001", "abc", "-1", "1e3"]))
items = st.builds(lambda c, w: c if w is None else f"{c};q={w}", codings, weights)
lines = st.lists(items, max_size=5).map(", ".join)


@given(st.lists(lines, min_size=1, max_size=3))
def test_negotiation_always_answers_something_offered(values: list[str]) -> None:
    chosen = negotiate(values, ENCODINGS)
    assert chosen in (*ENCODINGS, IDENTITY, NOT_ACCEPTABLE)


@given(st.permutations(list(ENCODINGS)))
def test_ties_go_to_the_first_configured_encoding(order: list[str]) -> None:
    assert negotiate([", ".join(reversed(order))], order) == order[0]


@given(st.lists(lines, min_size=1, max_size=3))
def test_the_winner_is_one_the_client_named(values: list[str]) -> None:
    chosen = negotiate(values, ENCODINGS)
    if chosen in ENCODINGS and "*" not in "".join(values):
        assert chosen in "".join(values)


def test_negotiation_examples() -> None:
    assert negotiate([""], ENCODINGS) == IDENTITY
    assert negotiate(["deflate"], ENCODINGS) == NOT_ACCEPTABLE
    assert negotiate(["*"], ENCODINGS, "zstd") == "zstd"
    assert negotiate(["*"], ENCODINGS) == "gzip"
    assert negotiate(["identity, br;q=0.5"], ENCODINGS) == IDENTITY
    assert negotiate(["br;q=0.5;x=1, gzip;q=0.1"], ENCODINGS) == "gzip"  # bad q: skipped
    assert negotiate(["br;q=-1"], ENCODINGS) == "br"  # not 0, so acceptable (as Traefik)
    assert negotiate(["br", "zstd;q=2"], ENCODINGS) == "zstd"


def test_media_types_parse_as_go_does() -> None:
    assert parse_media_type("Text/HTML; Charset=UTF-8") == ("text/html", {"charset": "UTF-8"},
                                                            None)
    assert parse_media_type('a/b; x="q \\" s"')[1] == {"x": 'q " s'}
    assert parse_media_type("a/b;")[2] is None
    assert parse_media_type("")[2] == "mime: no media type"
    assert parse_media_type("a b")[2] == "mime: expected slash after first token"
    assert parse_media_type("text/html;;") == ("text/html", {}, "mime: invalid media parameter")
    assert parse_media_type("a/b; x=1; x=2")[2] == "mime: duplicate parameter name"


@given(st.integers(100, 599), st.integers(100, 599), st.integers(0, 999))
def test_status_ranges_are_inclusive(low: int, high: int, status: int) -> None:
    ranges = parse_status_ranges([f"{low}-{high}"])
    assert (status in ranges) == (low <= status <= high)


def test_status_range_errors_use_gos_message() -> None:
    assert 404 in parse_status_ranges(["404"])
    assert 501 in parse_status_ranges(["+500-510-999"])
    with pytest.raises(ValueError, match='parsing "500,502": invalid syntax'):
        parse_status_ranges(["500,502"])


@given(st.integers(1, 12), st.sampled_from([200, 404, 502, 503, 504]),
       st.sampled_from(["GET", "POST"]))
def test_retry_expressions_evaluate_like_python(attempt: int, status: int, method: str) -> None:
    context = RetryContext(method, attempt, status)
    expression = parse_retry_expression(
        'IsNetworkError() && Attempts() <= 2 || ResponseCode() == 503 && RequestMethod() == "GET"')
    expected = (status in (502, 504) and attempt <= 2) or (status == 503 and method == "GET")
    assert expression(context) == expected


@pytest.mark.parametrize("bad", ["Attempts()", "!IsNetworkError()", "Foo()", "2 < Attempts()",
                                 'RequestMethod() > "A"', 'Attempts() == "1"', "(Attempts() > 1",
                                 "", "IsNetworkError() IsNetworkError()"])
def test_bad_retry_expressions_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_retry_expression(bad)


@given(st.binary(max_size=30))
def test_encoded_scan_finds_every_denied_escape(path: bytes) -> None:
    denied = denied_escapes(EncodedCharactersOptions())
    expected = False
    index = 0
    while index < len(path):
        if path[index:index + 1] == b"%":
            if index + 2 >= len(path) or path[index:index + 3] in denied:
                expected = True
                break
            index += 3
        else:
            index += 1
    assert refuses(path, denied) == expected
