"""One training run as pure functions: init from keys, then segments of `log_every` steps.

`Static` holds what changes shapes or code paths (one compiled program each);
`Hparams` holds per-run numbers as arrays, so a sweep over them is one program
`jit(vmap(...))` and new values never recompile. The host calls `segment`
once per logged step: a `lax.scan` over `log_every` optimizer steps, then the
metrics of that step, taken in evaluation mode (no dropout, BatchNorm's running
statistics) on every example.
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
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from grokjax import analysis, models
from grokjax.metrics import evaluate, example_losses, masked_mean
from grokjax.tasks import RunData, make_run_data, minibatch, model_inputs


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
    symmetric: bool = False
    n_bits: int = 30
    k_bits: int = 3
    test_size: int = 1000
    pool_size: int = 3000
    depth: int = 2
    norm: str = "none"
    has_dropout: bool = False  # any dropout > 0; runs at rate 0 use the program without it
    embed_size: int = 128
    heads: int = 4
    tied_embedding: bool = False
    regularization: str = "l2"
    batch_size: int = 0
    ipr_every: int = 0  # host side only: when per-neuron statistics are taken (see train)
    train_slots: int = 0  # full batch: training examples gathered per step; 0: all examples, loss masked
    precision: str = "float32"  # see PRECISIONS

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
    dropout: Any = 0.0
    momentum: Any = 0.0


HPARAM_DTYPES = Hparams(
    seed=np.int32,
    data_seed=np.int32,
    weight_decay=np.float32,
    learning_rate=np.float32,
    init_scale=np.float32,
    n_train=np.int32,
    n_corrupt=np.int32,
    dropout=np.float32,
    momentum=np.float32,
)


class RunState(NamedTuple):
    params: Any
    model_state: Any  # {"batch_stats": ...} with BatchNorm, else {}
    opt_state: Any
    data: RunData


def l1_decay(weight_decay: jax.Array) -> optax.GradientTransformation:
    """Add weight_decay * sign(theta) to the updates: the subgradient of weight_decay * |theta|_1."""
    return optax.stateless(lambda updates, params: jax.tree.map(lambda u, w: u + weight_decay * jnp.sign(w), updates, params))


def make_optimizer(static: Static, hp: Hparams) -> optax.GradientTransformation:
    """Optax optimizer with PyTorch's weight-decay conventions, for L2 and L1 alike.

    adamw: decoupled, theta <- theta - lr * (adam step + wd * theta) for L2 (optax.adamw,
    as torch.optim.AdamW), or + wd * sign(theta) for L1.
    adam, sgd: coupled, wd * theta (L2) or wd * sign(theta) (L1) added to the gradient
    before the optimizer (as torch.optim.Adam / SGD; L1 as the PAIR explorable's code).
    """
    b1, b2 = static.betas
    lr, wd = hp.learning_rate, hp.weight_decay
    decay = l1_decay(wd) if static.regularization == "l1" else optax.add_decayed_weights(wd)
    if static.optimizer == "adamw":
        return optax.chain(optax.scale_by_adam(b1=b1, b2=b2, eps=1e-8), decay, optax.scale_by_learning_rate(lr))
    if static.optimizer == "adam":
        return optax.chain(decay, optax.adam(lr, b1=b1, b2=b2, eps=1e-8))
    return optax.chain(decay, optax.sgd(lr, momentum=hp.momentum))


def run_keys(seed: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(params, dropout, batches) keys of a run, all from its seed."""
    key = jax.random.key(seed)
    return jax.random.fold_in(key, 0), jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)


def init_run(static: Static, hp: Hparams) -> RunState:
    """A run's data split and initial weights, from its data_seed and seed."""
    data = make_run_data(static, jax.random.key(hp.data_seed), hp.n_train, hp.n_corrupt)
    variables = models.init(static, run_keys(hp.seed)[0], hp.init_scale)
    params = variables.pop("params")
    opt_state = make_optimizer(static, hp).init(params)
    return RunState(params, variables, opt_state, data)


PRECISIONS = {  # train.precision: (matmul precision, compute dtype); weights and optimizer stay float32
    "float32": ("float32", jnp.float32),
    "tf32": ("tensorfloat32", jnp.float32),
    "bfloat16": ("bfloat16", jnp.bfloat16),
}


def apply_model(static: Static, model: Any, variables: dict[str, Any], inputs: Any, **kwargs: Any) -> Any:
    """model.apply at the run's precision; logits come back float32 (loss and metrics are float32)."""
    matmul, dtype = PRECISIONS[static.precision]
    if dtype != jnp.float32:
        variables = {**variables, "params": jax.tree.map(lambda w: w.astype(dtype), variables["params"])}
    with jax.default_matmul_precision(matmul):
        out = model.apply(variables, inputs, **kwargs)
    if isinstance(out, tuple):
        return out[0].astype(jnp.float32), out[1]
    return out.astype(jnp.float32)


def training_slots(static: Static, data: RunData, n_train: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(examples, weights) of a full-batch step: the run's training set, gathered.

    The training set is the first n_train examples of the run's order; the step
    gathers the first `train_slots` (the largest n_train of its chunk, rounded up)
    and weights the ones past n_train 0. So forward and backward passes run on training examples
    only, never on the test set, which is evaluated once per logged step.
    """
    return data.order[: static.train_slots], jnp.arange(static.train_slots) < n_train


def train_segment(static: Static, state: RunState, hp: Hparams, start: jax.Array) -> tuple[RunState, dict[str, jax.Array]]:
    """Steps start .. start + log_every - 1 (those < steps), then the metrics after them."""
    model = models.build(static)
    tx = make_optimizer(static, hp)
    data = state.data
    _, dropout_key, batch_key = run_keys(hp.seed)

    def loss_fn(params: Any, model_state: Any, t: jax.Array) -> tuple[jax.Array, Any]:
        if static.batch_size:
            index, mask = minibatch(static, data, batch_key, t, hp.n_train)
        elif static.train_slots:
            index, mask = training_slots(static, data, hp.n_train)
        else:  # all examples (for the mlp, the broadcast grid), the loss masked to the training set
            index, mask = None, data.train
        inputs, labels = model_inputs(static, data, index), data.labels if index is None else data.labels[index]
        logits, new_state = apply_model(
            static, model, {"params": params, **model_state}, inputs, train=True, rate=hp.dropout, mask=mask,
            rngs={"dropout": jax.random.fold_in(dropout_key, t)}, mutable=list(model_state),
        )
        return masked_mean(example_losses(logits, labels, static.loss), mask), new_state

    def update(carry: tuple[Any, Any, Any], t: jax.Array) -> tuple[Any, Any, Any]:
        params, model_state, opt_state = carry
        grads, model_state = jax.grad(loss_fn, has_aux=True)(params, model_state, t)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), model_state, opt_state

    def step(carry: tuple[Any, Any, Any], t: jax.Array) -> tuple[tuple[Any, Any, Any], None]:
        # t is shared by all runs of a chunk, so under vmap this stays a real branch.
        return jax.lax.cond(t < static.steps, update, lambda c, t: c, carry, t), None

    steps = start + jnp.arange(static.log_every)
    (params, model_state, opt_state), _ = jax.lax.scan(step, (state.params, state.model_state, state.opt_state), steps)
    logits = apply_model(
        static, model, {"params": params, **model_state}, model_inputs(static, data), train=False, rate=hp.dropout, mask=None
    )
    metrics = evaluate(logits, data, params, static.loss)
    metrics["ipr_mean"] = analysis.ipr_mean(params) if analysis.has_neurons(static) else jnp.float32(jnp.nan)
    return RunState(params, model_state, opt_state, data), metrics


def local_mesh() -> Mesh:
    """A one-axis mesh, "runs", over this process's devices: a chunk's runs are split across them."""
    return Mesh(np.array(jax.local_devices()), ("runs",))


def shard_runs(hp: Any, mesh: Mesh) -> Any:
    """Place a chunk's per-run arrays across the mesh (its length must be a multiple of the device count).

    Everything computed from them (data, weights, optimizer state, metrics) follows
    that placement, since each run's computation reads only its own row.
    """
    return jax.device_put(hp, NamedSharding(mesh, PartitionSpec("runs")))


def run_block() -> int:
    """Runs computed side by side within a chunk: 8 on a single CPU device, else the whole chunk (0).

    On a CPU, XLA vectorizes an array of all the chunk's runs as one, so which elements fall
    in a vector's scalar tail (and get exp and log from another code path) depends on how
    many runs there are. Blocks of a fixed number of runs (`lax.map` over vmapped blocks)
    make a run's arithmetic the same whatever the chunk size. On accelerators (not yet
    checked for this) and when sharding over several devices, runs are plainly vmapped.
    """
    return RUN_BLOCK if jax.local_devices()[0].platform == "cpu" and jax.local_device_count() == 1 else 0


RUN_BLOCK = 8  # on CPU also about the fastest: 7,823 run-steps/s against 7,130 for 16 at the quickstart's size


@functools.lru_cache(maxsize=None)
def neuron_table() -> Callable:
    """Per-neuron statistics over a chunk's runs, in the same blocks of runs as training."""
    block = run_block()
    if not block:
        return analysis.neuron_table
    return jax.jit(lambda params: jax.lax.map(analysis.neuron_stats, params, batch_size=block))


@functools.lru_cache(maxsize=None)
def compiled(static: Static, vectorized: bool = True) -> tuple[Callable, Callable]:
    """(init, segment) jitted for one static config; over a leading run axis unless vectorized=False.

    Over runs: vmapped, in blocks of `run_block()` runs when it is set (the run count
    must then be a multiple of it).
    """
    init = functools.partial(init_run, static)
    segment = functools.partial(train_segment, static)
    if vectorized:
        block = run_block()
        init = jax.vmap(init)
        if block:
            single = segment
            segment = lambda state, hp, start: jax.lax.map(lambda run: single(*run, start), (state, hp), batch_size=block)  # noqa: E731
        else:
            segment = jax.vmap(segment, in_axes=(0, 0, None))
    return jax.jit(init), jax.jit(segment)


class Trained(NamedTuple):
    """What train(..., final=True) returns."""

    logs: dict[str, np.ndarray]  # metrics, shape (logs, runs)
    params: Any  # trained parameters, leading run axis
    neurons: list[tuple[int, dict[str, np.ndarray]]]  # (step, per-neuron statistics (runs, width)); [] if none


class Progress(NamedTuple):
    """Runs part-way through training, on the host: what a segment checkpoint holds."""

    next_log: int  # index of the next logged step to train
    state: RunState
    logs: list[dict[str, np.ndarray]]
    neurons: list[tuple[int, dict[str, np.ndarray]]]


def train(
    static: Static,
    hp: Hparams,
    vectorized: bool = True,
    on_segment: Callable[[int, Callable[[], Progress]], None] | None = None,
    final: bool = False,
    resume: Progress | None = None,
) -> Any:
    """Train runs to the end; metrics stacked over logged steps, shape (logs, runs) or (logs,).

    Vectorized, the runs are split over this process's devices (see `shard_runs`), so
    their number must be a multiple of the device count. `on_segment(i, progress)` is
    called after logged step i has reached the host; `progress()` fetches a `Progress`
    to checkpoint, and `resume=` continues from one exactly as if never stopped. With
    final=True, return a `Trained`: also the trained parameters and, for models
    where `analysis.has_neurons`, per-neuron statistics at the last step and every
    `ipr_every` steps.
    """
    init, segment = compiled(static, vectorized)
    neuron_fn = neuron_table() if vectorized else analysis.neuron_stats_jit
    take_neurons = final and analysis.has_neurons(static)
    if vectorized:
        hp = shard_runs(hp, local_mesh())
    if resume is None:
        first, state, logs, neurons = 0, init(hp), [], []
    else:
        first, state, logs, neurons = resume.next_log, resume.state, list(resume.logs), list(resume.neurons)
        state = shard_runs(state, local_mesh()) if vectorized else jax.device_put(state)
    for i in range(first, len(static.logged_steps)):
        step = static.logged_steps[i]
        state, metrics = segment(state, hp, i * static.log_every)
        logs.append(jax.device_get(metrics))
        last = step == static.steps
        if take_neurons and (last or (static.ipr_every and step % static.ipr_every == 0)):
            neurons.append((step, jax.device_get(neuron_fn(state.params))))
        if on_segment is not None:
            on_segment(i, lambda i=i, state=state: Progress(i + 1, jax.device_get(state), list(logs), list(neurons)))
    stacked = {key: np.stack([log[key] for log in logs]) for key in logs[0]}
    return Trained(stacked, state.params, neurons) if final else stacked
