"""Ways to write one full-batch training step of the paper's MLP, timed against each other.

`python -m grokjax.bench --formulations` times the same runs with each (quadratic
activation, MSE, AdamW; vmapped over runs) and checks each gradient against the
grid's (equal to float32 rounding). The trainer uses the winner, gather
(`train.training_slots`), and the grid where gathering would save nothing;
docs/performance.md has the figures.

- grid: the hidden layer over all p^2 pairs as a broadcast sum U[m] + V[n], loss
  masked to the training set. No gather, but forward and backward also run on
  the test pairs: the useful fraction is the data fraction.
- gather: the training pairs are gathered (the run's first `slots` examples),
  so only they are computed; the embedding gradients are scatter-adds.
- gather_onehot: as gather, but the embedding gradient is a one-hot matmul
  (p x slots x width) instead of a scatter-add.
- expanded: the quadratic form expanded, (U[m] + V[n])^2 = U[m]^2 + V[n]^2 + 2 U[m] V[n],
  whose first two terms go through W once per token (p rows), not per pair.
- fused_loss: gather, with the MSE against a one-hot target written as
  |z|^2 - 2 z_y + 1, so no one-hot matrix is built.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax


def _mse(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
    targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    losses = jnp.mean(jnp.square(logits - targets), axis=-1)
    return jnp.sum(losses * weights) / jnp.sum(weights)


def grid(params: Any, run: dict[str, jax.Array]) -> jax.Array:
    p = params["U"].shape[0]
    h = (params["U"][:, None, :] + params["V"][None, :, :]).reshape(p * p, -1)
    logits = jnp.square(h) @ params["W"]
    return _mse(logits, run["labels"], run["train"].astype(logits.dtype))


def _slots(run: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    p = run["p"].shape[0]
    index = run["slots"]
    return index // p, index % p, run["labels"][index], run["slot_weights"]


def gather(params: Any, run: dict[str, jax.Array]) -> jax.Array:
    m, n, labels, weights = _slots(run)
    logits = jnp.square(params["U"][m] + params["V"][n]) @ params["W"]
    return _mse(logits, labels, weights)


@jax.custom_vjp
def _lookup(table: jax.Array, index: jax.Array) -> jax.Array:
    return table[index]


def _lookup_fwd(table: jax.Array, index: jax.Array) -> tuple[jax.Array, Any]:
    return table[index], (index, table.shape[0])


def _lookup_bwd(res: Any, g: jax.Array) -> tuple[jax.Array, None]:
    index, rows = res
    return jax.nn.one_hot(index, rows, dtype=g.dtype).T @ g, None


_lookup.defvjp(_lookup_fwd, _lookup_bwd)


def gather_onehot(params: Any, run: dict[str, jax.Array]) -> jax.Array:
    m, n, labels, weights = _slots(run)
    logits = jnp.square(_lookup(params["U"], m) + _lookup(params["V"], n)) @ params["W"]
    return _mse(logits, labels, weights)


def expanded(params: Any, run: dict[str, jax.Array]) -> jax.Array:
    m, n, labels, weights = _slots(run)
    U, V, W = params["U"], params["V"], params["W"]
    logits = (jnp.square(U) @ W)[m] + (jnp.square(V) @ W)[n] + (2.0 * U[m] * V[n]) @ W
    return _mse(logits, labels, weights)


def fused_loss(params: Any, run: dict[str, jax.Array]) -> jax.Array:
    m, n, labels, weights = _slots(run)
    logits = jnp.square(params["U"][m] + params["V"][n]) @ params["W"]
    picked = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    losses = (jnp.sum(jnp.square(logits), axis=-1) - 2.0 * picked + 1.0) / logits.shape[-1]
    return jnp.sum(losses * weights) / jnp.sum(weights)


FORMULATIONS: dict[str, Callable[[Any, dict[str, jax.Array]], jax.Array]] = {
    "grid": grid,
    "gather": gather,
    "gather_onehot": gather_onehot,
    "expanded": expanded,
    "fused_loss": fused_loss,
}


def make_trainer(loss: Callable, steps: int, weight_decay: float = 1.0, lr: float = 0.01) -> Callable:
    """jit(vmap(steps of AdamW on `loss`)) over runs: (params, runs) -> params."""
    tx = optax.adamw(lr, b1=0.9, b2=0.98, eps=1e-8, weight_decay=weight_decay)

    def one(params: Any, run: dict[str, jax.Array]) -> Any:
        def step(carry: Any, _: Any) -> tuple[Any, None]:
            params, opt_state = carry
            grads = jax.grad(loss)(params, run)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
        return params

    return jax.jit(jax.vmap(one))


def make_runs(p: int, width: int, runs: int, data_fraction: float, seed: int = 0) -> tuple[Any, dict[str, jax.Array]]:
    """Initial weights (the paper's init) and data of `runs` runs of addition mod p, no corruption."""
    key = jax.random.key(seed)
    std = (16.0 * width) ** (-1.0 / 3.0)
    keys = jax.random.split(key, 4)
    params = {
        "U": std * jax.random.normal(keys[0], (runs, p, width)),
        "V": std * jax.random.normal(keys[1], (runs, p, width)),
        "W": std * jax.random.normal(keys[2], (runs, width, p)),
    }
    n_train = int(data_fraction * p * p)
    slots = -(-n_train // 8) * 8
    order = jax.vmap(lambda k: jax.random.permutation(k, p * p))(jax.random.split(keys[3], runs)).astype(jnp.int32)
    position = jax.vmap(lambda o: jnp.zeros(p * p, jnp.int32).at[o].set(jnp.arange(p * p, dtype=jnp.int32)))(order)
    pairs = jnp.arange(p * p)
    data = {
        "p": jnp.zeros((runs, p)),
        "labels": jnp.broadcast_to((pairs // p + pairs % p) % p, (runs, p * p)).astype(jnp.int32),
        "train": position < n_train,
        "slots": order[:, :slots],
        "slot_weights": jnp.broadcast_to(jnp.arange(slots) < n_train, (runs, slots)).astype(jnp.float32),
    }
    return params, data
