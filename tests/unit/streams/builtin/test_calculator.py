"""Specification of the safe arithmetic evaluator (``streams/calculator.py``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.builtin.calculator import MAX_LENGTH, CalculatorError, evaluate


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        pytest.param("42", 42, id="integer"),
        pytest.param("  42  ", 42, id="surrounding-space"),
        pytest.param("1 + 2 * 3", 7, id="mul-before-add"),
        pytest.param("(1 + 2) * 3", 9, id="parentheses"),
        pytest.param("2 - 3 - 4", -5, id="sub-left-assoc"),
        pytest.param("64 / 4 / 2", 8, id="div-left-assoc"),
        pytest.param("2 ** 3 ** 2", 512, id="pow-right-assoc"),
        pytest.param("2 * 3 ** 2", 18, id="pow-before-mul"),
        pytest.param("-3", -3, id="unary-minus"),
        pytest.param("+3", 3, id="unary-plus"),
        pytest.param("--3", 3, id="double-minus"),
        pytest.param("-+-3", 3, id="mixed-signs"),
        pytest.param("2 * -3", -6, id="unary-after-binary"),
        pytest.param("-2 ** 2", -4, id="unary-minus-below-pow"),
        pytest.param("(-2) ** 2", 4, id="parenthesised-negative-base"),
        pytest.param("2 ** -1", 0.5, id="negative-exponent"),
        pytest.param("2 ** -2 ** 2", 0.0625, id="signed-exponent-right-assoc"),
        pytest.param("6 / 3", 2, id="exact-division-stays-int"),
        pytest.param("7 / 2", 3.5, id="inexact-division-is-float"),
        pytest.param("-6 / 4", -1.5, id="negative-inexact-division"),
        pytest.param("7 // 2", 3, id="floor-division"),
        pytest.param("-7 // 2", -4, id="floor-division-rounds-down"),
        pytest.param("7.5 // 2", 3.0, id="float-floor-division"),
        pytest.param("7 % 3", 1, id="modulo"),
        pytest.param("-7 % 3", 2, id="modulo-sign-of-divisor"),
        pytest.param("7.5 % 2", 1.5, id="float-modulo"),
        pytest.param("1.5 * 2", 3.0, id="float-times-int"),
        pytest.param("3.", 3.0, id="trailing-dot"),
        pytest.param(".5 + .25", 0.75, id="leading-dot"),
        pytest.param("1e3", 1000.0, id="exponent-notation"),
        pytest.param("2.5E-1", 0.25, id="negative-exponent-notation"),
        pytest.param("1e+2", 100.0, id="signed-exponent-notation"),
        pytest.param("100 - 2 ** 3 * 4 / 2", 84, id="mixed-stays-int"),
        pytest.param("((((7))))", 7, id="nested-parentheses"),
        pytest.param("4 ** 0.5", 2.0, id="fractional-exponent"),
        pytest.param("10 ** 100", 10**100, id="big-int-exact"),
        pytest.param("2**6000 // 2**5999", 2, id="big-ints-stay-exact"),
        pytest.param("1\t+\n2", 3, id="any-whitespace"),
    ],
)
def test_evaluate_computes(expression: str, expected: int | float) -> None:
    result = evaluate(expression)

    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        pytest.param("1 / 0", "division by zero", id="div"),
        pytest.param("1 // 0", "division by zero", id="floordiv"),
        pytest.param("1 % 0", "division by zero", id="mod"),
        pytest.param("1 / 0.0", "division by zero", id="div-float-zero"),
        pytest.param("1 / (2 - 2)", "division by zero", id="div-computed-zero"),
        pytest.param("0 ** -1", "division by zero", id="zero-to-negative"),
        pytest.param("0.0 ** -2", "division by zero", id="float-zero-to-negative"),
        pytest.param("2 ** 10001", "exponent larger than 10000", id="huge-exponent"),
        pytest.param("2 ** -10001", "exponent larger than 10000", id="huge-negative-exponent"),
        pytest.param("(9**10000)**10000", "result too large", id="nested-power"),
        pytest.param("9 ** 9999", "result too large", id="too-many-digits"),
        pytest.param("10.0 ** 400", "result too large", id="float-overflow"),
        pytest.param("(10**3000) * (10**3000)", "result too large", id="product-too-large"),
        pytest.param("(-8) ** (1/3)", "result is not a real number", id="complex"),
        pytest.param("1e999 - 1e999", "result too large", id="infinite-literal"),
        pytest.param("__import__('os')", "unexpected character '_'", id="python-code"),
        pytest.param("2 + x", "unexpected character 'x'", id="name"),
        pytest.param("2 ^ 3", "unexpected character '^'", id="caret"),
        pytest.param("1,5", "unexpected character ','", id="comma"),
        pytest.param("(1 + 2", "unexpected end of expression", id="unclosed-paren"),
        pytest.param("1 + 2)", "unexpected ')'", id="extra-close-paren"),
        pytest.param("()", "unexpected ')'", id="empty-parens"),
        pytest.param("(1 2)", "expected ')'", id="junk-before-close-paren"),
        pytest.param("1 +", "unexpected end of expression", id="dangling-operator"),
        pytest.param("* 2", "unexpected '*'", id="leading-operator"),
        pytest.param("2 3", "unexpected '3'", id="two-numbers"),
        pytest.param("", "empty expression", id="empty"),
        pytest.param("   \n\t", "empty expression", id="blank"),
        pytest.param("1" * (MAX_LENGTH + 1), "expression longer than 500 characters", id="long"),
    ],
)
def test_evaluate_rejects(expression: str, message: str) -> None:
    with pytest.raises(CalculatorError) as error:
        evaluate(expression)

    assert str(error.value) == message


def test_expression_of_max_length_is_accepted() -> None:
    assert evaluate("1" + " " * (MAX_LENGTH - 1)) == 1


def test_calculator_error_is_a_value_error() -> None:
    assert issubclass(CalculatorError, ValueError)


@pytest.mark.parametrize(
    "expression", ["10**400 * 1.0", "10**400 + 0.5", "0.5 - 10**400", "10**400 / 3"]
)
def test_big_int_mixed_with_float_is_a_calculator_error(expression: str) -> None:
    with pytest.raises(CalculatorError):
        evaluate(expression)


def test_deeply_nested_parentheses_within_max_length_do_not_crash() -> None:
    expression = "(" * 240 + "1" + ")" * 240
    assert len(expression) <= MAX_LENGTH

    try:
        result = evaluate(expression)
    except CalculatorError:
        return
    assert result == 1


# -- fuzz ---------------------------------------------------------------------------------


@given(st.text(max_size=MAX_LENGTH + 20))
@settings(max_examples=400, deadline=None)
def test_evaluate_on_any_text_returns_a_number_or_raises_calculator_error(text: str) -> None:
    try:
        result = evaluate(text)
    except CalculatorError:
        pass
    else:
        assert type(result) in (int, float)


# Every character the tokenizer accepts, floats and exponents included.
calculator_soup = st.text(alphabet="0123456789.eE+-*/%() ", max_size=60)


@given(calculator_soup)
@settings(max_examples=400, deadline=None)
def test_evaluate_on_calculator_characters_is_total(text: str) -> None:
    try:
        result = evaluate(text)
    except CalculatorError:
        pass
    else:
        assert type(result) in (int, float)


def integer_expressions() -> st.SearchStrategy[str]:
    leaves = st.integers(min_value=0, max_value=99).map(str)

    def combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binary = st.tuples(children, st.sampled_from(["+", "-", "*"]), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        )
        unary = st.tuples(st.sampled_from(["-", "+"]), children).map(lambda t: f"{t[0]}{t[1]}")
        return binary | unary

    return st.recursive(leaves, combine, max_leaves=20)


@given(integer_expressions())
@settings(max_examples=200, deadline=None)
def test_integer_arithmetic_agrees_with_python(expression: str) -> None:
    assert evaluate(expression) == eval(expression)
