"""The per-request shortcuts of the HTTP path give what the general code gives, for any input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

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
