"""The per-request shortcuts of the HTTP path give what the general code gives, for any input."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from switchyard.http.message import Headers
from switchyard.http.middlewares.base import MiddlewareContext
from switchyard.http.middlewares.headers import build, canonical_name, field_value
from switchyard.rules.request import entrypoint_path, general_entrypoint_path

# Paths made mostly of what the shortcuts accept, with the characters that make them step aside
# ('%', '.', doubled slashes, bytes a path must escape) often enough to reach both branches.
_PATH_CHARS = st.sampled_from(list("abcXYZ019-_~$&+,:;=@") + ["/", "/", ".", "..", "%", "%2f",
                                                               "%41", " ", "é", "*", "?", "!"])
paths = st.lists(_PATH_CHARS, max_size=12).map(lambda parts: "/" + "".join(parts))


@given(paths, st.booleans())
def test_entrypoint_path_shortcut_matches_the_general_steps(path: str, sanitize: bool) -> None:
    try:
        expected = general_entrypoint_path(path, sanitize=sanitize)
    except ValueError:
        try:
            entrypoint_path(path, sanitize=sanitize)
        except ValueError:
            return
        raise AssertionError(f"{path!r}: the shortcut accepted a path Go refuses") from None
    assert entrypoint_path(path, sanitize=sanitize) == expected


def test_plain_paths_are_their_own_entrypoint_path() -> None:
    for path in ("/", "/index.html", "/api/v1/items/42", "/a/b/", "/~user/x;y=1"):
        assert entrypoint_path(path) == path == general_entrypoint_path(path)


def test_dot_segments_and_escapes_still_take_the_general_steps() -> None:
    assert entrypoint_path("/a/./b/../c") == "/a/c"
    assert entrypoint_path("//a//b") == "/a/b"
    assert entrypoint_path("/%7euser") == "/~user"
    assert entrypoint_path("/a/.") == "/a"
    assert entrypoint_path("/a/./b", sanitize=False) == "/a/./b"


# -- customRequestHeaders: all edits in one pass --------------------------------------------------

_NAMES = st.sampled_from(["X-A", "x-a", "X-B", "Host", "host", "X-Forwarded-For",
                          "x-forwarded-for", "Accept"])
_VALUES = st.sampled_from(["", "v1", " v2 ", "  ", "a\r\nb"])


def _one_by_one(fields: dict[str, str], headers: Headers, forward_client: bool) -> bool:
    """Traefik's loop over customRequestHeaders, one Set or Del after the other."""
    for key, text in fields.items():
        name = key.encode()
        lower, value = name.lower(), field_value(text)
        if lower == b"host":
            if value:
                headers.set(lower, value, b"Host")
        elif not text:
            headers.remove(lower)
            if key == "X-Forwarded-For":
                forward_client = False
        else:
            headers.set(lower, value, canonical_name(name))
            if lower == b"x-forwarded-for":
                forward_client = True
    return forward_client


class _Next:
    def handle(self, exchange: object) -> None:
        pass


@given(st.dictionaries(_NAMES, _VALUES, min_size=1, max_size=6),
       st.lists(st.tuples(_NAMES, st.sampled_from(["1", "2"])), max_size=6), st.booleans())
def test_custom_request_headers_at_once_are_their_edits_one_by_one(
        fields: dict[str, str], sent: list[tuple[str, str]], forward_client: bool) -> None:
    received = Headers((name.encode(), value.encode()) for name, value in sent)
    expected = received.copy()
    expected_forward = _one_by_one(fields, expected, forward_client)
    handler = build({"customRequestHeaders": fields},
                    MiddlewareContext(name="h@file", provider="file"))(_Next())
    exchange = SimpleNamespace(request=SimpleNamespace(headers=received),
                               forward_client=forward_client)
    handler.handle(exchange)  # type: ignore[arg-type]
    assert exchange.request.headers == expected
    assert exchange.forward_client is expected_forward
