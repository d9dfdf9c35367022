"""The SMTP STARTTLS dialogue and reply reader, and the preamble that runs them, fed bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchyard.observability.record import CloseReason
from switchyard.proxy import preamble as pre
from switchyard.proxy.smtp import MAX_LINE, ClientDialogue, read_reply
from tests.unit.test_clienthello import python_hello


def test_the_client_is_greeted_answered_and_let_into_tls() -> None:
    dialogue = ClientDialogue("mx.example")
    assert dialogue.greeting() == b"220 mx.example ESMTP\r\n"
    step = dialogue.feed(b"EHLO client.example\r\nMAIL FROM:<a@b>\r\n")
    assert step.answer == (b"250-mx.example\r\n250 STARTTLS\r\n"
                           b"530 5.7.0 Must issue a STARTTLS command first\r\n")
    assert not step.starttls
    step = dialogue.feed(b"starttls\r\n")
    assert step.starttls and step.answer == b"220 2.0.0 Ready to start TLS\r\n"
    assert dialogue.helo == "client.example"


def test_starttls_before_ehlo_quit_and_long_lines() -> None:
    dialogue = ClientDialogue("mx")
    assert dialogue.feed(b"STARTTLS\r\n").answer.startswith(b"503")
    assert dialogue.feed(b"QUIT\r\n").close == "the client quit"
    assert ClientDialogue("mx").feed(b"X" * MAX_LINE).close == "command line too long"


def test_a_dialogue_that_never_gets_to_starttls_is_cut_short() -> None:
    dialogue = ClientDialogue("mx")
    step = dialogue.feed(b"NOOP\r\n" * 30)
    assert step.close and step.answer.endswith(b"421 4.7.0 Too many commands before STARTTLS\r\n")


@given(cut=st.integers(1, 40))
def test_commands_split_anywhere_give_the_same_answers(cut: int) -> None:
    whole = b"EHLO c\r\nNOOP\r\nSTARTTLS\r\n"
    dialogue = ClientDialogue("mx")
    answers = dialogue.feed(whole[:cut]).answer + dialogue.feed(whole[cut:]).answer
    assert answers == ClientDialogue("mx").feed(b"EHLO c\r\nNOOP\r\n").answer + (
        b"220 2.0.0 Ready to start TLS\r\n")


def test_replies_are_read_whole_multi_line_included() -> None:
    assert read_reply(b"250-mx\r\n250-PIPELINING\r") is None
    found = read_reply(b"250-mx\r\n250 STARTTLS\r\n220 next")
    assert found is not None
    reply, used = found
    assert (reply.code, reply.lines, used) == (250, ("mx", "STARTTLS"), 22)
    with pytest.raises(ValueError):
        read_reply(b"hello there\r\n")


def test_the_preamble_greets_answers_then_peeks_the_hello_after_starttls() -> None:
    preamble = pre.Preamble(("10.0.0.1", 4000), None, ClientDialogue("mx"))
    first = preamble.feed(b"")
    assert first == pre.Reply(b"220 mx ESMTP\r\n")
    assert preamble.feed(b"") is pre.NEED_MORE
    answer = preamble.feed(b"EHLO c\r\nSTARTTLS\r\n")
    assert isinstance(answer, pre.Reply) and answer.data.endswith(b"220 2.0.0 Ready to start TLS\r\n")
    assert preamble.feed(b"") is pre.NEED_MORE
    hello = python_hello("mx.example", ())
    peeked = preamble.feed(hello)
    assert isinstance(peeked, pre.Peeked) and peeked.smtp and peeked.meta.sni == "mx.example"
    assert peeked.data == hello  # only the hello reaches the backend: the dialogue was ours
    assert preamble.smtp_helo == "c"


def test_plain_bytes_after_starttls_are_refused() -> None:
    preamble = pre.Preamble(("10.0.0.1", 4000), None, ClientDialogue("mx"))
    preamble.feed(b"EHLO c\r\nSTARTTLS\r\n")
    refused = preamble.feed(b"EHLO again\r\n")
    assert isinstance(refused, pre.Refused) and refused.reason is CloseReason.MALFORMED


def test_quit_answers_then_closes() -> None:
    preamble = pre.Preamble(("10.0.0.1", 4000), None, ClientDialogue("mx"))
    preamble.feed(b"")
    assert preamble.feed(b"QUIT\r\n") == pre.Reply(b"221 2.0.0 Bye\r\n")
    refused = preamble.feed(b"")
    assert isinstance(refused, pre.Refused) and refused.reason is CloseReason.CLIENT_CLOSED
