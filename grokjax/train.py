"""One training run as pure functions: init from keys, then segments of `log_every` steps.

`Static` holds what changes shapes or code paths (one compiled program each);
`Hparams` holds per-run numbers as arrays, so a sweep over them is one program
`jit(vmap(...))` and new values never recompile. The host calls `segment`
once per logged step: a `lax.scan` over `log_every` optimizer steps, then the
metrics of that step.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from grokjax.metrics import evaluate, example_losses, masked_mean
from grokjax.models import apply_mlp_grid, init_mlp
from grokjax.tasks import RunData, make_run_data, true_labels


@dataclass(frozen=True)
class Static:
    """The fields that shape the compiled program; runs that share them share one."""

    task: str
    p: int
    model: str
    width: int
    activation: str
    loss: str
    optimizer: str
    betas: tuple[float, float]
    steps: int
    log_every: int

    @property
    def logged_steps(self) -> list[int]:
        """Steps after which metrics are taken: every log_every, and the last."""
        n = math.ceil(self.steps / self.log_every)
        return [min((i + 1) * self.log_every, self.steps) for i in range(n)]


STATIC_FIELDS = tuple(Static.__dataclass_fields__)


class Hparams(NamedTuple):
    """Per-run numbers (traced); each field is a scalar, or a vector with a leading run axis."""

    seed: Any
    data_seed: Any
    weight_decay: Any
    learning_rate: Any
    init_scale: Any
    n_train: Any
    n_corrupt: Any


HPARAM_DTYPES = Hparams(
    seed=np.int32,
    data_seed=np.int32,
    weight_decay=np.float32,
    learning_rate=np.float32,
    init_scale=np.float32,
    n_train=np.int32,
    n_corrupt=np.int32,
)


class RunState(NamedTuple):
    params: dict[str, jax.Array]
    opt_state: Any
    data: RunData


def make_optimizer(static: Static, learning_rate: jax.Array, weight_decay: jax.Array) -> optax.GradientTransformation:
    """Optax optimizer with PyTorch's weight-decay conventions.

    adamw: decoupled, theta <- theta - lr * wd * theta (optax.adamw, as torch.optim.AdamW).
    adam, sgd: coupled L2, wd * theta added to the gradient (as torch.optim.Adam / SGD).
    """
    b1, b2 = static.betas
    if static.optimizer == "adamw":
        return optax.adamw(learning_rate, b1=b1, b2=b2, eps=1e-8, weight_decay=weight_decay)
    decay = optax.add_decayed_weights(weight_decay)
    if static.optimizer == "adam":
        return optax.chain(decay, optax.adam(learning_rate, b1=b1, b2=b2, eps=1e-8))
    return optax.chain(decay, optax.sgd(learning_rate))


def init_run(static: Static, hp: Hparams) -> RunState:
    """A run's data split and initial weights, from its data_seed and seed."""
    labels = jnp.asarray(true_labels(static.task, static.p))
    data = make_run_data(jax.random.key(hp.data_seed), hp.n_train, hp.n_corrupt, labels, static.p)
    params = init_mlp(jax.random.key(hp.seed), static.p, static.width, hp.init_scale)
    opt_state = make_optimizer(static, hp.learning_rate, hp.weight_decay).init(params)
    return RunState(params, opt_state, data)


def train_segment(static: Static, state: RunState, hp: Hparams, start: jax.Array) -> tuple[RunState, dict[str, jax.Array]]:
    """Steps start .. start + log_every - 1 (those < steps), then the metrics after them."""
    tx = make_optimizer(static, hp.learning_rate, hp.weight_decay)

    def loss_fn(params: dict[str, jax.Array]) -> jax.Array:
        logits = apply_mlp_grid(params, static.activation)
        return masked_mean(example_losses(logits, state.data.labels, static.loss), state.data.train)

    def update(carry: tuple[Any, Any]) -> tuple[Any, Any]:
        params, opt_state = carry
        grads = jax.grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def step(carry: tuple[Any, Any], t: jax.Array) -> tuple[tuple[Any, Any], None]:
        # t is shared by all runs of a chunk, so under vmap this stays a real branch.
        return jax.lax.cond(t < static.steps, update, lambda c: c, carry), None

    steps = start + jnp.arange(static.log_every)
    (params, opt_state), _ = jax.lax.scan(step, (state.params, state.opt_state), steps)
    logits = apply_mlp_grid(params, static.activation)
    return RunState(params, opt_state, state.data), evaluate(logits, state.data, params, static.loss)


@functools.lru_cache(maxsize=None)
def compiled(static: Static, vectorized: bool = True) -> tuple[Callable, Callable]:
    """(init, segment) jitted for one static config; vmapped over runs unless vectorized=False."""
    init = functools.partial(init_run, static)
    segment = functools.partial(train_segment, static)
    if vectorized:
        init, segment = jax.vmap(init), jax.vmap(segment, in_axes=(0, 0, None))
    return jax.jit(init), jax.jit(segment)


def train(static: Static, hp: Hparams, vectorized: bool = True, on_segment: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Train runs to the end; metrics stacked over logged steps, shape (logs, runs) or (logs,).

    `on_segment(i)` is called after logged step i has reached the host.
    """
    init, segment = compiled(static, vectorized)
    state = init(hp)
    logs: list[dict[str, np.ndarray]] = []
    for i in range(len(static.logged_steps)):
        state, metrics = segment(state, hp, i * static.log_every)
        logs.append(jax.device_get(metrics))
        if on_segment is not None:
            on_segment(i)
    return {key: np.stack([log[key] for log in logs]) for key in logs[0]}
