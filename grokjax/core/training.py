"""One training run as pure functions: init from keys, then segments of `log_every` steps.

A run is its `Static` config and its `Hparams` (`core/types.py`), so a sweep over the
latter is one program `jit(vmap(...))` and new values never recompile. `train_segment` is one logged
step: a `lax.scan` over `log_every` optimizer steps, then the metrics of that
step, taken in evaluation mode (no dropout, BatchNorm's running statistics) on
every example. `grokjax.engine.runner` compiles and drives it.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from grokjax.config.fields import LATE_TRACED
from grokjax.core import analysis, methods, models
from grokjax.core.metrics import evaluate, example_losses, masked_mean
from grokjax.core.tasks import RunData, make_run_data, minibatch, model_inputs, num_examples
from grokjax.core.types import HPARAM_DTYPES, Hparams, Static


class RunState(NamedTuple):
    params: Any
    model_state: Any  # {"batch_stats": ...} with BatchNorm, else {}
    opt_state: Any
    data: RunData


def l1_decay(weight_decay: jax.Array) -> optax.GradientTransformation:
    """Add weight_decay * sign(theta) to the updates: the subgradient of weight_decay * |theta|_1."""
    return optax.stateless(lambda updates, params: jax.tree.map(lambda u, w: u + weight_decay * jnp.sign(w), updates, params))


def learning_rate(static: Static, lr: jax.Array) -> Any:
    """The run's learning rate, or its schedule over the optimizer's steps: a linear warmup from 0 over
    `warmup_steps`, then constant, or cosine down to 0 at the last step. Optax's schedule of a peak 1 times
    the run's rate: its constructors test their values in Python, which a traced rate cannot be."""
    if static.schedule == "constant" and not static.warmup_steps:
        return lr
    warmup = static.warmup_steps
    if static.schedule == "cosine":
        shape = (optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, max(static.steps, warmup + 1), 0.0) if warmup
                 else optax.cosine_decay_schedule(1.0, static.steps))
    else:
        shape = optax.join_schedules([optax.linear_schedule(0.0, 1.0, warmup), optax.constant_schedule(1.0)], [warmup])
    return lambda count: lr * shape(count)


def make_optimizer(static: Static, hp: Hparams) -> optax.GradientTransformation:
    """Optax optimizer with PyTorch's weight-decay conventions, for L2 and L1 alike.

    adamw: decoupled, theta <- theta - lr * (adam step + wd * theta) for L2 (optax.adamw,
    as torch.optim.AdamW), or + wd * sign(theta) for L1.
    adam, sgd: coupled, wd * theta (L2) or wd * sign(theta) (L1) added to the gradient
    before the optimizer (as torch.optim.Adam / SGD; L1 as the PAIR explorable's code).
    Any other name: that Optax optimizer (`optax_optimizer`).
    Weight decay acts on the parameters the model chooses (`models.decayed`). Grokfast and ⊥Grad, where the runs
    use them, act on the raw gradients first, in that order (`grokjax.core.methods`).
    """
    base = base_optimizer(static, hp)
    first = [grokfast_filter(static, hp)] if static.has_grokfast else []
    first += [methods.orthograd()] if static.orthograd else []
    return optax.chain(*first, base) if first else base


def grokfast_filter(static: Static, hp: Hparams) -> optax.GradientTransformation:
    """Grokfast's filter of the raw gradients: the moving average (EMA) or the window's mean (MA)."""
    if static.grokfast_filter == "ma":
        return methods.grokfast_ma(static.grokfast_window, hp.grokfast_lambda)
    return methods.grokfast_ema(hp.grokfast_alpha, hp.grokfast_lambda)


def base_optimizer(static: Static, hp: Hparams) -> optax.GradientTransformation:
    """The optimizer and its weight decay (`make_optimizer`)."""
    b1, b2 = static.betas
    lr, wd = learning_rate(static, hp.learning_rate), hp.weight_decay
    decay = l1_decay(wd) if static.regularization == "l1" else optax.add_decayed_weights(wd)
    if not models.decays_all(static):
        decay = optax.masked(decay, functools.partial(models.decayed, static))
    if static.optimizer == "adamw":
        return optax.chain(optax.scale_by_adam(b1=b1, b2=b2, eps=1e-8), decay, optax.scale_by_learning_rate(lr))
    if static.optimizer == "adam":
        return optax.chain(decay, optax.adam(lr, b1=b1, b2=b2, eps=1e-8))
    if static.optimizer == "sgd":
        return optax.chain(decay, optax.sgd(lr, momentum=hp.momentum))
    return optax_optimizer(static, hp, lr, decay)


def optax_optimizer(static: Static, hp: Hparams, lr: Any, decay: optax.GradientTransformation) -> optax.GradientTransformation:
    """`optax.<optimizer>` with the sweep file's own keys, through `optax.inject_hyperparams`: its float keys are
    per-run numbers (`hp.optimizer`), held in the optimizer's state, so new values never recompile; the rest are
    static. Weight decay: the optimizer's own `weight_decay` where it has one (with L2; masked as the model
    chooses), else added to the gradient before it (coupled, as adam and sgd)."""
    function = getattr(optax, static.optimizer)
    numbers = dict(hp.optimizer or {})
    statics = {k: v for k, v in static.optimizer_args if v is not None}
    takes = inspect.signature(function).parameters
    own_decay = "weight_decay" in takes and static.regularization == "l2"
    if own_decay:
        numbers["weight_decay"] = hp.weight_decay
        if "mask" in takes and not models.decays_all(static):
            statics["mask"] = functools.partial(models.decayed, static)
    optimizer = optax.inject_hyperparams(function, static_args=tuple(statics))(learning_rate=lr, **numbers, **statics)
    return optimizer if own_decay else optax.chain(decay, optimizer)


def hparam_shapes(static: Static) -> Hparams:
    """One run's per-run numbers as shapes, as `runs_table.hparams` gives them to these runs: Grokfast's only where
    they use it, an Optax optimizer's own floats where it has some."""
    shape = {name: jax.ShapeDtypeStruct((), dtype) for name, dtype in zip(Hparams._fields, HPARAM_DTYPES)
             if dtype is not None}
    if not static.has_grokfast:
        shape = {k: v for k, v in shape.items() if k not in LATE_TRACED}
    own = {k: jax.ShapeDtypeStruct((), jnp.float32) for k, v in static.optimizer_args if v is None}
    return Hparams(**shape, optimizer=own or None)


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


FORMULATIONS = {
    "gather": "full batch: the run's training examples gathered (train_slots of them); gradients of lookups scatter-add",
    "onehot": "as gather, with the mlp's first layer a one-hot matmul, as the paper's code (gradient: a matmul)",
    "grid": "full batch: every example computed (for the mlp, the broadcast p x p grid), the loss masked",
}

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
        out = models.call(model, variables, inputs, **kwargs)
    if isinstance(out, tuple):
        return out[0].astype(jnp.float32), out[1]
    return out.astype(jnp.float32)


def step_examples(static: Static) -> int:
    """Examples one training step computes per run: a minibatch, the gathered training slots, or all."""
    gathered = static.train_slots if static.formulation != "grid" else 0
    return static.batch_size or gathered or num_examples(static)


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
        elif static.train_slots and static.formulation != "grid":
            index, mask = training_slots(static, data, hp.n_train)
        else:  # all examples (for the mlp, the broadcast grid), the loss masked to the training set
            index, mask = None, data.train
        inputs, labels = model_inputs(static, data, index), data.labels if index is None else data.labels[index]
        logits, new_state = apply_model(
            static, model, {"params": params, **model_state}, inputs, train=True, rate=hp.dropout, mask=mask,
            rngs={"dropout": jax.random.fold_in(dropout_key, t)}, mutable=list(model_state),
        )
        return masked_mean(example_losses(logits, labels, static.loss, static.loss_precision), mask), new_state

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
    metrics = evaluate(logits, data, params, static.loss, static.loss_precision)
    metrics["ipr_mean"] = analysis.ipr_mean(static, params) if analysis.has_neurons(static) else jnp.float32(jnp.nan)
    return RunState(params, model_state, opt_state, data), metrics
