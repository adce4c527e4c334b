"""What is measured on a run: per-example losses, masked losses, correct counts, weight norm.

Accuracies leave the device as integer counts of correct examples; the host divides
by the exact set sizes, so a threshold such as 90% is compared exactly.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from grokjax.core.methods import stablemax_log_probs
from grokjax.core.tasks import RunData


def example_losses(logits: jax.Array, labels: jax.Array, loss: str) -> jax.Array:
    """Loss of each example, shape (examples,).

    `mse` is the mean over the p outputs of the squared error against one-hot
    targets, so its masked mean over examples equals PyTorch's MSELoss; `stablemax` the
    cross-entropy of StableMax (`methods.stablemax_log_probs`). Sums over
    classes are dot products, not reductions (see `masked_mean`).
    """
    ones = jnp.ones(logits.shape[-1], logits.dtype)
    if loss == "mse":
        targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
        return jnp.square(logits - targets) @ ones / logits.shape[-1]
    if loss == "stablemax":
        return -jnp.take_along_axis(stablemax_log_probs(logits), labels[:, None], axis=-1)[:, 0]
    shifted = logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))  # a max is order-free
    picked = jnp.take_along_axis(shifted, labels[:, None], axis=-1)[:, 0]
    return jnp.log(jnp.exp(shifted) @ ones) - picked


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of values where mask holds; NaN for an empty mask.

    The sum is a dot product with the mask, not a reduction: XLA's CPU reductions add in
    an order that depends on how many runs are vmapped together, its dots do not, so a
    run's losses do not depend on the size of the chunk it is trained in.
    """
    return jnp.dot(jnp.where(mask, values, 0.0), mask.astype(values.dtype)) / jnp.sum(mask)


def weight_norm(params: Any) -> jax.Array:
    """Frobenius norm of all trainable parameters together."""
    return jnp.sqrt(sum(jnp.vdot(w, w) for w in jax.tree_util.tree_leaves(params)))


def evaluate(logits: jax.Array, data: RunData, params: Any, loss: str) -> dict[str, jax.Array]:
    """One run's metrics from its logits over all examples."""
    losses = example_losses(logits, data.labels, loss)
    correct = jnp.argmax(logits, axis=-1) == data.labels
    test = data.test
    clean = data.train & ~data.corrupted

    def count(mask: jax.Array) -> jax.Array:
        return jnp.sum(correct & mask, dtype=jnp.int32)

    out = {
        "train_loss": masked_mean(losses, data.train),
        "test_loss": masked_mean(losses, test),
        "train_correct": count(data.train),
        "test_correct": count(test),
        "clean_correct": count(clean),
        "corrupted_correct": count(data.corrupted),
        "weight_norm": weight_norm(params),
    }
    if loss != "mse":  # softmax collapse (Prieto et al. 2025), over the training examples
        probability = jnp.take_along_axis(jax.nn.softmax(logits), data.labels[:, None], axis=-1)[:, 0]
        out["collapsed_count"] = jnp.sum((probability == 1.0) & data.train, dtype=jnp.int32)
        out["zero_loss_count"] = jnp.sum((losses == 0.0) & data.train, dtype=jnp.int32)
    return out
