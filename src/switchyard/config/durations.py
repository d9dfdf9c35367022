"""Traefik durations: a bare integer is seconds, anything else is a Go duration string."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

__all__ = ["Duration", "go_duration", "parse_duration"]

_NS_PER_SECOND = 1_000_000_000
_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu; Go accepts both spellings
    "ms": 1_000_000,
    "s": _NS_PER_SECOND,
    "m": 60 * _NS_PER_SECOND,
    "h": 3600 * _NS_PER_SECOND,
}
# Go durations are int64 nanoseconds; the parser works on the magnitude as uint64.
_MAX_MAGNITUDE = 1 << 63
_INT64_MAX = _MAX_MAGNITUDE - 1
# strconv.ParseInt(s, 10, 64): optional sign, ASCII digits only (no spaces, no underscores).
_GO_INT = re.compile(r"[+-]?[0-9]+")
_HINT = 'expected whole seconds (e.g. 10) or a Go duration such as "30s", "1m30s", "100ms"'


def parse_duration(value: str | float) -> float:
    """Return ``value`` in seconds, following Traefik's duration rules.

    Traefik's configuration decoder first tries the value as a base-10 integer
    (seconds), then as Go's ``time.ParseDuration``. A float is taken as seconds
    too: Traefik rejects a fractional number without a unit, but our own models
    store float seconds and must survive a dump and re-validation.
    """
    if isinstance(value, str):
        if _GO_INT.fullmatch(value):
            return _whole_seconds(int(value), _show(value))
        return _parse_go_duration(value) / _NS_PER_SECOND
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) * _NS_PER_SECOND > _INT64_MAX:
            raise ValueError(f"invalid duration {value!r}: out of range")
        return value
    # bool is an int subclass, but Traefik would reject "true" as a duration.
    if isinstance(value, int) and not isinstance(value, bool):
        return _whole_seconds(value, str(value))
    raise ValueError(f"invalid duration {_show(value)}: {_HINT}")


def _whole_seconds(seconds: int, shown: str) -> float:
    # Go multiplies by time.Second and silently wraps on overflow; refusing is kinder.
    if abs(seconds) * _NS_PER_SECOND > _INT64_MAX:
        raise ValueError(f"invalid duration {shown}: out of range (at most about 292 years)")
    return float(seconds)


def _parse_go_duration(text: str) -> int:
    """Go's ``time.ParseDuration``, returning nanoseconds; same grammar, limits and rounding."""
    s = text
    negative = False
    if s[:1] in ("-", "+"):
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {_show(text)}: {_HINT}")
    total = 0
    while s:
        if not (s[0] == "." or s[0].isascii() and s[0].isdigit()):
            raise ValueError(f"invalid duration {_show(text)}: {_HINT}")
        whole, rest = _leading_int(s, text)
        has_whole = len(rest) != len(s)
        s = rest
        fraction, scale, has_fraction = 0, 1.0, False
        if s.startswith("."):
            fraction, scale, rest = _leading_fraction(s[1:])
            has_fraction = len(rest) != len(s) - 1
            s = rest
        if not has_whole and not has_fraction:
            raise ValueError(f"invalid duration {_show(text)}: {_HINT}")
        end = 0
        while end < len(s) and not (s[end] == "." or s[end].isascii() and s[end].isdigit()):
            end += 1
        if end == 0:
            raise ValueError(
                f"invalid duration {_show(text)}: missing unit (ns, us, ms, s, m or h)"
            )
        unit_name, s = s[:end], s[end:]
        unit = _UNITS_NS.get(unit_name)
        if unit is None:
            raise ValueError(
                f"invalid duration {_show(text)}: unknown unit {_show(unit_name)}"
                " (use ns, us, ms, s, m or h)"
            )
        if whole > _MAX_MAGNITUDE // unit:
            raise _out_of_range(text)
        whole *= unit
        if fraction > 0:
            # Go computes the fractional part in float64 and truncates; keep that rounding.
            whole += int(float(fraction) * (float(unit) / scale))
            if whole > _MAX_MAGNITUDE:
                raise _out_of_range(text)
        total += whole
        if total > _MAX_MAGNITUDE:
            raise _out_of_range(text)
    if negative:
        return -total
    if total > _INT64_MAX:
        raise _out_of_range(text)
    return total


def _leading_int(s: str, text: str) -> tuple[int, str]:
    value = 0
    index = 0
    while index < len(s) and s[index].isascii() and s[index].isdigit():
        if value > _MAX_MAGNITUDE // 10:
            raise _out_of_range(text)
        value = value * 10 + int(s[index])
        if value > _MAX_MAGNITUDE:
            raise _out_of_range(text)
        index += 1
    return value, s[index:]


def _leading_fraction(s: str) -> tuple[int, float, str]:
    # Digits beyond int64 precision are consumed but ignored, exactly as Go does.
    value, scale, index, overflow = 0, 1.0, 0, False
    while index < len(s) and s[index].isascii() and s[index].isdigit():
        if not overflow:
            if value > _INT64_MAX // 10:
                overflow = True
            else:
                candidate = value * 10 + int(s[index])
                if candidate > _MAX_MAGNITUDE:
                    overflow = True
                else:
                    value = candidate
                    scale *= 10
        index += 1
    return value, scale, s[index:]


def _out_of_range(text: str) -> ValueError:
    return ValueError(f"invalid duration {_show(text)}: out of range (at most about 292 years)")


def _show(value: object) -> str:
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String(): "100ms", "30s", "1m30s", "1h0m0s"."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign, ns = ("-" if ns < 0 else ""), abs(ns)
    if ns < _NS_PER_SECOND:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _decimal(ns, size) + unit
    hours, rest = divmod(ns, 3600 * _NS_PER_SECOND)
    minutes, rest = divmod(rest, 60 * _NS_PER_SECOND)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return sign + text + _decimal(rest, _NS_PER_SECOND) + "s"


def _decimal(value: int, unit: int) -> str:
    whole, fraction = divmod(value, unit)
    if not fraction:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{str(fraction).rjust(digits, '0').rstrip('0')}"


def _validate_duration(value: Any) -> float:
    return parse_duration(value)


#: A duration field: accepts Traefik's duration inputs, stores float seconds.
Duration = Annotated[float, BeforeValidator(_validate_duration)]
