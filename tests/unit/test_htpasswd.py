"""htpasswd lines and hashes: what openssl and Apache's htpasswd write verifies, nothing else does."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchyard.http.middlewares.digestauth import MalformedParams, digest_params, url_path
from switchyard.http.middlewares.htpasswd import (
    UserLine,
    UserLineError,
    apr1,
    inline_lines,
    is_bcrypt,
    md5_crypt,
    parse_basic_users,
    parse_digest_users,
    sha1_secret,
    users_file_lines,
    verify,
)
from tests.harness import ensure_command

# What a shell argument can carry: printable text without NUL or line breaks.
passwords = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\x7f"),
                    min_size=0, max_size=40)
salts = st.text(st.sampled_from("./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
                min_size=1, max_size=8)
SLOW = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def openssl() -> str:
    try:
        return ensure_command("openssl", "openssl")
    except (RuntimeError, subprocess.CalledProcessError, OSError):
        pytest.skip("openssl cannot be installed")


@pytest.fixture(scope="module")
def htpasswd() -> str:
    try:
        return ensure_command("htpasswd", "apache2-utils")
    except (RuntimeError, subprocess.CalledProcessError, OSError):
        pytest.skip("apache2-utils (htpasswd) cannot be installed")


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, timeout=30).stdout.decode().strip()


@SLOW
@given(password=passwords, salt=salts)
def test_apr1_and_md5_crypt_match_openssl(openssl: str, password: str, salt: str) -> None:
    secret = password.encode()
    assert apr1(secret, salt.encode()) == _run(openssl, "passwd", "-apr1", "-salt", salt, password)
    assert md5_crypt(secret, salt.encode(), b"$1$").decode() == _run(
        openssl, "passwd", "-1", "-salt", salt, password)


@SLOW
@given(password=passwords, other=passwords)
def test_htpasswd_lines_of_every_scheme_verify_and_wrong_passwords_fail(
        htpasswd: str, password: str, other: str) -> None:
    for flag in ("-m", "-s", "-B"):
        extra = ("-C", "4") if flag == "-B" else ()
        line = _run(htpasswd, "-nb", flag, *extra, "user", password)
        users = parse_basic_users(inline_lines([line]))
        secret = users["user"]
        assert verify(password.encode(), secret), line
        if other != password and not (flag == "-B" and other.encode()[:72] == password.encode()[:72]):
            assert not verify(other.encode(), secret), line


@given(password=passwords)
def test_sha1_secret_is_what_htpasswd_s_writes_and_verifies(password: str) -> None:
    secret = sha1_secret(password.encode())
    assert secret.startswith("{SHA}") and len(secret) == 33
    assert verify(password.encode(), secret)
    assert not verify(password.encode() + b"x", secret)


def test_every_bcrypt_minor_version_verifies_the_same_hash() -> None:
    import bcrypt

    stored = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    for prefix in ("$2a$", "$2b$", "$2x$", "$2y$"):
        assert is_bcrypt(prefix + stored[4:])
        assert verify(b"pw", prefix + stored[4:])
    # Past 72 bytes bcrypt reads nothing more, as Go's CompareHashAndPassword does.
    long = b"p" * 72
    assert verify(long + b"tail", bcrypt.hashpw(long, bcrypt.gensalt(4)).decode())


@pytest.mark.parametrize("secret", ["pw", "", "$2y$04$short", "{SHA}", "$apr1$", "abc$def",
                                    "$5$salt$hash", "{SHA}not base64"])
def test_plain_text_and_malformed_secrets_never_match(secret: str) -> None:
    assert not verify(b"pw", secret)
    assert not verify(secret.encode(), secret)


@given(text=st.text(max_size=200), password=st.binary(max_size=80))
def test_parsers_and_verify_never_crash_on_arbitrary_text(text: str, password: bytes) -> None:
    lines = users_file_lines(text, "/x") + inline_lines(text.split(","))
    for parse in (parse_basic_users, parse_digest_users):
        try:
            parse(lines)
        except UserLineError as exc:
            assert "expected" in str(exc)
    assert verify(password, text) in (True, False)
    try:
        digest_params(text)
    except MalformedParams:
        pass
    assert url_path(text) is None or isinstance(url_path(text), bytes)


def test_users_file_lines_are_trimmed_and_comments_and_blanks_skipped() -> None:
    lines = users_file_lines("# comment\n\n  a:b  \r\n\t#x:y\nc:d", "/etc/users")
    assert lines == [UserLine("a:b", "usersFile /etc/users line 3"),
                     UserLine("c:d", "usersFile /etc/users line 5")]


def test_a_bad_line_error_names_where_it_is_and_never_quotes_the_hash() -> None:
    with pytest.raises(UserLineError) as caught:
        parse_basic_users(users_file_lines("a:b\nroot:$apr1$x$y:extra\n", "/u"))
    assert str(caught.value) == ("usersFile /u line 2: expected name:hashed-password, found 3 "
                                 "colon-separated fields (user 'root')")
    with pytest.raises(UserLineError, match=r"users\[0\]: expected name:realm:md5-hash"):
        parse_digest_users(inline_lines(["name:hash"]))


def test_later_entries_win_and_digest_users_are_keyed_by_name_and_realm() -> None:
    assert parse_basic_users(inline_lines(["a:1", "b:2", "a:3"])) == {"a": "3", "b": "2"}
    assert parse_digest_users(inline_lines(["a:r:h1", "a:s:h2"])) == {"a:r": "h1", "a:s": "h2"}


def test_digest_params_unquote_keep_commas_in_quotes_and_take_bare_keys() -> None:
    params = digest_params('Digest username="a, b", realm=r, "x", uri="/p?q=\\"1\\"", nc=')
    assert params == {"username": "a, b", "realm": "r", '"x"': "", "uri": '/p?q="1"', "nc": ""}
    assert digest_params("Basic abc") is None
    assert digest_params("digest username=a") is None  # the scheme is case-sensitive in Traefik
    with pytest.raises(MalformedParams):
        digest_params('Digest username="')


@pytest.mark.parametrize(("reference", "path"), [
    ("/a%2Fb?x#y", b"/a/b"), ("http://h:80/p", b"/p"), ("mailto:x", b""), ("?q", b""),
    ("a:b", b""), ("http://h:x/p", None), ("/bad%zz", None), (":x", None), ("/a\x01", None),
    ("//host/p", b"/p"),
])
def test_url_path_reads_references_as_go_does(reference: str, path: bytes | None) -> None:
    assert url_path(reference) == path
