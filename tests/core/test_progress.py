"""The Fourier progress measures against their definitions (docs/measures.md), computed here in plain NumPy:
each component a least-squares projection over the group's grid, the losses as the runs train, the Gini
coefficient as seed 002's authors compute it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grokjax.core import progress, registry
from grokjax.core.types import Fourier, Hparams, Static
from grokjax.engine import replay, runner, runs_table

P = 11


def static_of(task, loss="cross_entropy", **changes):
    fields = dict(task=task, p=P, model="mlp", width=24, activation="quadratic", loss=loss, steps=60, log_every=20)
    return Static(**{**fields, **changes})


def trained(static, weight_decay=1.0, data_fraction=0.6):
    """Two runs (seeds 0 and 1) trained to the end: their hparams, first-pass logs and final state."""
    import pandas as pd

    rows = pd.DataFrame([dict(task=static.task, p=static.p, symmetric=False, task_args="{}", model_args="{}",
                              optimizer_args="{}", n_bits=30, k_bits=3, test_size=1000, pool_size=3000,
                              data_fraction=data_fraction, corruption_fraction=0.0, train_size=1)] * 2)
    rows = runs_table.split_sizes(rows)
    hp = Hparams(seed=np.array([0, 1], np.int32), data_seed=np.array([0, 1], np.int32),
                 weight_decay=np.full(2, weight_decay, np.float32), learning_rate=np.full(2, 0.01, np.float32),
                 init_scale=np.ones(2, np.float32), n_train=rows.n_train.to_numpy(np.int32),
                 n_corrupt=np.zeros(2, np.int32), dropout=np.zeros(2, np.float32), momentum=np.zeros(2, np.float32))
    logs, state = [], None
    for seg in runner.segments(static, hp):
        logs.append(seg.metrics)
        state = seg.state
    return hp, logs, state


def numpy_losses(logits, labels, loss):
    if loss == "mse":
        return np.mean((logits - np.eye(logits.shape[1])[labels]) ** 2, axis=1)
    top = logits.max(axis=1, keepdims=True)
    return np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0] - logits[np.arange(len(labels)), labels]


def numpy_components(logits, fourier):
    """Each frequency's component over the group's grid, by least squares: {k: (examples, outputs)}."""
    inside = fourier.index >= 0
    u = fourier.index[inside]
    out = {}
    for k in range(1, fourier.order // 2 + 1):
        design = np.stack([np.cos(2 * np.pi * k * u / fourier.order), np.sin(2 * np.pi * k * u / fourier.order)], 1)
        coef, *_ = np.linalg.lstsq(design, logits[inside], rcond=None)
        full = np.zeros_like(logits)
        full[inside] = design @ coef
        out[k] = full
    return out


def numpy_measures(logits, task, train, trained_labels, keys, loss):
    fourier = task.fourier
    inside = fourier.index >= 0
    parts = numpy_components(logits, fourier)
    kept = sum(parts[k] for k in keys)
    mean = logits[inside].mean(axis=0)
    restricted = numpy_losses(mean + kept, task.labels, loss)[inside & task.mask].mean()
    excluded = numpy_losses(logits - kept, trained_labels, loss)[inside & train].mean()
    power = {k: np.sum(parts[k] ** 2) for k in parts}
    return restricted, excluded, power


@pytest.mark.parametrize("task, loss", [("modular_addition", "cross_entropy"), ("modular_multiplication", "mse")])
def test_measures_equal_their_definitions_in_numpy(task, loss):
    static = static_of(task, loss)
    _, _, state = trained(static)
    keys = jax.vmap(lambda s: progress.key_frequencies(static, s))(state)
    got = jax.vmap(lambda s, k: progress.measures(static, s, k))(state, keys)
    logits = np.asarray(jax.vmap(lambda s: progress._logits(static, s))(state), np.float64)
    built = registry.task_of(static)
    for run in range(2):
        frequencies = replay.frequency_lists(np.asarray(keys))[run]
        restricted, excluded, power = numpy_measures(
            logits[run], built, np.asarray(state.data.train[run]), np.asarray(state.data.labels[run]), frequencies, loss)
        np.testing.assert_allclose(got["restricted_loss"][run], restricted, rtol=1e-4)
        np.testing.assert_allclose(got["excluded_loss"][run], excluded, rtol=1e-4)
        # The key frequencies: the fewest, strongest first, whose power reaches KEY_SHARE of all.
        ranked = sorted(power, key=lambda k: -power[k])
        total, held, expected = sum(power.values()), 0.0, []
        for k in ranked:
            if held >= progress.KEY_SHARE * total:
                break
            expected.append(k)
            held += power[k]
        assert frequencies == sorted(expected)


def test_subtraction_indexes_x_minus_y():
    fourier = registry.task_of(static_of("modular_subtraction")).fourier
    m, n = np.divmod(np.arange(P * P), P)
    assert fourier.order == P and (fourier.index == (m - n) % P).all() and (fourier.tokens == np.arange(P)).all()


def test_multiplication_re_indexes_by_discrete_logarithm():
    fourier = registry.task_of(static_of("modular_multiplication")).fourier
    m, n = np.divmod(np.arange(P * P), P)
    assert fourier.order == P - 1 and (fourier.index == -1).sum() == 2 * P - 1
    root = int(np.flatnonzero(fourier.tokens == 1)[0])  # the token whose logarithm is 1
    nonzero = (m > 0) & (n > 0)
    assert all(pow(root, int(e), P) == a * b % P for e, a, b in zip(fourier.index[nonzero], m[nonzero], n[nonzero]))
    assert fourier.tokens[0] == -1 and sorted(fourier.tokens[1:]) == list(range(P - 1))


def test_gini_is_the_authors_formula_on_the_embeddings_fourier_norms():
    values = np.array([0.1, 3.0, 0.2, 0.0, 7.5, 1.25])
    authors = np.abs(np.expand_dims(values, 0) - np.expand_dims(values, 1)).mean() / values.mean() / 2
    np.testing.assert_allclose(progress.gini(jnp.asarray(values)), authors, rtol=1e-6)
    static = static_of("modular_addition")
    params = jax.tree.map(lambda x: x[0], trained(static)[2].params)
    fourier = registry.task_of(static).fourier
    rows = np.concatenate([np.asarray(params["U"]["embedding"]).T, np.asarray(params["V"]["embedding"]).T])
    spectrum = np.fft.fft(rows, axis=1)[:, 1 : P // 2 + 1]  # frequencies 1 .. (p - 1) / 2
    norms = np.sqrt((np.abs(spectrum) ** 2).sum(axis=0))
    np.testing.assert_allclose(progress.embedding_norms(static, params, fourier), norms, rtol=1e-4)


def test_key_mask_takes_the_fewest_strongest_frequencies():
    power = jnp.array([1.0, 50.0, 2.0, 40.0, 7.0])  # 90% of 100: 50 + 40 = 90 reaches it
    assert progress.key_mask(power).tolist() == [False, True, False, True, False]
    assert progress.key_mask(jnp.array([1.0, 1.0, 1.0])).tolist() == [True, True, True]


def test_the_replay_passes_through_the_first_pass_bit_for_bit():
    static = static_of("modular_addition")
    hp, logs, state = trained(static)
    keep, replayed = replay.measured(static, hp, state)
    assert keep.shape == (2, P // 2) and keep.any(axis=1).all()
    for first, again in zip(logs, replayed):
        for name, value in first.items():
            np.testing.assert_array_equal(again[name], value)
    final = jax.vmap(lambda s, k: progress.measures(static, s, k))(state, jnp.asarray(keep))
    np.testing.assert_array_equal(replayed[-1]["restricted_loss"], np.asarray(final["restricted_loss"]))


def test_a_fourier_group_held_unevenly_is_refused():
    from grokjax.config.sweep_file import ConfigError
    from grokjax.core.types import Task

    x, y = np.divmod(np.arange(25), 5)
    bad = Fourier(index=np.where((x == 0) & (y == 0), -1, (x + y) % 5), order=5, tokens=np.arange(5))
    task = Task(inputs=np.stack([x, y], 1), labels=(x + y) % 5, num_tokens=5, num_classes=5, fourier=bad)
    with pytest.raises(ConfigError, match="holds the elements of Z_5 from 4 to 5 times"):
        registry.checked_task(task, "here")
    assert progress.left_out(static_of("s5_composition")) is not None


def test_the_measures_apply_to_the_transformer():
    """Any model: restricted and excluded loss from its outputs; the Gini from its neuron_weights' u (and v)."""
    from grokjax.core.training import init_run

    static = static_of("modular_addition", model="transformer", embed_size=16, heads=2, width=16)
    hp = Hparams(seed=0, data_seed=0, weight_decay=0.0, learning_rate=0.01, init_scale=1.0, n_train=60, n_corrupt=0,
                 dropout=0.0, momentum=0.0)
    def measured(hp):
        state = init_run(static, hp)
        keep = progress.key_frequencies(static, state)
        return keep, progress.measures(static, state, keep)

    keep, got = jax.jit(measured)(hp)
    assert keep.any() and all(np.isfinite(float(v)) and float(v) > 0 for v in got.values())
