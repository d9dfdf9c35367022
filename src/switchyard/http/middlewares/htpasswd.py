"""Users files and password hashes for basicAuth and digestAuth: parsing and checking, no I/O.

The schemes are the ones Traefik's authentication library accepts, picked by prefix:
``$2a$``/``$2b$``/``$2x$``/``$2y$`` bcrypt, ``{SHA}`` base64 SHA-1, and anything else is taken
as ``$magic$salt$hash`` MD5-crypt (``$apr1$`` as htpasswd writes it, ``$1$`` as crypt(3) does).
Plain-text and DES-crypt secrets are not accepted by Traefik, so they never match here either.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "BCRYPT_PREFIXES",
    "UserLine",
    "UserLineError",
    "apr1",
    "inline_lines",
    "is_bcrypt",
    "md5_crypt",
    "parse_basic_users",
    "parse_digest_users",
    "sha1_secret",
    "users_file_lines",
    "verify",
]

BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2x$", "$2y$")
_ITOA64 = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Which bytes of the final MD5 state go into each 6-bit group of the MD5-crypt text.
_MD5_CRYPT_ORDER = (12, 6, 0, 13, 7, 1, 14, 8, 2, 15, 9, 3, 5, 10, 4, 11)
_BCRYPT_KEY_BYTES = 72  # Blowfish's key schedule reads no further


class UserLineError(ValueError):
    """A users entry that is not ``name:hash`` (basic) or ``name:realm:hash`` (digest)."""


@dataclass(frozen=True, slots=True)
class UserLine:
    """One users entry and where it came from (``users[2]``, ``usersFile /x line 3``)."""

    text: str
    origin: str


def users_file_lines(text: str, path: str) -> list[UserLine]:
    """The entries of a users file: each line trimmed, blank lines and ``#`` comments skipped."""
    lines = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append(UserLine(line, f"usersFile {path} line {number}"))
    return lines


def inline_lines(users: Sequence[str]) -> list[UserLine]:
    """Inline ``users`` entries, as they are (Traefik trims only file lines)."""
    return [UserLine(user, f"users[{index}]") for index, user in enumerate(users)]


def parse_basic_users(lines: Iterable[UserLine]) -> dict[str, str]:
    """``name -> hash``; a later entry for the same name wins (inline users come after the file).

    Raises UserLineError naming the entry; the hash is never quoted back.
    """
    users: dict[str, str] = {}
    for line in lines:
        fields = line.text.split(":")
        if len(fields) != 2:
            raise UserLineError(_shape_error(line, fields, "name:hashed-password"))
        users[fields[0]] = fields[1]
    return users


def parse_digest_users(lines: Iterable[UserLine]) -> dict[str, str]:
    """``"name:realm" -> HA1 hex`` from ``name:realm:md5(name:realm:password)`` entries."""
    users: dict[str, str] = {}
    for line in lines:
        fields = line.text.split(":")
        if len(fields) != 3:
            raise UserLineError(_shape_error(line, fields, "name:realm:md5-hash (htdigest)"))
        users[f"{fields[0]}:{fields[1]}"] = fields[2]
    return users


def _shape_error(line: UserLine, fields: Sequence[str], shape: str) -> str:
    count = len(fields)
    return (f"{line.origin}: expected {shape}, found {count} colon-separated "
            f"field{'s' if count != 1 else ''} (user {fields[0]!r})")


def is_bcrypt(secret: str) -> bool:
    """Whether checking ``secret`` costs a bcrypt round (milliseconds: keep it off the loop)."""
    return secret.startswith(BCRYPT_PREFIXES)


def verify(password: bytes, secret: str) -> bool:
    """Whether ``password`` matches the stored ``secret``, as Traefik's CheckSecret decides."""
    if secret.startswith("{SHA}"):
        return hmac.compare_digest(secret[5:].encode("latin-1", "replace"),
                                   sha1_secret(password)[5:].encode("ascii"))
    if is_bcrypt(secret):
        return _verify_bcrypt(password, secret)
    stored = secret.encode("utf-8", "surrogateescape")
    fields = stored.split(b"$", 3)
    if len(fields) != 4:
        return False
    computed = md5_crypt(password, fields[2], b"$" + fields[1] + b"$")
    return hmac.compare_digest(stored, computed)


def _verify_bcrypt(password: bytes, secret: str) -> bool:
    import bcrypt  # only the middlewares with bcrypt users pay for the import

    # Go hashes every minor version the same way; the Python library does too under one prefix.
    stored = ("$2b$" + secret[4:]).encode("ascii", "replace")
    try:
        return bcrypt.checkpw(password[:_BCRYPT_KEY_BYTES], stored)
    except ValueError:  # not a well-formed bcrypt hash
        return False


def sha1_secret(password: bytes) -> str:
    """``{SHA}`` and the base64 SHA-1 of ``password``, as ``htpasswd -s`` writes it."""
    return "{SHA}" + base64.b64encode(hashlib.sha1(password).digest()).decode("ascii")


def apr1(password: bytes, salt: bytes) -> str:
    """``$apr1$salt$hash``, as ``htpasswd -m`` writes it."""
    return md5_crypt(password, salt, b"$apr1$").decode("latin-1")


def md5_crypt(password: bytes, salt: bytes, magic: bytes) -> bytes:
    """Poul-Henning Kamp's MD5-crypt with ``magic`` (``$1$`` or ``$apr1$``): ``magic salt $ hash``.

    The salt is used whole, as Traefik's library does (htpasswd and openssl write 8 characters).
    """
    outer = hashlib.md5(password + magic + salt)
    mixin = hashlib.md5(password + salt + password).digest()
    outer.update(bytes(mixin[i % 16] for i in range(len(password))))
    length = len(password)
    while length:
        outer.update(b"\0" if length & 1 else password[:1])
        length >>= 1
    state = outer.digest()
    for round_ in range(1000):
        step = hashlib.md5(state if round_ % 2 == 0 else password)
        if round_ % 3:
            step.update(salt)
        if round_ % 7:
            step.update(password)
        step.update(password if round_ % 2 == 0 else state)
        state = step.digest()
    return magic + salt + b"$" + _crypt_base64(state)


def _crypt_base64(state: bytes) -> bytes:
    out = bytearray()
    value = bits = 0
    for index in _MD5_CRYPT_ORDER:
        value |= state[index] << bits
        bits += 8
        while bits > 6:
            out.append(_ITOA64[value & 0x3F])
            value >>= 6
            bits -= 6
    out.append(_ITOA64[value & 0x3F])
    return bytes(out)
