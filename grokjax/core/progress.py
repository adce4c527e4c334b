"""Fourier progress measures of one run (Nanda et al. 2023; definitions and formulas in docs/measures.md).

A task whose labels are a function of one element u of a cyclic group Z_n (`Task.fourier`: x + y mod p for
addition, log x + log y mod p - 1 for multiplication) lets each output's table over the examples be split
into components at the frequencies k = 1 .. n // 2: its projection onto span{cos(2 pi k u / n), sin(2 pi k u / n)}
over the full grid. The key frequencies K of a run are the fewest that hold KEY_SHARE of its final outputs'
power in these components; restricted loss keeps only them (and each output's mean), excluded loss removes
them. Every function here is one run's, pure and vmappable; K is a traced boolean mask over the frequencies,
so the measures compile once per static config.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from grokjax.config.fields import PROGRESS_MEASURES
from grokjax.core import models, registry
from grokjax.core.metrics import example_losses, masked_mean
from grokjax.core.tasks import model_inputs
from grokjax.core.training import RunState, apply_model
from grokjax.core.types import Fourier, Static

KEY_SHARE = 0.9  # the key frequencies hold at least this share of the final outputs' power in the components


def left_out(static: Static) -> str | None:
    """Why the progress measures do not apply to these runs, in words; None where they do."""
    if registry.task_of(static).fourier is None:
        return f"the labels of task {static.task} are not a function of one cyclic group's element (Task.fourier)"
    return None


def frequency_count(fourier: Fourier) -> int:
    return fourier.order // 2


def _waves(fourier: Fourier) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """cos and sin of 2 pi k u / n, shape (n, frequencies), and each frequency's normalization: 2 / n, or 1 / n at
    k = n / 2 (where sin vanishes), so that coefficients are projections."""
    n, k = fourier.order, np.arange(1, frequency_count(fourier) + 1)
    angle = 2 * np.pi * np.outer(np.arange(n), k) / n
    norm = np.where(2 * k == n, 1.0 / n, 2.0 / n)
    return np.cos(angle), np.sin(angle), norm


def coefficients(logits: jax.Array, fourier: Fourier) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(mean, cos coefficients, sin coefficients) of each output over the grid: shapes (outputs,), and
    (frequencies, outputs) twice. Each group element holds equally many examples (checked with the Task), so the
    projection over the grid is the transform of the outputs' means per element."""
    index = jnp.asarray(np.maximum(fourier.index, 0))
    inside = jnp.asarray(fourier.index >= 0, logits.dtype)
    sums = jax.ops.segment_sum(logits * inside[:, None], index, fourier.order)
    per_element = sums / (np.bincount(fourier.index[fourier.index >= 0], minlength=fourier.order)[:, None])
    cos, sin, norm = (jnp.asarray(a, logits.dtype) for a in _waves(fourier))
    return per_element.mean(axis=0), norm[:, None] * (cos.T @ per_element), norm[:, None] * (sin.T @ per_element)


def power(a: jax.Array, b: jax.Array, fourier: Fourier) -> jax.Array:
    """Each frequency's power in the components, summed over outputs and group elements: (frequencies,)."""
    n, k = fourier.order, np.arange(1, frequency_count(fourier) + 1)
    weight = jnp.asarray(np.where(2 * k == n, n, n / 2), a.dtype)
    return weight * jnp.sum(a * a + b * b, axis=1)


def key_mask(power_per_frequency: jax.Array) -> jax.Array:
    """The key frequencies as a boolean mask: the fewest, strongest first, whose power reaches KEY_SHARE of all."""
    order = jnp.argsort(-power_per_frequency, stable=True)
    held = jnp.cumsum(power_per_frequency[order])
    count = 1 + jnp.sum(held < KEY_SHARE * held[-1])
    rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0]))
    return rank < count


def kept_components(a: jax.Array, b: jax.Array, keep: jax.Array, fourier: Fourier) -> jax.Array:
    """Σ_{k in keep} component_k, per example: (examples, outputs); 0 outside the group."""
    cos, sin, _ = (jnp.asarray(x, a.dtype) for x in _waves(fourier))
    mask = keep.astype(a.dtype)[:, None]
    per_element = cos @ (mask * a) + sin @ (mask * b)  # (n, outputs)
    inside = jnp.asarray(fourier.index >= 0)
    return jnp.where(inside[:, None], per_element[jnp.asarray(np.maximum(fourier.index, 0))], 0.0)


def gini(values: jax.Array) -> jax.Array:
    """The Gini coefficient as seed 002's authors compute it (`calculate_gini`): mean |a_i - a_j| / (2 mean a)."""
    return jnp.mean(jnp.abs(values[:, None] - values[None, :])) / jnp.mean(values) / 2


def embedding_norms(static: Static, params: Any, fourier: Fourier) -> jax.Array:
    """The embedding's Fourier norm at each frequency: over every unit of `neuron_weights`' u (and v, where the
    model gives it), the norm of its weights' cos and sin coefficients over the tokens as group elements."""
    weights = models.build(static).neuron_weights(params)
    rows = jnp.concatenate([weights[name] for name in ("u", "v") if name in weights])  # (units, tokens)
    tokens = np.flatnonzero(fourier.tokens >= 0)
    on_group = jnp.zeros((rows.shape[0], fourier.order), rows.dtype).at[:, fourier.tokens[tokens]].set(rows[:, tokens])
    cos, sin, _ = (jnp.asarray(x, rows.dtype) for x in _waves(fourier))
    return jnp.sqrt(jnp.sum((on_group @ cos) ** 2 + (on_group @ sin) ** 2, axis=0))


def _logits(static: Static, state: RunState) -> jax.Array:
    model = models.build(static)
    variables = {"params": state.params, **state.model_state}
    return apply_model(static, model, variables, model_inputs(static, state.data), train=False, rate=0.0, mask=None)


def key_frequencies(static: Static, state: RunState) -> jax.Array:
    """A run's key frequencies from its (final) state: a boolean mask over k = 1 .. n // 2."""
    fourier = registry.task_of(static).fourier
    _, a, b = coefficients(_logits(static, state), fourier)
    return key_mask(power(a, b, fourier))


def measures(static: Static, state: RunState, keep: jax.Array) -> dict[str, jax.Array]:
    """restricted_loss, excluded_loss and fourier_gini of a run at this state, with key frequencies `keep`.

    Restricted: the loss of mean + Σ_K components on the valid examples inside the group, with their true labels;
    excluded: of logits - Σ_K components on the training examples inside the group, with the labels they are
    trained on. fourier_gini is NaN for a model without neuron_weights."""
    task = registry.task_of(static)
    fourier = task.fourier
    logits = _logits(static, state)
    mean, a, b = coefficients(logits, fourier)
    kept = kept_components(a, b, keep, fourier)
    inside = jnp.asarray(fourier.index >= 0)
    labels = jnp.asarray(task.labels)
    restricted = example_losses(mean + kept, labels, static.loss, static.loss_precision)
    excluded = example_losses(logits - kept, state.data.labels, static.loss, static.loss_precision)
    out = dict(zip(PROGRESS_MEASURES, (masked_mean(restricted, inside & jnp.asarray(task.mask)),
                                       masked_mean(excluded, inside & state.data.train), jnp.float32(jnp.nan))))
    if hasattr(models.build(static), "neuron_weights"):
        out["fourier_gini"] = gini(embedding_norms(static, state.params, fourier))
    return out
