"""Traefik duration parsing: whole seconds, or Go's time.ParseDuration exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from switchyard.config.durations import Duration, parse_duration

NS = 1
US = 1_000
MS = 1_000_000
S = 1_000_000_000
MIN = 60 * S
H = 60 * MIN

# Go's own table (src/time/time_test.go, parseDurationTests), in nanoseconds.
GO_VALID = [
    ("0", 0),
    ("5s", 5 * S),
    ("30s", 30 * S),
    ("1478s", 1478 * S),
    ("-5s", -5 * S),
    ("+5s", 5 * S),
    ("-0", 0),
    ("+0", 0),
    ("5.0s", 5 * S),
    ("5.6s", 5 * S + 600 * MS),
    ("5.s", 5 * S),
    (".5s", 500 * MS),
    ("1.0s", S),
    ("1.00s", S),
    ("1.004s", S + 4 * MS),
    ("1.0040s", S + 4 * MS),
    ("100.00100s", 100 * S + MS),
    ("10ns", 10 * NS),
    ("11us", 11 * US),
    ("12µs", 12 * US),
    ("12μs", 12 * US),
    ("13ms", 13 * MS),
    ("14s", 14 * S),
    ("15m", 15 * MIN),
    ("16h", 16 * H),
    ("3h30m", 3 * H + 30 * MIN),
    ("10.5s4m", 4 * MIN + 10 * S + 500 * MS),
    ("-2m3.4s", -(2 * MIN + 3 * S + 400 * MS)),
    ("1h2m3s4ms5us6ns", H + 2 * MIN + 3 * S + 4 * MS + 5 * US + 6 * NS),
    ("39h9m14.425s", 39 * H + 9 * MIN + 14 * S + 425 * MS),
    ("52763797000ns", 52763797000),
    ("0.3333333333333333333h", 20 * MIN),
    ("9007199254740993ns", (1 << 53) + 1),
    ("9223372036854775807ns", (1 << 63) - 1),
    ("9223372036854775.807us", (1 << 63) - 1),
    ("9223372036s854ms775us807ns", (1 << 63) - 1),
    ("-9223372036854775808ns", -(1 << 63)),
    ("-9223372036854775.808us", -(1 << 63)),
    ("-9223372036s854ms775us808ns", -(1 << 63)),
    ("-2562047h47m16.854775808s", -(1 << 63)),
    ("0.100000000000000000000h", 6 * MIN),
    ("0.830103483285477580700h", 49 * MIN + 48 * S + 372539827),
]


@pytest.mark.parametrize(("text", "nanoseconds"), GO_VALID)
def test_go_duration_strings_parse_exactly_as_go(text: str, nanoseconds: int) -> None:
    assert parse_duration(text) == nanoseconds / S


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (10, 10.0),
        (0, 0.0),
        (-1, -1.0),
        ("10", 10.0),
        ("+3", 3.0),
        ("-3", -3.0),
        ("007", 7.0),
        (10.0, 10.0),
        (1.5, 1.5),  # Traefik refuses this; we accept it so dumped models re-validate
        ("100ms", 0.1),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("300us", 0.0003),
        ("-1s", -1.0),
    ],
)
def test_numbers_without_unit_are_whole_seconds_as_in_traefik(
    value: str | float, seconds: float
) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "",
        "-",
        "s",
        ".",
        "-.",
        ".s",
        "+.s",
        "1d",
        "3x",
        "\x85\x85",
        "hello \xffff world",
        "1.5",
        " 10",
        "10 ",
        "1_0",
        "10 s",
        "١٠s",  # Arabic-Indic digits: Go accepts ASCII digits only
        "9223372036854775808ns",
        "9223372036854775.808us",
        "9223372036854ms775us808ns",
        "-9223372036854775809ns",
        "9223372037",
        9223372037,
        9223372037.0,
        float("nan"),
        float("inf"),
        True,
        None,
        [],
    ],
)
def test_anything_else_is_rejected_with_value_error(value: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(value)  # type: ignore[arg-type]


def test_missing_unit_message_lists_the_units() -> None:
    with pytest.raises(ValueError, match=r'"2\.5": missing unit \(ns, us, ms, s, m or h\)'):
        parse_duration("2.5")


def test_unknown_unit_message_names_the_unit() -> None:
    with pytest.raises(ValueError, match='unknown unit "d"'):
        parse_duration("1d")


@given(
    hours=st.integers(0, 10_000),
    minutes=st.integers(0, 59),
    seconds=st.integers(0, 59),
    milliseconds=st.integers(0, 999),
    present=st.lists(st.booleans(), min_size=4, max_size=4).filter(any),
)
def test_combinations_of_units_add_up(
    hours: int, minutes: int, seconds: int, milliseconds: int, present: list[bool]
) -> None:
    parts = [(hours, "h", H), (minutes, "m", MIN), (seconds, "s", S), (milliseconds, "ms", MS)]
    chosen = [part for part, keep in zip(parts, present, strict=True) if keep]
    text = "".join(f"{amount}{unit}" for amount, unit, _ in chosen)
    assert parse_duration(text) == sum(amount * scale for amount, _, scale in chosen) / S


def _go_format(nanoseconds: int) -> str:
    """Go's time.Duration.String(), the form Traefik prints durations in."""

    def fraction(value: int, digits: int) -> str:
        text = str(value).rjust(digits, "0").rstrip("0")
        return f".{text}" if text else ""

    if nanoseconds == 0:
        return "0s"
    sign, magnitude = ("-" if nanoseconds < 0 else ""), abs(nanoseconds)
    if magnitude < S:
        digits, unit = (0, "ns") if magnitude < US else (3, "µs") if magnitude < MS else (6, "ms")
        whole, rest = divmod(magnitude, 10**digits)
        return f"{sign}{whole}{fraction(rest, digits)}{unit}"
    whole_seconds, rest = divmod(magnitude, S)
    text = f"{whole_seconds % 60}{fraction(rest, 9)}s"
    minutes = whole_seconds // 60
    if minutes:
        text = f"{minutes % 60}m{text}"
        if minutes // 60:
            text = f"{minutes // 60}h{text}"
    return sign + text


@given(st.integers(-(1 << 63), (1 << 63) - 1))
def test_go_formatted_durations_round_trip(nanoseconds: int) -> None:
    assert parse_duration(_go_format(nanoseconds)) == nanoseconds / S


def test_go_format_helper_matches_known_go_output() -> None:
    assert _go_format(90 * S + 500 * MS) == "1m30.5s"
    assert _go_format(-(1 << 63)) == "-2562047h47m16.854775808s"
    assert _go_format(1_500) == "1.5µs"


class _Timeouts(BaseModel):
    dial: Duration = 30.0


@pytest.mark.parametrize(("raw", "seconds"), [("100ms", 0.1), (5, 5.0), ("5", 5.0)])
def test_duration_field_stores_float_seconds(raw: object, seconds: float) -> None:
    assert _Timeouts.model_validate({"dial": raw}).dial == seconds


def test_duration_field_rejects_garbage_with_the_parser_message() -> None:
    with pytest.raises(ValidationError, match='invalid duration "soon"'):
        _Timeouts.model_validate({"dial": "soon"})
