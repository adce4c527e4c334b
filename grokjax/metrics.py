"""What is measured on a run: per-example losses, masked losses, correct counts, weight norm.

Accuracies leave the device as integer counts of correct examples; the host divides
by the exact set sizes, so a threshold such as 90% is compared exactly.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from grokjax.tasks import RunData


def example_losses(logits: jax.Array, labels: jax.Array, loss: str) -> jax.Array:
    """Loss of each example, shape (examples,).

    `mse` is the mean over the p outputs of the squared error against one-hot
    targets, so its masked mean over examples equals PyTorch's MSELoss.
    """
    if loss == "mse":
        targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
        return jnp.mean(jnp.square(logits - targets), axis=-1)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of values where mask holds; NaN for an empty mask."""
    return jnp.sum(jnp.where(mask, values, 0.0)) / jnp.sum(mask)


def weight_norm(params: Any) -> jax.Array:
    """Frobenius norm of all trainable parameters together."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(w)) for w in jax.tree_util.tree_leaves(params)))


def evaluate(logits: jax.Array, data: RunData, params: Any, loss: str) -> dict[str, jax.Array]:
    """One run's metrics from its logits over all examples."""
    losses = example_losses(logits, data.labels, loss)
    correct = jnp.argmax(logits, axis=-1) == data.labels
    test = data.test
    clean = data.train & ~data.corrupted

    def count(mask: jax.Array) -> jax.Array:
        return jnp.sum(correct & mask, dtype=jnp.int32)

    return {
        "train_loss": masked_mean(losses, data.train),
        "test_loss": masked_mean(losses, test),
        "train_correct": count(data.train),
        "test_correct": count(test),
        "clean_correct": count(clean),
        "corrupted_correct": count(data.corrupted),
        "weight_norm": weight_norm(params),
    }
