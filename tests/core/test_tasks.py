import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grokjax.core import builtin_tasks
from grokjax.core.tasks import make_run_data, split_counts
from grokjax.core.types import Static


def static(p: int, **changes) -> Static:
    fields = dict(task="modular_addition", p=p, model="mlp", width=8, activation="quadratic", loss="mse",
                  optimizer="adamw", betas=(0.9, 0.98), steps=1, log_every=1)
    return Static(**{**fields, **changes})


@pytest.mark.parametrize(
    "task, expected",
    [("modular_addition", lambda m, n, p: (m + n) % p),
     ("modular_subtraction", lambda m, n, p: (m - n) % p),
     ("modular_multiplication", lambda m, n, p: (m * n) % p),
     ("modular_division", lambda m, n, p: next(z for z in range(p) if (z * n) % p == m) if n else 0)],
)
def test_true_labels_cover_all_pairs(task, expected):
    p = 7
    labels = getattr(builtin_tasks, task)(p).labels
    assert labels.shape == (p * p,)
    for m in range(p):
        for n in range(p):
            assert labels[m * p + n] == expected(m, n, p)


def test_split_counts_are_floors_robust_to_float_noise():
    assert split_counts(0.5, 0.35, 97**2) == (4704, 1646)
    assert split_counts(0.29, 0.0, 100) == (29, 0)  # 0.29 * 100 is 28.999999999999996 in float64
    assert split_counts(1.0, 0.5, 49) == (49, 24)
    assert split_counts(0.01, 0.5, 49) == (0, 0)


@pytest.mark.parametrize("alpha, xi", [(0.3, 0.0), (0.5, 0.35), (0.9, 0.8), (1.0, 0.1)])
def test_split_and_corruption_counts_are_exact(alpha, xi):
    p = 13
    n_train, n_corrupt = split_counts(alpha, xi, p * p)
    labels = jnp.asarray(builtin_tasks.modular_addition(p).labels)
    data = make_run_data(static(p), jax.random.key(3), n_train, n_corrupt)
    train, corrupted, run_labels = (np.asarray(x) for x in (data.train, data.corrupted, data.labels))
    np.testing.assert_array_equal(np.asarray(data.test), ~train)
    assert train.sum() == math.floor(alpha * p * p + 1e-9)
    assert corrupted.sum() == math.floor(xi * train.sum() + 1e-9)
    assert not (corrupted & ~train).any(), "only training examples are corrupted"
    clean = ~corrupted
    np.testing.assert_array_equal(run_labels[clean], np.asarray(labels)[clean])
    assert ((run_labels >= 0) & (run_labels < p)).all()


def test_corrupted_labels_are_uniform_draws():
    p = 11
    labels = jnp.asarray(builtin_tasks.modular_addition(p).labels)
    data = make_run_data(static(p), jax.random.key(0), p * p, p * p - 1)
    drawn = np.asarray(data.labels)[np.asarray(data.corrupted)]
    counts = np.bincount(drawn, minlength=p)
    assert counts.min() > 0  # every class is drawn
    # A drawn label equals the true one about 1/p of the time (it is not excluded).
    same = (drawn == np.asarray(labels)[np.asarray(data.corrupted)]).mean()
    assert 0.02 < same < 0.2


def test_split_depends_on_data_seed_only_and_is_nested():
    p = 11
    a = make_run_data(static(p), jax.random.key(5), 40, 10)
    b = make_run_data(static(p), jax.random.key(5), 80, 20)
    c = make_run_data(static(p), jax.random.key(6), 40, 10)
    assert (np.asarray(a.train) <= np.asarray(b.train)).all()
    assert (np.asarray(a.corrupted) <= np.asarray(b.corrupted)).all()
    assert (np.asarray(a.train) != np.asarray(c.train)).any()
