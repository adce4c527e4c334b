"""Datasets as fixed-shape arrays: every run sees the same examples, with its own masks and labels.

A task's examples are the rows of its `Task` (`registry.task_of`: built in, or the user's own);
rows that are not examples (`Task.valid`) are in neither set. A task that draws its examples per
data seed (`Task.draw`, as sparse_parity's pool) gives each run the rows of its own draw.
A run's split and corruption are masks over the examples, so runs with different
data fractions, train sizes and corruption share one shape and one compiled program.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from grokjax.core.registry import task_of
from grokjax.core.types import Static


class RunData(NamedTuple):
    """One run's view of the examples; all arrays have a leading axis over the examples."""

    order: jax.Array  # int32: example at each position of the run's order (training set first)
    train: jax.Array  # bool: in the training set
    test: jax.Array  # bool: in the test set
    corrupted: jax.Array  # bool: a training example whose label was redrawn
    labels: jax.Array  # int32: the label trained on (true label unless corrupted)
    inputs: Any  # the run's own rows (examples, arity) where its task draws them (`Task.draw`); else None


def num_examples(static: Static) -> int:
    return task_of(static).examples


def num_classes(static: Static) -> int:
    return task_of(static).num_classes


def shape_of(static: Static) -> tuple[int, int, int]:
    """(num_tokens, num_classes, arity) of the task: what a model is built for."""
    task = task_of(static)
    return task.num_tokens, task.num_classes, task.arity


def split_counts(data_fraction: float, corruption_fraction: float, examples: int) -> tuple[int, int]:
    """(n_train, n_corrupt) = (floor(alpha * examples), floor(xi * n_train)).

    Computed on the host in float64 with a 1e-9 guard, so 0.29 * 100 gives 29 and
    not 28 (0.29 * 100 == 28.999999999999996 in binary floating point).
    """
    n_train = math.floor(data_fraction * examples + 1e-9)
    return n_train, corrupt_count(corruption_fraction, n_train)


def corrupt_count(corruption_fraction: float, n_train: int) -> int:
    return math.floor(corruption_fraction * n_train + 1e-9)


def shuffle_index(x: jax.Array, words: jax.Array, bits: jax.Array) -> jax.Array:
    """A keyed bijection of [0, 2^bits) (uint32 in, uint32 out; bits <= 31).

    XOR, odd multiplication and right xor-shift are each invertible modulo 2^bits,
    so distinct inputs give distinct outputs: pools without duplicates, and
    permutations without sorting.
    """
    mask = (jnp.uint32(1) << bits.astype(jnp.uint32)) - jnp.uint32(1)
    shift = ((bits + 1) // 2).astype(jnp.uint32)
    x = (x.astype(jnp.uint32) ^ words[0]) & mask
    for c in (0x85EBCA6B, 0xC2B2AE35, 0x27D4EB2F):
        x = (x * jnp.uint32(c)) & mask
        x = x ^ (x >> shift)
    return (x + words[1]) & mask


def permuted_position(q: jax.Array, key: jax.Array, n: jax.Array) -> jax.Array:
    """A random permutation of [0, n) (keyed), applied to positions q < n: cycle-walk the bijection."""
    n = jnp.maximum(n, 1).astype(jnp.uint32)
    bits = jnp.uint32(32) - jax.lax.clz(n - jnp.uint32(1))  # smallest b with 2^b >= n
    words = jax.random.bits(key, (2,), jnp.uint32)
    step = lambda x: shuffle_index(x, words, bits)  # noqa: E731
    return jax.lax.while_loop(lambda x: jnp.any(x >= n), lambda x: jnp.where(x >= n, step(x), x), step(q))


def make_run_data(static: Static, key: jax.Array, n_train: jax.Array, n_corrupt: jax.Array) -> RunData:
    """Draw one run's examples, split and corruption from its data key (traceable, vmappable).

    The run orders its examples (a task's rows: a random permutation, examples first; a drawn task's
    rows come in random order): the first n_train are the training set and the first n_corrupt of
    those get a label drawn uniformly from all classes (it may equal the true one).
    So for one data_seed the training sets of growing data fractions are nested, as in
    the paper's code. The test set is every other example, or the last `Task.test_size`.
    """
    order_key, label_key = jax.random.split(key)
    task = task_of(static)
    num, valid = task.examples, jnp.asarray(task.mask)
    if task.draw is None:
        inputs, labels = None, jnp.asarray(task.labels)
        order = jax.random.permutation(order_key, num).astype(jnp.int32)
        order = order[jnp.argsort(~valid[order], stable=True)]  # examples first, non-examples last
    else:
        inputs, labels = task.draw(order_key)
        order = jnp.arange(num, dtype=jnp.int32)
    position = jnp.zeros(num, jnp.int32).at[order].set(jnp.arange(num, dtype=jnp.int32))
    train = position < n_train
    test = valid & (~train if task.test_size is None else position >= num - task.test_size)
    corrupted = position < n_corrupt
    noise = jax.random.randint(label_key, (num,), 0, task.num_classes, dtype=jnp.int32)
    return RunData(order, train, test, corrupted, jnp.where(corrupted, noise, labels), inputs)


def model_inputs(static: Static, data: RunData, index: jax.Array | None = None) -> Any:
    """What the model reads for the examples `index` (all examples when None).

    A task whose rows are all pairs of its tokens (`Task.grid`, as every modular task): the pairs as
    two arrays, for all examples a (tokens, 1) and a (1, tokens) array that models broadcast, so the
    hidden layer over the grid is a sum, not a gather (`models.call` stacks them into rows for a
    model that takes rows only). Other tasks: the rows of `Task.inputs`, (examples, arity), or of the run's
    own draw.
    """
    task = task_of(static)
    if data.inputs is not None:
        return data.inputs if index is None else data.inputs[index]
    if task.grid:
        if index is None:
            tokens = jnp.arange(task.num_tokens, dtype=jnp.int32)
            return tokens[:, None], tokens[None, :]
        return index // task.num_tokens, index % task.num_tokens
    inputs = jnp.asarray(task.inputs)
    return inputs if index is None else inputs[index]


def minibatch(static: Static, data: RunData, key: jax.Array, step: jax.Array, n_train: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(examples, weights) of step `step`'s batch: epochs of the run's training set in random order.

    As in the paper's code: each epoch is a fresh permutation of the training set,
    cut into n_train // batch_size batches (the remainder is left out). With fewer
    training examples than the batch size, the batch is the whole training set and
    the missing slots get weight 0.
    """
    size = static.batch_size
    per_epoch = jnp.maximum(n_train // size, 1)
    epoch, batch = step // per_epoch, step % per_epoch
    q = batch * size + jnp.arange(size)
    weights = q < n_train
    q = jnp.where(weights, q, 0).astype(jnp.uint32)
    rank = permuted_position(q, jax.random.fold_in(key, epoch), n_train)
    return data.order[rank.astype(jnp.int32)], weights
