"""SMTP STARTTLS, sans-IO: the client's side spoken by Switchyard, the backend's replayed.

Before it can route by SNI, Switchyard plays the server up to STARTTLS (`ClientDialogue`):
a greeting, EHLO/HELO, NOOP and RSET answered, anything else refused until STARTTLS, whose
``220`` lets the ClientHello come. Once a router is chosen, the backend is brought to the same
point by the dial (`read_reply` reads its answers): its greeting read, the client's EHLO name
sent, STARTTLS asked for when the TLS passes through; when Switchyard terminates TLS, only the
greeting is swallowed, since the client has had one and will say EHLO again inside TLS.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_LINE", "ClientDialogue", "Reply", "Step", "read_reply"]

MAX_LINE = 512  # RFC 5321: a command line, CRLF included
MAX_COMMANDS = 20  # before STARTTLS: a client that never gets there is not kept forever


@dataclass(frozen=True, slots=True)
class Step:
    """What one batch of client bytes did: bytes to answer, and whether the dialogue is over.

    ``starttls``: the client may start TLS now; ``rest`` is what it sent after the command
    (the start of its ClientHello, if it did not wait). ``close``: it quit or broke the rules.
    """

    answer: bytes = b""
    starttls: bool = False
    close: str = ""
    rest: bytes = b""


class ClientDialogue:
    """The client's SMTP session up to STARTTLS; ``helo`` is the name it gave in EHLO/HELO."""

    __slots__ = ("_buffer", "_commands", "helo", "hostname")

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self.helo = ""
        self._buffer = bytearray()
        self._commands = 0

    def greeting(self) -> bytes:
        return f"220 {self.hostname} ESMTP\r\n".encode()

    def feed(self, data: bytes) -> Step:
        self._buffer += data
        answer = bytearray()
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) >= MAX_LINE:
                    return Step(bytes(answer) + b"500 5.5.2 Line too long\r\n",
                                close="command line too long")
                return Step(bytes(answer))
            line = bytes(self._buffer[:end + 1])
            del self._buffer[:end + 1]
            if len(line) > MAX_LINE:
                return Step(bytes(answer) + b"500 5.5.2 Line too long\r\n",
                            close="command line too long")
            self._commands += 1
            if self._commands > MAX_COMMANDS:
                return Step(bytes(answer) + b"421 4.7.0 Too many commands before STARTTLS\r\n",
                            close="too many commands before STARTTLS")
            verb, _, argument = line.strip().decode("latin-1").partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self.helo = argument.strip() or self.helo
                answer += f"250-{self.hostname}\r\n250 STARTTLS\r\n".encode()
            elif verb == "HELO":
                self.helo = argument.strip() or self.helo
                answer += f"250 {self.hostname}\r\n".encode()
            elif verb == "STARTTLS":
                if not self.helo:
                    answer += b"503 5.5.1 EHLO first\r\n"
                    continue
                answer += b"220 2.0.0 Ready to start TLS\r\n"
                return Step(bytes(answer), starttls=True, rest=bytes(self._buffer))
            elif verb in ("NOOP", "RSET"):
                answer += b"250 2.0.0 OK\r\n"
            elif verb == "QUIT":
                return Step(bytes(answer) + b"221 2.0.0 Bye\r\n", close="the client quit")
            else:
                answer += b"530 5.7.0 Must issue a STARTTLS command first\r\n"


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete server reply: its code and its lines' texts (after the code)."""

    code: int
    lines: tuple[str, ...]


def read_reply(buffer: bytes) -> tuple[Reply, int] | None:
    """The first complete reply in ``buffer`` and how many bytes it took, or None for more.

    ValueError when the bytes are not an SMTP reply.
    """
    lines: list[str] = []
    start = 0
    code = 0
    while True:
        end = buffer.find(b"\n", start)
        if end < 0:
            if len(buffer) - start > 4 * MAX_LINE:
                raise ValueError("reply line too long")
            return None
        line = buffer[start:end].rstrip(b"\r").decode("latin-1")
        start = end + 1
        if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3] not in " -"):
            raise ValueError(f"not an SMTP reply: {line[:40]!r}")
        if code and int(line[:3]) != code:
            raise ValueError("reply lines with different codes")
        code = int(line[:3])
        lines.append(line[4:])
        if len(line) == 3 or line[3] == " ":
            return Reply(code, tuple(lines)), start
