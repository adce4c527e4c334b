"""The expressions of sweep files and of the command line, parsed and evaluated as data.

Sweep files are shared, and results folders carry theirs (sweep.toml): a string in one
(an `[[expect]]` entry's `where`, `than` or `metric`, or `grokjax prune --where`) must never
run code. pandas' `DataFrame.query` and `DataFrame.eval` reach Python objects through `@name`
and attributes; so every string grokjax evaluates goes through this module instead. Python's
parser only gives the tree; an explicit whitelist walks it (`GRAMMAR`), and numpy evaluates
it on the given arrays. Nothing else is looked up, imported or called. docs/expressions.md
has the grammar with examples.
"""

from __future__ import annotations

import ast
import difflib
import io
import operator
import tokenize
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np
import pandas as pd

MAX_LENGTH = 1000  # characters
MAX_DEPTH = 32  # levels of brackets, and of the parsed tree

FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "abs": np.abs,
    "sqrt": np.sqrt,
    "log": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "exp": np.exp,
    "floor": np.floor,
    "ceil": np.ceil,
    "isnan": np.isnan,  # text: missing values (None, NaN)
}

GRAMMAR = ("names (the columns), numbers, 'text', True/False, comparisons == != < <= > >= (chained: "
           "0.1 <= x < 0.5), and/or/not (or & | ~), + - * / // % **, parentheses, \"x in [a, b]\" lists of "
           "constants, and the functions " + ", ".join(FUNCTIONS))

_ARITHMETIC: dict[type, tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.FloorDiv: ("//", operator.floordiv),
    ast.Mod: ("%", operator.mod),
    ast.Pow: ("**", operator.pow),
}
_COMPARISONS: dict[type, tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
}
_REFUSED_OPERATORS = {ast.MatMult: "@", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>"}
_REFUSED_NODES = {
    ast.Attribute: "attribute access",
    ast.Subscript: "a subscript ('[...]' after a value)",
    ast.Lambda: "lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension",
    ast.Starred: "'*' unpacking",
    ast.JoinedStr: "an f-string",
    ast.FormattedValue: "an f-string",
    ast.IfExp: "'a if c else b'",
    ast.NamedExpr: "':='",
    ast.Dict: "a dict",
    ast.Set: "a set",
    ast.Slice: "a slice",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}


class ExpressionError(ValueError):
    """A string that is not an expression of the grammar, or not one on the given names.

    `reason` is what was refused, in a few words; the message adds what is allowed (`GRAMMAR`).
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}; allowed: {GRAMMAR}")


# --- public API ---------------------------------------------------------------------------------


def evaluate(text: str, names: Mapping[str, Any]) -> Any:
    """The value of `text`, an expression on `names` (name -> numpy array, pandas Series or scalar).

    Arrays combine element-wise, with numpy's broadcasting; the value is a numpy array, or a
    numpy scalar when no array takes part. Integer columns with missing values (pandas' Int64
    with NA) become float arrays with NaN, text columns object arrays with None for a missing
    value. A refused string, or an operation on values of the wrong kind (`'a' + 1`), raises
    ExpressionError; nothing of `text` is executed.
    """
    tree = _parse(text)
    _check(tree, names.keys(), 0)
    values: dict[str, Any] = {}

    def lookup(name: str) -> Any:
        if name not in values:
            values[name] = _array(names[name])
        return values[name]

    with np.errstate(all="ignore"):
        try:
            return _eval(tree.body, lookup)
        except ExpressionError:
            raise
        except (TypeError, ValueError, ArithmeticError) as err:  # numpy's, for values it cannot combine
            raise ExpressionError(f"cannot evaluate it: {_first_line(err)}") from None


def parse(text: str) -> ast.Expression:
    """Python's parse tree of `text`, within the length and nesting limits (nothing is checked or evaluated)."""
    return _parse(text)


def check(text: str, names: Collection[str]) -> None:
    """Raise ExpressionError unless `text` is an expression of the grammar on `names` (no data needed).

    What only data can tell (text where a number is needed, say) is left to `evaluate`.
    """
    _check(_parse(text), names, 0)


def select(frame: pd.DataFrame, text: str) -> pd.DataFrame:
    """The rows of `frame` where the boolean expression `text` on its columns holds; "" (or blanks): all rows.

    The expression must give one True/False per row (`weight_decay == 0 and data_fraction <= 0.4`);
    a number per row, or one value for all rows (`1 == 1`), is an ExpressionError, as in pandas' query.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"{_kind_of_type(text)} given where a string was expected")
    if not text.strip():
        return frame
    mask = evaluate(text, _columns(frame))
    if not isinstance(mask, np.ndarray) or mask.shape != (len(frame),):
        raise ExpressionError("it gives one value for all rows, not a true/false per row")
    if mask.dtype != bool:
        raise ExpressionError(f"it gives {_kind_name(mask)}, not a true/false per row (compare them: e.g. x > 0)")
    return frame.loc[mask]


def column(frame: pd.DataFrame, text: str) -> pd.Series:
    """The expression `text` on `frame`'s columns: one number (or True/False) per row, indexed as `frame`.

    One value for all rows (an expression of no column, such as `1 + 1`) is refused, as is text.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"{_kind_of_type(text)} given where a string was expected")
    value = evaluate(text, _columns(frame))
    if not isinstance(value, np.ndarray) or value.shape != (len(frame),):
        raise ExpressionError("it gives one value for all rows, not one per row")
    if value.dtype.kind not in "biuf":
        raise ExpressionError(f"it gives {_kind_name(value)}, not a number per row")
    return pd.Series(value, index=frame.index, name=text)


def shown(text: str, limit: int = 100) -> str:
    """`text` for a one-line message: unprintable characters escaped, cut after `limit` characters."""
    text = str(text)
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return out + (f"... ({len(text)} characters)" if len(text) > limit else "")


# --- parsing and the whitelist ------------------------------------------------------------------


def _parse(text: str) -> ast.Expression:
    if not isinstance(text, str):
        raise ExpressionError(f"{_kind_of_type(text)} given where a string was expected")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"longer than {MAX_LENGTH} characters ({len(text)})")
    if _bracket_depth(text) > MAX_DEPTH:
        raise ExpressionError(f"nested deeper than {MAX_DEPTH} levels")
    source = _pandas_booleans(text.strip())
    try:
        return ast.parse(source, mode="eval")
    except SyntaxError as err:
        raise ExpressionError(f"not an expression ({err.msg})") from None
    except (ValueError, RecursionError, MemoryError, OverflowError):  # null bytes; too deep for the parser
        raise ExpressionError("not an expression") from None


def _bracket_depth(text: str) -> int:
    """The deepest nesting of ( [ { outside quoted text."""
    depth = deepest = 0
    quote, escaped = "", False
    for c in text:
        if quote:
            escaped, quote = (False, quote) if escaped else (c == "\\", "" if c == quote else quote)
        elif c in "'\"":
            quote = c
        elif c in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in ")]}":
            depth -= 1
    return deepest


def _pandas_booleans(text: str) -> str:
    """`&` and `|` as `and` and `or` (with their precedence, below comparisons), as pandas' query read them.

    An '@' (pandas' local variables) is refused here, with its own message.
    """
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except Exception:  # noqa: BLE001 (the parser names the error)
        return text
    if any(t.type == tokenize.OP and t.string == "@" for t in tokens):
        raise ExpressionError("'@' is not allowed (pandas' local variables: an expression sees its names only)")
    if not any(t.type == tokenize.OP and t.string in ("&", "|") for t in tokens):
        return text
    words = {"&": "and", "|": "or"}
    return tokenize.untokenize((tokenize.NAME, words[t.string]) if t.type == tokenize.OP and t.string in words
                               else (t.type, t.string) for t in tokens)


def _check(node: ast.AST, names: Collection[str], depth: int) -> None:
    """Refuse anything outside the grammar; `names` are the names an expression may use."""
    if depth > MAX_DEPTH:
        raise ExpressionError(f"nested deeper than {MAX_DEPTH} levels")
    deeper = depth + 1
    if isinstance(node, ast.Expression):
        _check(node.body, names, deeper)
    elif isinstance(node, ast.Constant):
        _constant(node)
    elif isinstance(node, ast.Name):
        if node.id.startswith("__") or node.id.endswith("__"):
            raise ExpressionError(f"the name '{shown(node.id, 40)}' is not allowed")
        if node.id not in names:
            close = difflib.get_close_matches(node.id, [str(n) for n in names], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ExpressionError(f"unknown name '{shown(node.id, 40)}'{hint}; the names are: {_listing(names)}")
    elif isinstance(node, ast.BinOp):
        if type(node.op) in _REFUSED_OPERATORS:
            symbol = _REFUSED_OPERATORS[type(node.op)]
            raise ExpressionError(f"the operator '{symbol}' is not allowed")
        for part in (node.left, node.right):
            _check(part, names, deeper)
            if _is_text(part) and type(node.op) in _ARITHMETIC:  # known without data
                raise ExpressionError(f"'{_ARITHMETIC[type(node.op)][0]}' needs numbers, got text")
    elif isinstance(node, ast.UnaryOp):
        _check(node.operand, names, deeper)
        if _is_text(node.operand):
            raise ExpressionError("'not' needs true/false values, got text" if isinstance(node.op, ast.Not)
                                  else "a sign or '~' needs a number, got text")
    elif isinstance(node, ast.BoolOp):
        for part in node.values:
            _check(part, names, deeper)
    elif isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        for i, op in enumerate(node.ops):
            if isinstance(op, (ast.Is, ast.IsNot)):
                raise ExpressionError("'is' is not allowed (use == or !=)")
            left, right = operands[i], operands[i + 1]
            if isinstance(op, (ast.In, ast.NotIn)) and not _is_list(right):
                raise ExpressionError("'in' needs a list of constants on its right, e.g. phase in ['coexistence', "
                                      "'memorization']")
            if _is_list(left) and not (isinstance(op, (ast.Eq, ast.NotEq)) and len(node.ops) == 1
                                       and not _is_list(right)):
                raise ExpressionError("a list is allowed only after in, not in, == or != (or before == or !=)")
            if _is_list(right) and not (isinstance(op, (ast.In, ast.NotIn, ast.Eq, ast.NotEq))
                                        and len(node.ops) == 1):
                raise ExpressionError("a list is allowed only after in, not in, == or != (or before == or !=)")
        for part in operands:
            if _is_list(part):
                for element in part.elts:
                    _list_element(element)
            else:
                _check(part, names, deeper)
    elif isinstance(node, ast.Call):
        func = node.func
        if not isinstance(func, ast.Name):
            raise ExpressionError(_refused(func) if type(func) in _REFUSED_NODES
                                  else "calling anything but a function by its name is not allowed")
        if func.id not in FUNCTIONS:
            raise ExpressionError(f"calling '{shown(func.id, 40)}' is not allowed; the functions are: "
                                  + ", ".join(FUNCTIONS))
        if node.keywords:
            keyword = node.keywords[0].arg
            raise ExpressionError(f"keyword arguments ('{keyword}=' in {func.id}(...)) are not allowed"
                                  if keyword else "'**' unpacking is not allowed")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise ExpressionError("'*' unpacking is not allowed")
        if len(node.args) != 1:
            raise ExpressionError(f"{func.id}() takes one argument, got {len(node.args)}")
        _check(node.args[0], names, deeper)
    elif isinstance(node, (ast.List, ast.Tuple)):
        raise ExpressionError("a list is allowed only after in, not in, == or != (or before == or !=)")
    else:
        raise ExpressionError(_refused(node))


def _refused(node: ast.AST) -> str:
    what = _REFUSED_NODES.get(type(node), f"'{type(node).__name__}'")
    if isinstance(node, ast.Attribute):
        return f"attribute access ('.{shown(node.attr, 40)}') is not allowed"
    return f"{what} is not allowed"


def _constant(node: ast.Constant) -> None:
    v = node.value
    if isinstance(v, bool) or isinstance(v, (int, float, str)):
        return
    what = {bytes: "bytes are", type(None): "None is", complex: "complex numbers are"}.get(type(v), "'...' is")
    raise ExpressionError(f"{what} not allowed")


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _is_list(node: ast.AST) -> bool:
    return isinstance(node, (ast.List, ast.Tuple))


def _list_element(node: ast.AST) -> None:
    """A list after `in` holds constants: numbers (signed), 'text', True/False."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
        if not (isinstance(node, ast.Constant) and type(node.value) in (int, float)):
            raise ExpressionError("a list after in holds constants only: numbers, 'text', True/False")
    if not isinstance(node, ast.Constant):
        raise ExpressionError("a list after in holds constants only: numbers, 'text', True/False")
    _constant(node)


def _listing(names: Collection[str], first: int = 12) -> str:
    names = [str(n) for n in names]
    more = f" (and {len(names) - first} more)" if len(names) > first else ""
    return (", ".join(names[:first]) + more) if names else "none"


# --- evaluation ---------------------------------------------------------------------------------


def _eval(node: ast.AST, lookup: Callable[[str], Any]) -> Any:
    """The value of a checked tree."""
    if isinstance(node, ast.Constant):
        return _scalar(node.value)
    if isinstance(node, ast.Name):
        return lookup(node.id)
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, (ast.BitAnd, ast.BitOr)):  # only where the text could not be tokenized
            logic = np.logical_and if isinstance(node.op, ast.BitAnd) else np.logical_or
            return _logical(logic, "&" if isinstance(node.op, ast.BitAnd) else "|",
                            [_eval(node.left, lookup), _eval(node.right, lookup)])
        symbol, op = _ARITHMETIC[type(node.op)]
        return _arithmetic(symbol, op, _eval(node.left, lookup), _eval(node.right, lookup))
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, lookup)
        if isinstance(node.op, (ast.Not, ast.Invert)):
            symbol = "not" if isinstance(node.op, ast.Not) else "~"
            if _kind(value) != "bool":
                raise ExpressionError(f"'{symbol}' needs true/false values, got {_kind_name(value)}")
            return np.logical_not(value)
        value = _number(value, "unary minus" if isinstance(node.op, ast.USub) else "unary plus")
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BoolOp):
        logic = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        return _logical(logic, "and" if isinstance(node.op, ast.And) else "or",
                        [_eval(v, lookup) for v in node.values])
    if isinstance(node, ast.Compare):
        return _compare_chain(node, lookup)
    if isinstance(node, ast.Call):
        name = node.func.id  # type: ignore[attr-defined] (checked: a Name in FUNCTIONS)
        value = _eval(node.args[0], lookup)
        if name == "isnan" and _kind(value) == "text":
            return np.asarray(pd.isna(value)) if isinstance(value, np.ndarray) else np.bool_(pd.isna(value))
        return FUNCTIONS[name](_number(value, f"{name}()"))
    raise ExpressionError(_refused(node))  # not reached: _check refuses it first


def _compare_chain(node: ast.Compare, lookup: Callable[[str], Any]) -> Any:
    """`a < b < c` is `a < b and b < c`; `x in [..]` and `x == [..]` test membership (pandas' isin)."""
    operands = [node.left, *node.comparators]
    values = [None if _is_list(o) else _eval(o, lookup) for o in operands]
    results = []
    for i, op in enumerate(node.ops):
        left, right = values[i], values[i + 1]
        if _is_list(operands[i]):  # [a, b] == x
            left, right = right, _constants(operands[i])
        elif _is_list(operands[i + 1]):
            right = _constants(operands[i + 1])
        if isinstance(right, list):
            inside = _isin(left, right)
            results.append(np.logical_not(inside) if isinstance(op, (ast.NotIn, ast.NotEq)) else inside)
        else:
            symbol, compare = _COMPARISONS[type(op)]
            results.append(_compare(symbol, compare, left, right))
    out = results[0]
    for r in results[1:]:
        out = np.logical_and(out, r)
    return out


def _compare(symbol: str, compare: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    kinds = {_kind(left), _kind(right)}
    if kinds <= {"bool", "number"}:
        return compare(left, right)
    if kinds == {"text"}:
        if symbol in ("==", "!="):
            return compare(left, right)
        return _ordered_text(compare, left, right)
    if symbol in ("==", "!="):  # text and a number are never equal
        shape = np.broadcast(left, right).shape
        result = np.full(shape, symbol == "!=")
        return result if shape else np.bool_(result[()])
    raise ExpressionError(f"'{symbol}' cannot order text and numbers")


def _ordered_text(compare: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    """`<` and the like on text, element by element; a missing value (None) is never ordered (False)."""
    if not isinstance(left, np.ndarray) and not isinstance(right, np.ndarray):
        return np.bool_(left is not None and right is not None and compare(left, right))
    a, b = np.broadcast_arrays(np.asarray(left, dtype=object), np.asarray(right, dtype=object))
    return np.array([x is not None and y is not None and bool(compare(x, y)) for x, y in zip(a.ravel(), b.ravel())],
                    dtype=bool).reshape(a.shape)


def _isin(left: Any, values: list[Any]) -> Any:
    if isinstance(left, np.ndarray):
        return pd.Series(left.ravel()).isin(values).to_numpy(dtype=bool).reshape(left.shape)
    return np.bool_(pd.Series([left]).isin(values).iloc[0])


def _constants(node: ast.AST) -> list[Any]:
    out = []
    for element in node.elts:  # type: ignore[attr-defined] (checked: a list of constants)
        if isinstance(element, ast.UnaryOp):
            out.append(-element.operand.value if isinstance(element.op, ast.USub) else element.operand.value)
        else:
            out.append(element.value)
    return out


def _logical(logic: Callable[[Any, Any], Any], symbol: str, values: list[Any]) -> Any:
    for v in values:
        if _kind(v) != "bool":
            raise ExpressionError(f"'{symbol}' needs true/false values (comparisons), got {_kind_name(v)}")
    out = values[0]
    for v in values[1:]:
        out = logic(out, v)
    return out


def _arithmetic(symbol: str, op: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    left, right = _number(left, f"'{symbol}'"), _number(right, f"'{symbol}'")
    if symbol == "**" and _integers(left) and _integers(right) and np.any(np.asarray(right) < 0):
        left = np.asarray(left, dtype=np.float64) if isinstance(left, np.ndarray) else np.float64(left)
    return op(left, right)


def _number(value: Any, what: str) -> Any:
    """`value` for arithmetic: numbers as they are, True/False as 1/0; text refused."""
    kind = _kind(value)
    if kind == "bool":
        return value.astype(np.int64) if isinstance(value, np.ndarray) else np.int64(value)
    if kind != "number":
        raise ExpressionError(f"{what} needs numbers, got {_kind_name(value)}")
    return value


def _integers(value: Any) -> bool:
    return np.asarray(value).dtype.kind in "iu"


def _kind(value: Any) -> str:
    """bool, number or text."""
    dtype = value.dtype if isinstance(value, (np.ndarray, np.generic)) else None
    if dtype is not None:
        return "bool" if dtype.kind == "b" else "number" if dtype.kind in "iuf" else "text"
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, (int, float)) else "text"


def _kind_name(value: Any) -> str:
    return {"bool": "true/false values", "number": "numbers", "text": "text"}[_kind(value)]


def _kind_of_type(value: Any) -> str:
    return f"a {type(value).__name__}"


def _scalar(value: Any) -> Any:
    """A constant as numpy has it: integers as int64 (beyond its range, float64), so that no Python
    integer grows without bound (`9 ** 9 ** 9`)."""
    if isinstance(value, bool):
        return np.bool_(value)
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return np.int64(value)
        try:
            return np.float64(float(value))
        except OverflowError:
            raise ExpressionError(f"the number {shown(str(value), 20)} is too large") from None
    if isinstance(value, float):
        return np.float64(value)
    return value  # text


def _array(value: Any) -> Any:
    """A name's value for evaluation: numpy arrays (missing numbers as NaN, missing text as None) or scalars."""
    if isinstance(value, (pd.Series, pd.Index)) or isinstance(value, pd.api.extensions.ExtensionArray):
        return _from_pandas(pd.Series(value, copy=False) if not isinstance(value, pd.Series) else value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            return value
        return _from_pandas(pd.Series(value.ravel())).reshape(value.shape)
    if isinstance(value, (bool, int, float, np.generic)):
        return _scalar(value.item() if isinstance(value, np.generic) else value)
    if isinstance(value, str) or value is None:
        return value
    return _array(np.asarray(value))  # other array-likes (lists, JAX arrays)


def _from_pandas(series: pd.Series) -> np.ndarray:
    dtype, missing = series.dtype, bool(series.isna().any())
    if pd.api.types.is_bool_dtype(dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan) if missing else series.to_numpy(dtype=bool)
    if pd.api.types.is_integer_dtype(dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan) if missing else series.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    out = series.to_numpy(dtype=object)
    if missing:
        out = out.copy()
        out[series.isna().to_numpy()] = None
    return out


def _columns(frame: pd.DataFrame) -> dict[str, Any]:
    return {c: frame[c] for c in frame.columns if isinstance(c, str)}


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return shown(text.splitlines()[0] if text else type(err).__name__)
