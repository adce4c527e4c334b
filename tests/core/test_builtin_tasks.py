"""The built-in tasks against their definitions: modular operations as expressions mod p, S5 as permutations."""

import itertools
import re

import jax
import numpy as np
import pytest

from grokjax.config.modular_expressions import ModularExpressionError, condition, labels
from grokjax.core.registry import build_task
from grokjax.core.tasks import make_run_data
from grokjax.core.types import Static

EXPRESSIONS = {
    "modular_addition": ("x + y", ""),
    "modular_subtraction": ("x - y", ""),
    "modular_multiplication": ("x * y", ""),
    "modular_division": ("x * y**(p-2)", "y != 0"),
}


@pytest.mark.parametrize("task", list(EXPRESSIONS))
@pytest.mark.parametrize("p, symmetric", [(7, False), (11, True)])
def test_an_expression_equal_to_a_builtin_gives_its_examples_splits_and_corruption(task, p, symmetric):
    expression, valid = EXPRESSIONS[task]
    builtin = build_task(task, {}, {"p": p, "symmetric": symmetric})
    written = build_task("modular_expression", {"expression": expression, "valid": valid}, {"p": p, "symmetric": symmetric})
    for field in ("inputs", "labels", "valid"):
        np.testing.assert_array_equal(getattr(written, field), getattr(builtin, field))
    assert (written.num_tokens, written.num_classes, written.cyclic) == (builtin.num_tokens, builtin.num_classes, True)
    n_train, n_corrupt = 20, 5
    for seed in (0, 3):
        a = make_run_data(Static(task=task, p=p, symmetric=symmetric), jax.random.key(seed), n_train, n_corrupt)
        b = make_run_data(Static(task="modular_expression", p=p, symmetric=symmetric,
                                 task_args=(("expression", expression), ("valid", valid))),
                          jax.random.key(seed), n_train, n_corrupt)
        for x, y in zip(a[:5], b[:5]):
            np.testing.assert_array_equal(x, y)


def test_expressions_are_exact_integers_mod_p():
    p = 13
    x, y = np.divmod(np.arange(p * p), p)
    exact = lambda f: np.array([f(a, b) % p for a, b in zip(x.tolist(), y.tolist())])  # noqa: E731
    np.testing.assert_array_equal(labels("x**3 + x*y**2 + y", x, y, p), exact(lambda a, b: a**3 + a * b**2 + b))
    np.testing.assert_array_equal(labels("(x**40 + 7) // (y + 1)", x, y, p), exact(lambda a, b: (a**40 + 7) // (b + 1)))
    np.testing.assert_array_equal(labels("-x % 5 - y", x, y, p), exact(lambda a, b: -a % 5 - b))
    np.testing.assert_array_equal(labels("x * y**(p-2)", x[y > 0], y[y > 0], p),
                                  exact(lambda a, b: a * pow(b, p - 2, p))[y > 0])
    np.testing.assert_array_equal(condition("x < y and not y == 3 or x == 0", x, y, p),
                                  (x < y) & ~(y == 3) | (x == 0))


@pytest.mark.parametrize("text, refused", [
    ("x / y", "'/'"), ("z + x", "unknown name 'z'"), ("x.real", "attribute"), ("__import__('os')", "call"),
    ("1.5 * x", "not an integer"), ("x ** -1", "negative exponent"), ("x // (y - y)", "divides by zero"),
    ("x < y", "true/false"), ("x ^ y", "'^'"), ("[x, y]", "list"), ("x ** (y ** 99) // 2", "bits"),
])
def test_expressions_outside_the_grammar_are_refused(text, refused):
    p = 7
    x, y = np.divmod(np.arange(p * p), p)
    with pytest.raises(ModularExpressionError, match=re.escape(refused)) as err:
        labels(text, x, y, p)
    assert "allowed: the names x, y and p" in str(err.value)


def permutation(k: int) -> tuple[int, ...]:
    return tuple(itertools.permutations(range(5)))[k]


@pytest.mark.parametrize("name, product", [
    ("s5_composition", lambda x, y: tuple(y[x[i]] for i in range(5))),  # apply x, then y
    ("s5_conjugation", lambda x, y: tuple(np.argsort(x)[y[x[i]]] for i in range(5))),  # x, then y, then x^-1
    ("s5_aba", lambda x, y: tuple(x[y[x[i]]] for i in range(5))),  # x, then y, then x
])
def test_s5_tasks_are_products_of_permutations(name, product):
    task = build_task(name, {}, {})
    assert (task.num_tokens, task.num_classes, task.examples, task.arity) == (120, 120, 120 * 120, 2) and task.grid
    rng = np.random.default_rng(0)
    for i in rng.choice(task.examples, 300, replace=False):
        a, b = task.inputs[i]
        assert permutation(task.labels[i]) == product(permutation(a), permutation(b))


def test_s5_composition_has_an_identity_and_is_not_commutative():
    table = build_task("s5_composition", {}, {}).labels.reshape(120, 120)
    identity = 0  # (0, 1, 2, 3, 4), the first permutation
    np.testing.assert_array_equal(table[identity], np.arange(120))
    np.testing.assert_array_equal(table[:, identity], np.arange(120))
    assert (table != table.T).any()
    assert all(sorted(row) == list(range(120)) for row in table)  # a Latin square: every product once per row
