"""Datasets as fixed-shape arrays: every run sees all p^2 pairs, with its own masks and labels.

Example i is the pair (m, n) = (i // p, i % p). A run's split and corruption are
masks over those p^2 examples, so runs with different data and corruption
fractions share one shape and one compiled program.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

_OPS = {
    "modular_addition": lambda m, n, p: (m + n) % p,
    "modular_subtraction": lambda m, n, p: (m - n) % p,
    "modular_multiplication": lambda m, n, p: (m * n) % p,
}


class RunData(NamedTuple):
    """One run's view of the examples; all arrays have shape (p^2,)."""

    train: jax.Array  # bool: in the training set
    corrupted: jax.Array  # bool: a training example whose label was redrawn
    labels: jax.Array  # int32: the label trained on (true label unless corrupted)


def true_labels(task: str, p: int) -> np.ndarray:
    """Labels of all p^2 pairs, example i = (i // p, i % p)."""
    m, n = np.divmod(np.arange(p * p, dtype=np.int64), p)
    return _OPS[task](m, n, p).astype(np.int32)


def split_counts(data_fraction: float, corruption_fraction: float, p: int) -> tuple[int, int]:
    """(n_train, n_corrupt) = (floor(alpha p^2), floor(xi n_train)).

    Computed on the host in float64 with a 1e-9 guard, so 0.29 * 100 gives 29 and
    not 28 (0.29 * 100 == 28.999999999999996 in binary floating point).
    """
    n_train = math.floor(data_fraction * p * p + 1e-9)
    n_corrupt = math.floor(corruption_fraction * n_train + 1e-9)
    return n_train, n_corrupt


def make_run_data(key: jax.Array, n_train: jax.Array, n_corrupt: jax.Array, labels: jax.Array, p: int) -> RunData:
    """Draw one run's split and corruption from its data key (traceable, vmappable).

    One random order of the examples: the first n_train form the training set and
    the first n_corrupt of those get a label drawn uniformly from the p classes (it
    may equal the true one). So for one data_seed the training sets of growing
    data fractions are nested, as in the paper's code.
    """
    order_key, label_key = jax.random.split(key)
    num = labels.shape[0]
    order = jax.random.permutation(order_key, num)
    position = jnp.zeros(num, jnp.int32).at[order].set(jnp.arange(num, dtype=jnp.int32))
    train = position < n_train
    corrupted = position < n_corrupt
    noise = jax.random.randint(label_key, (num,), 0, p, dtype=jnp.int32)
    return RunData(train=train, corrupted=corrupted, labels=jnp.where(corrupted, noise, labels))
