"""Budget units: parse, print back, refuse malformed input."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seernet.errors import UserError
from seernet.units import format_bytes, format_count, parse_budget, parse_budget_list


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("150M", "count", 150e6),
        ("1.2G", "count", 1.2e9),
        ("800K", "count", 800e3),
        ("1234", "count", 1234.0),
        ("2MB", "bytes", 2e6),
        ("500KB", "bytes", 5e5),
        ("3ms", "ms", 3.0),
        ("500us", "ms", 0.5),
    ],
)
def test_parse(text, kind, value):
    assert parse_budget(text, kind).value == pytest.approx(value)


def test_percent_is_a_fraction_of_the_unpruned_model():
    b = parse_budget("50%")
    assert b.fraction == 0.5 and b.resolve(31e6) == pytest.approx(15.5e6)


@given(st.floats(min_value=1.0, max_value=9.99e12, allow_nan=False))
def test_count_round_trip(x):
    assert parse_budget(format_count(x)).value == pytest.approx(x, rel=1e-3)


@given(st.floats(min_value=1.0, max_value=9.99e11, allow_nan=False))
def test_bytes_round_trip(x):
    assert parse_budget(format_bytes(x), "bytes").value == pytest.approx(x, rel=1e-3)


@pytest.mark.parametrize("text", ["150MB", "-1", "0", "abc", "", "5 apples", "0%", "2000%"])
def test_malformed_budgets(text):
    with pytest.raises(UserError):
        parse_budget(text, "count", "--flops")


def test_lists():
    assert [b.value for b in parse_budget_list("10M,15M,20M")] == [10e6, 15e6, 20e6]
    with pytest.raises(UserError):
        parse_budget_list(",")
