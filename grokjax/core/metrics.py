"""What is measured on a run: per-example losses, masked losses, correct counts, weight norm.

Accuracies leave the device as integer counts of correct examples; the host divides
by the exact set sizes, so a threshold such as 90% is compared exactly.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp

from grokjax.core.methods import stablemax_s
from grokjax.core.tasks import RunData


def example_losses(logits: jax.Array, labels: jax.Array, loss: str, precision: str = "float32") -> jax.Array:
    """Loss of each example, shape (examples,), computed at `precision` and returned as float32.

    `mse` is the mean over the p outputs of the squared error against one-hot
    targets, so its masked mean over examples equals PyTorch's MSELoss; `stablemax` the
    cross-entropy of StableMax (`stablemax_log_probs`). Sums over
    classes are dot products, not reductions (see `masked_mean`).
    """
    if precision == "float64":
        return _float64_losses(logits, labels, loss)
    return _example_losses(logits, labels, loss)


@contextlib.contextmanager
def at_precision(precision: str) -> Iterator[Any]:
    """The dtype of `train.loss_precision`, with float64 turned on for what is traced inside only: the loss and
    its softmax. The rest of the program keeps JAX's float32 and int32 defaults, which a global x64 switch would
    change."""
    if precision == "float32":
        yield jnp.float32
    else:
        with jax.enable_x64(True):
            yield jnp.float64


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _float64_losses(logits: jax.Array, labels: jax.Array, loss: str) -> jax.Array:
    """The losses from the logits cast to float64, as float32 (Prieto et al.'s `cross_entropy_float64`). A custom
    VJP so that the backward pass, traced after the forward one has left float64's scope, is inside it too."""
    with at_precision("float64") as dtype:
        return _example_losses(logits.astype(dtype), labels, loss).astype(jnp.float32)


def _float64_forward(logits: jax.Array, labels: jax.Array, loss: str) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _float64_losses(logits, labels, loss), (logits, labels)


def _float64_backward(loss: str, saved: tuple[jax.Array, jax.Array], cotangent: jax.Array) -> tuple[jax.Array, None]:
    logits, labels = saved
    with at_precision("float64") as dtype:
        _, pullback = jax.vjp(lambda x: _example_losses(x.astype(dtype), labels, loss).astype(jnp.float32), logits)
        return pullback(cotangent)[0], None


_float64_losses.defvjp(_float64_forward, _float64_backward)


def _example_losses(logits: jax.Array, labels: jax.Array, loss: str) -> jax.Array:
    if loss == "mse":
        targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
        return class_sum(jnp.square(logits - targets)) / logits.shape[-1]
    if loss == "stablemax":
        return -jnp.take_along_axis(stablemax_log_probs(logits), labels[:, None], axis=-1)[:, 0]
    shifted, picked = _shifted(logits, labels)
    return jnp.log(class_sum(jnp.exp(shifted))) - picked


def _shifted(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(the logits less their max, the label's of them): the softmax's terms, as the cross-entropy and the collapse
    count both take them, so that XLA computes their exponentials once."""
    shifted = logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))  # a max is order-free
    return shifted, jnp.take_along_axis(shifted, labels[:, None], axis=-1)[:, 0]


def stablemax_log_probs(logits: jax.Array) -> jax.Array:
    """log StableMax over the last axis: log(s(x) / Σ s(x)), as the authors' `log_stablemax`."""
    s = stablemax_s(logits)
    return jnp.log(s / class_sum(s)[..., None])


def class_sum(values: jax.Array) -> jax.Array:
    """The sum over the last axis: a dot product in float32 (see `masked_mean`), a reduction in float64. A dot's
    output dtype is a parameter that JAX narrows to float32 when vmap or scan re-traces it outside float64's scope;
    a float64 sum rounded to float32 does not depend on the order of its terms but in the rarest of ties."""
    if values.dtype == jnp.float64:
        return jnp.sum(values, axis=-1)
    return values @ jnp.ones(values.shape[-1], values.dtype)


def collapsed(logits: jax.Array, labels: jax.Array, precision: str = "float32") -> jax.Array:
    """Whether each example's softmax, at the loss's precision, gives its label a probability of exactly 1
    (softmax collapse, Prieto et al. 2025: their sum of exponentials is exactly 1).

    Whether a sum of 1 and tiny terms rounds to exactly 1 depends on the order of its additions, so this sum is a
    reduction, as the authors' `torch.sum` and `jax.nn.softmax`: unlike a dot product over the classes, XLA's
    gives each run the same count however many runs are vmapped together (tested)."""
    with at_precision(precision) as dtype:
        shifted, picked = _shifted(logits.astype(dtype), labels)
        return jnp.exp(picked) / jnp.sum(jnp.exp(shifted), axis=-1) == 1.0


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


def evaluate(logits: jax.Array, data: RunData, params: Any, loss: str, precision: str = "float32") -> dict[str, jax.Array]:
    """One run's metrics from its logits over all examples, the losses at `precision` (`train.loss_precision`)."""
    losses = example_losses(logits, data.labels, loss, precision)
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
        out["collapsed_count"] = jnp.sum(collapsed(logits, data.labels, precision) & data.train, dtype=jnp.int32)
        out["zero_loss_count"] = jnp.sum((losses == 0.0) & data.train, dtype=jnp.int32)
    return out
