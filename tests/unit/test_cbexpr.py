"""The circuitBreaker expression parser: what Traefik accepts, what it refuses, how it evaluates."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchyard.http.middlewares.cbexpr import (
    And,
    Compare,
    Condition,
    ExpressionError,
    Metric,
    Or,
    parse,
)


@dataclass
class Measured:
    """Fixed metric values; remembers which were read."""

    network: float = 0.0
    codes: dict[tuple[int, int, int, int], float] = field(default_factory=dict)
    latency: dict[float, int] = field(default_factory=dict)
    read: list[str] = field(default_factory=list)

    def network_error_ratio(self) -> float:
        self.read.append("network")
        return self.network

    def response_code_ratio(self, start_a: int, end_a: int, start_b: int, end_b: int) -> float:
        self.read.append("codes")
        return self.codes.get((start_a, end_a, start_b, end_b), 0.0)

    def latency_at_quantile_ms(self, quantile: float) -> int:
        self.read.append("latency")
        return self.latency.get(quantile, 0)


@pytest.mark.parametrize(("text", "network", "expected"), [
    ("NetworkErrorRatio() > 0.5", 0.6, True),
    ("NetworkErrorRatio() > 0.5", 0.5, False),
    ("NetworkErrorRatio() >= 0.5", 0.5, True),
    ("NetworkErrorRatio() < .5", 0.4, True),
    ("NetworkErrorRatio() <= 1.", 1.0, True),
    ("NetworkErrorRatio() == 0.25", 0.25, True),
    ("NetworkErrorRatio() != 0.25", 0.25, False),
    ("NetworkErrorRatio() > 1e-3", 0.01, True),
    ("  ( NetworkErrorRatio()>0.5 )\t", 0.9, True),
])
def test_network_error_ratio_comparisons(text: str, network: float, expected: bool) -> None:
    assert parse(text).evaluate(Measured(network=network)) is expected


def test_response_code_ratio_takes_its_four_bounds_in_order() -> None:
    condition = parse("ResponseCodeRatio(500, 600, 0, 600) > 0.25")
    assert condition == Compare(Metric("ResponseCodeRatio", (500, 600, 0, 600)), ">", 0.25)
    assert condition.evaluate(Measured(codes={(500, 600, 0, 600): 0.3}))
    assert not condition.evaluate(Measured(codes={(500, 600, 0, 600): 0.2}))


def test_latency_is_whole_milliseconds_at_a_float_percentile() -> None:
    condition = parse("LatencyAtQuantileMS(50.0) > 100")
    assert condition == Compare(Metric("LatencyAtQuantileMS", (50.0,)), ">", 100)
    assert condition.evaluate(Measured(latency={50.0: 101}))
    assert not condition.evaluate(Measured(latency={50.0: 100}))


def test_and_binds_tighter_than_or() -> None:
    a, b, c = ("NetworkErrorRatio() > 0.1", "NetworkErrorRatio() > 0.2",
               "NetworkErrorRatio() > 0.3")
    assert parse(f"{a} || {b} && {c}") == Or(parse(a), And(parse(b), parse(c)))
    assert parse(f"{a} && {b} || {c}") == Or(And(parse(a), parse(b)), parse(c))
    assert parse(f"({a} || {b}) && {c}") == And(Or(parse(a), parse(b)), parse(c))


def test_and_and_or_read_only_what_decides() -> None:
    measured = Measured(network=0.9)
    parse("NetworkErrorRatio() > 0.5 || LatencyAtQuantileMS(99.0) > 10").evaluate(measured)
    assert measured.read == ["network"]
    measured = Measured(network=0.1)
    parse("NetworkErrorRatio() > 0.5 && LatencyAtQuantileMS(99.0) > 10").evaluate(measured)
    assert measured.read == ["network"]


@pytest.mark.parametrize(("text", "says"), [
    ("", "empty"),
    ("   ", "empty"),
    ("NetworkErrorRatio() > 1", "needs a float"),  # Traefik: expected int, got int
    ("LatencyAtQuantileMS(50.0) > 100.0", "needs an integer"),
    ("LatencyAtQuantileMS(50) > 100", "float percentile"),  # reflect: Call using int as float64
    ("ResponseCodeRatio(500.0, 600, 0, 600) > 0.5", "four integers"),
    ("ResponseCodeRatio(500, 600, 0) > 0.5", "got 3 argument"),
    ("NetworkErrorRatio(1) > 0.5", "takes no arguments"),
    ("0.5 < NetworkErrorRatio()", "put the metric first"),  # lt: unsupported argument: float64
    ("NetworkErrorRatio() > 0.5 &&", "end of the expression"),
    ("Foo() > 0.5", "unsupported function Foo"),
    ("NetworkErrorRatio()", "must be a condition"),  # expected predicate, got toFloat64
    ("!(NetworkErrorRatio() > 0.5)", "'!' operator is not supported"),
    ("NetworkErrorRatio() > -0.5", "'-' operator"),
    ("NetworkErrorRatio() + 0.1 > 0.5", "'+' operator is not supported"),
    ("NetworkErrorRatio() > 0.5 > 0.1", "left side of > must be a metric"),
    ("NetworkErrorRatio() && NetworkErrorRatio() > 0.5", "joins comparisons"),
    ("NetworkErrorRatio() > 0.5 || true", "true is not defined"),
    ("NetworkErrorRatio() > 0x1", "plain decimal digits"),
    ("NetworkErrorRatio() > 1_0.5", "plain decimal digits"),
    ("NetworkErrorRatio() > 1e999", "out of range"),
    ("LatencyAtQuantileMS(50.0) > 99999999999999999999", "out of range"),
    ('NetworkErrorRatio() > "0.5"', "string"),
    ("(NetworkErrorRatio() > 0.5", "expected ')'"),
    ("NetworkErrorRatio() > 0.5)", "unexpected ')'"),
    ("NetworkErrorRatio() > 0.5 # comment", "unexpected character"),
    ("LatencyAtQuantileMS(NetworkErrorRatio()) > 1", "got the metric"),
])
def test_refused_expressions_say_what_to_write(text: str, says: str) -> None:
    with pytest.raises(ExpressionError, match=None) as error:
        parse(text)
    assert says in str(error.value)


def test_errors_name_the_column() -> None:
    with pytest.raises(ExpressionError, match="^column 23:"):
        parse("NetworkErrorRatio() > 1")


# -- generated expressions ------------------------------------------------------------------

_floats = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
_codes = st.integers(min_value=0, max_value=999)
_metrics = st.one_of(
    st.just(Metric("NetworkErrorRatio")),
    st.tuples(_codes, _codes, _codes, _codes).map(lambda a: Metric("ResponseCodeRatio", a)),
    st.floats(min_value=0, max_value=100, allow_nan=False).map(
        lambda q: Metric("LatencyAtQuantileMS", (q,))),
)
_ops = st.sampled_from([">", ">=", "<", "<=", "==", "!="])


@st.composite
def _compares(draw: st.DrawFn) -> Compare:
    metric = draw(_metrics)
    literal: float = (draw(st.integers(min_value=0, max_value=10**6)) if metric.integral
                      else draw(_floats))
    return Compare(metric, draw(_ops), literal)


_conditions: st.SearchStrategy[Condition] = st.recursive(
    _compares(),
    lambda inner: st.one_of(st.builds(And, inner, inner), st.builds(Or, inner, inner)),
    max_leaves=8)


def _reference(condition: Condition, values: Measured) -> bool:
    """Evaluation by the tree's meaning, independent of the parser's classes' own code."""
    if isinstance(condition, And):
        return _reference(condition.left, values) and _reference(condition.right, values)
    if isinstance(condition, Or):
        return _reference(condition.left, values) or _reference(condition.right, values)
    metric = condition.metric
    if metric.name == "NetworkErrorRatio":
        value: float = values.network
    elif metric.name == "ResponseCodeRatio":
        a, b, c, d = (int(x) for x in metric.args)
        value = values.codes.get((a, b, c, d), 0.0)
    else:
        value = values.latency.get(float(metric.args[0]), 0)
    return {">": value > condition.literal, ">=": value >= condition.literal,
            "<": value < condition.literal, "<=": value <= condition.literal,
            "==": value == condition.literal, "!=": value != condition.literal}[condition.op]


@given(_conditions)
def test_printed_conditions_parse_back_to_the_same_tree(condition: Condition) -> None:
    assert parse(str(condition)) == condition


@given(_conditions, _floats, st.integers(min_value=0, max_value=10**6))
def test_evaluation_follows_the_tree(condition: Condition, network: float, latency: int) -> None:
    def every_metric(node: Condition) -> list[Metric]:
        if isinstance(node, Compare):
            return [node.metric]
        return every_metric(node.left) + every_metric(node.right)

    metrics = every_metric(condition)
    values = Measured(
        network=network,
        codes={tuple(int(x) for x in m.args): network / 2 for m in metrics  # type: ignore[misc]
               if m.name == "ResponseCodeRatio"},
        latency={float(m.args[0]): latency for m in metrics if m.integral})
    assert parse(str(condition)).evaluate(values) is _reference(condition, values)


@given(_conditions)
def test_redundant_parentheses_and_spaces_change_nothing(condition: Condition) -> None:
    text = str(condition)
    assert parse(f" ( {text} ) ") == condition
    assert parse(text.replace(" ", "")) == condition


@given(st.text(alphabet=st.sampled_from(list("NetworkErrorRatio()LatencyAtQuantileMS"
                                             "ResponseCodeRatio0123456789.,e<>=!&|+- \t\"_x")),
               max_size=60))
def test_any_text_parses_or_is_refused_with_an_expression_error(text: str) -> None:
    try:
        condition = parse(text)
    except ExpressionError:
        return
    assert parse(str(condition)) == condition


@given(st.text(max_size=40))
def test_arbitrary_unicode_never_crashes_the_parser(text: str) -> None:
    try:
        parse(text)
    except ExpressionError:
        pass
