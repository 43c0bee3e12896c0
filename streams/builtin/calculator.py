"""A safe arithmetic evaluator: a small recursive-descent parser, no ``eval``.

Grammar::

    expr   := term (('+' | '-') term)*
    term   := factor (('*' | '/' | '//' | '%') factor)*
    factor := ('+' | '-') factor | power
    power  := atom ('**' factor)?
    atom   := NUMBER | '(' expr ')'

Integers stay exact; ``/`` gives a float unless the division is exact. Sizes are bounded so
that no input can take long: the expression's length, exponents, and result digits.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "MAX_BITS",
    "MAX_DIGITS",
    "MAX_EXPONENT",
    "MAX_LENGTH",
    "MAX_NESTING",
    "CalculatorError",
    "evaluate",
]

MAX_LENGTH = 500
MAX_EXPONENT = 10_000
MAX_DIGITS = 4_000
MAX_BITS = int(MAX_DIGITS * 3.33)
MAX_NESTING = 50

_TOKEN = re.compile(
    r"\s*(?:(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|(\*\*|//|[-+*/%()]))"
)

Number = int | float


class CalculatorError(ValueError):
    pass


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise CalculatorError(f"unexpected character {text[position:].lstrip()[:1]!r}")
        tokens.append(match.group(1) or match.group(2))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise CalculatorError(f"expression nested deeper than {MAX_NESTING} levels")

    def peek(self) -> str | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise CalculatorError("unexpected end of expression")
        self.index += 1
        return token

    def expr(self) -> Number:
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            right = self.term()
            value = value + right if op == "+" else value - right
            _check(value)
        return value

    def term(self) -> Number:
        value = self.factor()
        while self.peek() in ("*", "/", "//", "%"):
            op = self.take()
            right = self.factor()
            if op == "*":
                value = value * right
            elif right == 0:
                raise CalculatorError("division by zero")
            elif op == "/":
                if isinstance(value, int) and isinstance(right, int) and value % right == 0:
                    value = value // right
                else:
                    value = value / right
            elif op == "//":
                value = value // right
            else:
                value = value % right
            _check(value)
        return value

    def factor(self) -> Number:
        if self.peek() in ("+", "-"):
            op = self.take()
            self.nest()
            value = self.factor()
            self.depth -= 1
            return -value if op == "-" else value
        return self.power()

    def power(self) -> Number:
        base = self.atom()
        if self.peek() == "**":
            self.take()
            exponent = self.factor()
            if abs(exponent) > MAX_EXPONENT:
                raise CalculatorError(f"exponent larger than {MAX_EXPONENT}")
            if (
                isinstance(base, int)
                and isinstance(exponent, int)
                and (base.bit_length() - 1) * exponent > MAX_BITS
            ):
                raise CalculatorError("result too large")
            if base == 0 and exponent < 0:
                raise CalculatorError("division by zero")
            try:
                result: Number = base**exponent
            except OverflowError:
                raise CalculatorError("result too large") from None
            if isinstance(result, complex):
                raise CalculatorError("result is not a real number")
            _check(result)
            return result
        return base

    def atom(self) -> Number:
        token = self.take()
        if token == "(":
            self.nest()
            value = self.expr()
            self.depth -= 1
            if self.take() != ")":
                raise CalculatorError("expected ')'")
            return value
        if token[0].isdigit() or token[0] == ".":
            if any(c in token for c in ".eE"):
                number = float(token)
                _check(number)
                return number
            return int(token)
        raise CalculatorError(f"unexpected {token!r}")


def _check(value: Number) -> None:
    if isinstance(value, int) and value.bit_length() > MAX_BITS:
        raise CalculatorError("result too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("result too large" if value == value else "result is not a number")


def evaluate(expression: str) -> Number:
    """Evaluate ``expression``; raise :class:`CalculatorError` with a readable reason."""
    if len(expression) > MAX_LENGTH:
        raise CalculatorError(f"expression longer than {MAX_LENGTH} characters")
    tokens = _tokenize(expression)
    if not tokens:
        raise CalculatorError("empty expression")
    parser = _Parser(tokens)
    try:
        value = parser.expr()
    except OverflowError:  # a huge integer met a float
        raise CalculatorError("result too large") from None
    if parser.peek() is not None:
        raise CalculatorError(f"unexpected {parser.peek()!r}")
    return value
