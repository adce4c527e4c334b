"""Binary operations mod p written in a sweep file (`[task] name = "modular_expression"`), evaluated exactly.

"x**2 + x*y + y**2" or "x * y**(p-2)" is parsed by Python's parser and walked by an explicit
whitelist, as every string of a sweep file is (`grokjax.config.expressions`): the names x, y and p,
integer literals, + - * ** // %, parentheses, comparisons and and/or/not. Nothing else is looked
up, imported or called.

Values are Python integers (numpy object arrays), so nothing overflows. Where a value only feeds
+, - and * up to the final "mod p", it is reduced mod p as it is computed, and a power there is
`pow(a, b, p)`: x * y**(p - 2) at p = 97 never builds y**95. Inside //, % and comparisons, and
in exponents, values are exact integers, as the expression says.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Mapping
from typing import Any

import numpy as np

from grokjax.config.expressions import ExpressionError, parse, shown

GRAMMAR = ("the names x, y and p, integer literals, + - * ** // %, parentheses, comparisons == != < <= > >= "
           "and and/or/not (no '/': modular division is x * y**(p-2) with valid = \"y != 0\")")
MAX_EXACT_BITS = 1 << 16  # an exact power larger than this is refused, not computed

_RING = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}
_EXACT = {ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
_SYMBOLS = {ast.Div: "/", ast.MatMult: "@", ast.BitXor: "^", ast.BitAnd: "&", ast.BitOr: "|", ast.LShift: "<<",
            ast.RShift: ">>"}


class ModularExpressionError(ExpressionError):
    """An expression outside `GRAMMAR`, or one that cannot be evaluated (a division by zero)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        ValueError.__init__(self, f"{reason}; allowed: {GRAMMAR}")


def labels(text: str, x: np.ndarray, y: np.ndarray, p: int) -> np.ndarray:
    """The value of `text` mod p at each pair (x[i], y[i]), as int64 in [0, p)."""
    value = _evaluate(text, x, y, p, reduce=True)
    if _is_bool(value):
        raise ModularExpressionError("it gives true/false, not a number (a comparison belongs in 'valid')")
    return np.asarray(np.broadcast_to(value, np.shape(x)) % p, dtype=object).astype(np.int64)


def condition(text: str, x: np.ndarray, y: np.ndarray, p: int) -> np.ndarray:
    """Where `text`, a condition on x, y and p, holds: a bool array."""
    value = _evaluate(text, x, y, p, reduce=False)
    if not _is_bool(value):
        raise ModularExpressionError("it gives numbers, not true/false (a condition such as y != 0)")
    return np.broadcast_to(np.asarray(value, dtype=bool), np.shape(x)).copy()


def check(text: str) -> None:
    """Refuse `text` unless it is in the grammar (no values needed)."""
    try:
        tree = parse(text)
    except ExpressionError as err:
        raise ModularExpressionError(err.reason) from None
    _check(tree.body)


def _evaluate(text: str, x: np.ndarray, y: np.ndarray, p: int, reduce: bool) -> Any:
    check(text)
    names = {"x": _exact(x), "y": _exact(y), "p": p}
    return _eval(parse(text).body, names, p, reduce)


def _exact(values: np.ndarray) -> np.ndarray:
    return np.array([int(v) for v in np.ravel(values)], dtype=object).reshape(np.shape(values))


def _check(node: ast.AST) -> None:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int):
            raise ModularExpressionError(f"the constant {shown(repr(node.value), 40)} is not an integer")
    elif isinstance(node, ast.Name):
        if node.id not in ("x", "y", "p"):
            raise ModularExpressionError(f"unknown name '{shown(node.id, 40)}'; the names are x, y and p")
    elif isinstance(node, ast.BinOp):
        if type(node.op) in _SYMBOLS:
            raise ModularExpressionError(f"the operator '{_SYMBOLS[type(node.op)]}' is not allowed")
        _check(node.left)
        _check(node.right)
    elif isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Invert):
            raise ModularExpressionError("the operator '~' is not allowed")
        _check(node.operand)
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value)
    elif isinstance(node, ast.Compare):
        if any(type(op) not in _COMPARE for op in node.ops):
            raise ModularExpressionError("'in' and 'is' are not allowed; compare with == != < <= > >=")
        for operand in (node.left, *node.comparators):
            _check(operand)
    else:
        raise ModularExpressionError(f"{type(node).__name__.lower()} is not allowed")


def _eval(node: ast.AST, names: Mapping[str, Any], p: int, reduce: bool) -> Any:
    """The value of a checked tree; `reduce`: only +, - and * lie between this node and the final mod p."""
    if isinstance(node, ast.Constant):
        return node.value % p if reduce else node.value
    if isinstance(node, ast.Name):
        value = names[node.id]
        return value % p if reduce else value
    if isinstance(node, ast.BinOp):
        if type(node.op) in _RING:
            out = _RING[type(node.op)](_number(_eval(node.left, names, p, reduce)),
                                       _number(_eval(node.right, names, p, reduce)))
            return out % p if reduce else out
        if isinstance(node.op, ast.Pow):
            return _power(_number(_eval(node.left, names, p, reduce)), _number(_eval(node.right, names, p, False)),
                          p, reduce)
        left, right = _number(_eval(node.left, names, p, False)), _number(_eval(node.right, names, p, False))
        if np.any(np.asarray(right == 0, dtype=bool)):
            raise ModularExpressionError("it divides by zero at some pair (leave such pairs out with valid, "
                                         "e.g. valid = \"y != 0\")")
        out = _EXACT[type(node.op)](left, right)
        return out % p if reduce else out
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Not):
            return np.logical_not(_bool(_eval(node.operand, names, p, False)))
        value = _number(_eval(node.operand, names, p, reduce))
        out = -value if isinstance(node.op, ast.USub) else value
        return out % p if reduce else out
    if isinstance(node, ast.BoolOp):
        values = [_bool(_eval(v, names, p, False)) for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        out = values[0]
        for value in values[1:]:
            out = combine(out, value)
        return out
    operands = [_number(_eval(o, names, p, False)) for o in (node.left, *node.comparators)]  # type: ignore[attr-defined]
    out = True
    for op, left, right in zip(node.ops, operands, operands[1:]):  # type: ignore[attr-defined]
        out = np.logical_and(out, np.asarray(_COMPARE[type(op)](left, right), dtype=bool))
    return out


def _power(base: Any, exponent: Any, p: int, reduce: bool) -> Any:
    if np.any(np.asarray(exponent < 0, dtype=bool)):
        raise ModularExpressionError("a negative exponent is not allowed (an inverse mod p is y**(p-2))")
    if reduce:
        return np.frompyfunc(pow, 3, 1)(base, exponent, p)
    bits = int(np.max(np.frompyfunc(lambda b, e: abs(int(b)).bit_length() * int(e), 2, 1)(base, exponent)))
    if bits > MAX_EXACT_BITS:
        raise ModularExpressionError(f"a power inside //, % or a comparison reaches {bits} bits; at most "
                                     f"{MAX_EXACT_BITS} are computed exactly")
    return base**exponent


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_)) or (isinstance(value, np.ndarray) and value.dtype == bool)


def _number(value: Any) -> Any:
    if _is_bool(value):
        raise ModularExpressionError("arithmetic on true/false is not allowed")
    return value


def _bool(value: Any) -> Any:
    if not _is_bool(value):
        raise ModularExpressionError("and/or/not need true/false values (comparisons)")
    return value
