"""The built-in tasks, as task functions: each returns a `Task`, as a task of the user's own does.

`[task] name = "modular_addition"` names `modular_addition` here by the same door as
`name = "mypkg.tasks:cubic"` names the user's function (`grokjax.core.registry`): it is called with
the [task] keys it takes, and its `Task` is checked the same way.

Modular tasks: example i is the pair (m, n) = (i // p, i % p) of all p^2 pairs; pairs that are
not examples (n = 0 for division, m > n when symmetric) are in the rows but in neither set, so
every run of one p orders the same rows.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from grokjax.config import modular_expressions
from grokjax.core.tasks import shuffle_index
from grokjax.core.types import Fourier, Task


def _pairs(p: int) -> tuple[np.ndarray, np.ndarray]:
    return np.divmod(np.arange(p * p, dtype=np.int64), p)


def _modular(labels: np.ndarray, valid: np.ndarray, p: int, symmetric: bool, fourier: Fourier | None = None) -> Task:
    m, n = _pairs(p)
    if symmetric:
        valid = valid & (m <= n)
    return Task(inputs=np.stack([m, n], axis=1).astype(np.int32), labels=np.where(valid, labels, 0).astype(np.int32),
                num_tokens=p, num_classes=p, valid=valid, cyclic=True, fourier=fourier)


def _additive(p: int, sign: int) -> Fourier:
    """x + sign y in Z_p; token t is t."""
    m, n = _pairs(p)
    return Fourier(index=(m + sign * n) % p, order=p, tokens=np.arange(p))


def _multiplicative(p: int, sign: int) -> Fourier | None:
    """log x + sign log y in Z_(p-1) (discrete logarithms to the least primitive root of p), the pairs holding 0
    outside; None unless p is prime."""
    root = next((g for g in range(2, p) if len({pow(g, i, p) for i in range(p - 1)}) == p - 1), None)
    if p < 3 or root is None:
        return None
    log = np.full(p, -1)
    log[[pow(root, i, p) for i in range(p - 1)]] = np.arange(p - 1)
    m, n = _pairs(p)
    index = np.where((m > 0) & (n > 0), (log[m] + sign * log[n]) % (p - 1), -1)
    return Fourier(index=index, order=p - 1, tokens=log)


def modular_addition(p: int, symmetric: bool = False) -> Task:
    """(m + n) mod p."""
    m, n = _pairs(p)
    return _modular((m + n) % p, np.ones(p * p, bool), p, symmetric, _additive(p, 1))


def modular_subtraction(p: int, symmetric: bool = False) -> Task:
    """(m - n) mod p."""
    m, n = _pairs(p)
    return _modular((m - n) % p, np.ones(p * p, bool), p, symmetric, _additive(p, -1))


def modular_multiplication(p: int, symmetric: bool = False) -> Task:
    """(m n) mod p."""
    m, n = _pairs(p)
    return _modular((m * n) % p, np.ones(p * p, bool), p, symmetric, _multiplicative(p, 1))


def modular_division(p: int, symmetric: bool = False) -> Task:
    """m / n = m n^(p-2) mod p (Fermat; p prime); n = 0 is not an example."""
    m, n = _pairs(p)
    inverse = np.array([pow(int(k), p - 2, p) for k in range(p)])
    return _modular((m * inverse[n]) % p, n != 0, p, symmetric, _multiplicative(p, -1))


def modular_expression(p: int, expression: str, valid: str = "", symmetric: bool = False) -> Task:
    """Any binary operation mod p, written in the sweep file: `expression` on x, y and p, over the pairs
    where `valid` holds (all when ""), evaluated exactly (`grokjax.config.modular_expressions`).

    Rows and their order are those of the built-in modular tasks, so "x + y" is modular_addition,
    split and corrupted alike for every seed."""
    m, n = _pairs(p)
    keep = modular_expressions.condition(valid, m, n, p) if valid.strip() else np.ones(p * p, bool)
    labels = np.zeros(p * p, np.int64)
    labels[keep] = modular_expressions.labels(expression, m[keep], n[keep], p)
    return _modular(labels, keep, p, symmetric)


PERMUTATIONS = np.array(list(itertools.permutations(range(5))), dtype=np.int64)  # S5's 120 elements, in order


def _s5(compose: str) -> Task:
    """The 120^2 pairs (x, y) of S5 with the index of their product; x(i) is row x of `PERMUTATIONS` at i."""
    index = {tuple(q): k for k, q in enumerate(PERMUTATIONS)}
    x, y = (PERMUTATIONS[k] for k in _pairs(len(PERMUTATIONS)))
    inverse_x = np.argsort(x, axis=1)
    take = lambda f, g: np.take_along_axis(f, g, axis=1)  # noqa: E731 (i -> f(g(i)), row by row)
    product = {"composition": take(y, x), "conjugation": take(inverse_x, take(y, x)), "aba": take(x, take(y, x))}
    labels = np.array([index[tuple(q)] for q in product[compose]])
    first, second = _pairs(len(PERMUTATIONS))
    return Task(inputs=np.stack([first, second], axis=1).astype(np.int32), labels=labels.astype(np.int32),
                num_tokens=len(PERMUTATIONS), num_classes=len(PERMUTATIONS))


def s5_composition() -> Task:
    """x∘y in S5: apply x, then y (openai/grok's "s5", `y[x]`)."""
    return _s5("composition")


def s5_conjugation() -> Task:
    """x∘y∘x⁻¹ in S5, applied left to right as sympy multiplies (openai/grok's "s5conj", `x * y * ~x`)."""
    return _s5("conjugation")


def s5_aba() -> Task:
    """x∘y∘x in S5, applied left to right (openai/grok's "s5aba", `x * y * x`)."""
    return _s5("aba")


def sparse_parity(n_bits: int, k_bits: int, pool_size: int, test_size: int) -> Task:
    """Seed 000's task: n-bit strings labelled by the parity of their first k bits. Each data seed draws its own
    pool of pool_size distinct strings (`Task.draw`), in random order; the last test_size are the test set and
    runs train on the first train_size."""
    def draw(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        words = jax.random.bits(key, (2,), jnp.uint32)
        codes = shuffle_index(jnp.arange(pool_size, dtype=jnp.uint32), words, jnp.uint32(n_bits))
        bits = ((codes[:, None] >> jnp.arange(n_bits, dtype=jnp.uint32)) & 1).astype(jnp.int8)
        return bits, jnp.sum(bits[:, :k_bits], axis=1, dtype=jnp.int32) % 2

    # Placeholders of the draw's shapes: drawing here would run JAX op by op, seconds of a small sweep's start.
    inputs, labels = np.zeros((pool_size, n_bits), np.int8), np.zeros(pool_size, np.int32)
    return Task(inputs=inputs, labels=labels, num_tokens=2, num_classes=2, draw=draw, test_size=test_size)
