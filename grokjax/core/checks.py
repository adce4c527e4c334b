"""A task, model and optimizer checked before a sweep writes anything: built once and traced on two examples, so
that a user's function, Module or Optax optimizer that cannot run is refused in one line naming the file and the
key."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from grokjax.config.fields import OPTIMIZERS
from grokjax.config.sweep_file import ConfigError
from grokjax.core import models, registry, training
from grokjax.core.tasks import shape_of
from grokjax.core.types import Hparams, Static


def task_and_model(source: str, static: Static) -> None:
    """Raise ConfigError unless the task builds into a valid `Task` and the model is built with what it takes and
    maps two examples' inputs to logits of shape (2, num_classes)."""
    fields = {f: getattr(static, f) for f in registry.TASK_FIELDS}
    task = registry.build_task(static.task, dict(static.task_args), fields, source)
    if task.draw is not None:
        _drawn(task, f'{source}: task.name = "{static.task}"')
    cls = registry.resolve("model", static.model, source)
    where = f'{source}: model.name = "{static.model}"'
    fields = registry.model_fields(cls)
    for key, _ in static.model_args:
        if key not in fields:
            raise ConfigError(f"{source}: model.{key}: {registry.import_path('model', static.model)} has no field "
                              f"'{key}'; its fields are: " + (", ".join(fields) or "none"))
    given = {*dict(static.model_args), "num_tokens", "num_classes", "arity", *models.MODEL_FIELDS, *models.DERIVED}
    for f in dataclasses.fields(cls):
        if f.init and f.name in fields and f.name not in given and f.default is dataclasses.MISSING \
                and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: its field '{f.name}' is not given; allowed: write model.{f.name} in [model]")
    if static.has_dropout and "rate" not in models.keywords(cls):
        raise ConfigError(f"{where}: model.dropout > 0, but its __call__ takes no 'rate'; allowed: dropout = 0 (a "
                          "module of your own draws its own dropout from the \"dropout\" rng)")
    if static.optimizer not in OPTIMIZERS:
        optimizer(source, static)
    logits = _traced(static, where)
    classes = shape_of(static)[1]
    if getattr(logits, "shape", None) != (2, classes) or not jnp.issubdtype(logits.dtype, jnp.floating):
        raise ConfigError(f"{where}: on 2 examples it returned {_described(logits)}; allowed: float logits of shape "
                          f"(2, {classes}) (batch, num_classes)")


def optimizer(source: str, static: Static) -> None:
    """Raise ConfigError unless `train.optimizer` names an Optax optimizer that takes a learning rate and the keys
    the sweep file gives it, and whose update traces on the model's parameters."""
    name = static.optimizer
    where = f'{source}: train.optimizer = "{name}"'
    function = getattr(optax, name, None)
    if not callable(function) or isinstance(function, type) or "learning_rate" not in _parameters(function):
        raise ConfigError(f"{where}: not an Optax optimizer; allowed: adamw, adam, sgd, or the name of an Optax "
                          "function that takes a learning_rate (lion, rmsprop, adafactor, lamb, ...)")
    for key, _ in static.optimizer_args:
        if key not in _parameters(function) or key in ("learning_rate", "weight_decay", "mask"):
            taken = [k for k in _parameters(function) if k not in ("learning_rate", "weight_decay", "mask")]
            raise ConfigError(f"{source}: train.{key}: optax.{name} takes no '{key}' of yours (learning_rate and "
                              f"weight_decay are grokjax's fields); it takes: {', '.join(taken)}")
    hp = training.hparam_shapes(static)

    def step(hp: Hparams) -> Any:
        params = models.init(static, jax.random.key(0), jnp.float32(1.0))["params"]
        tx = training.make_optimizer(static, hp)
        return tx.update(params, tx.init(params), params)

    try:
        jax.eval_shape(step, hp)
    except Exception as err:  # noqa: BLE001 (Optax raises what it raises on a bad hyperparameter)
        text = str(err).strip()
        raise ConfigError(f"{where}: it raised {type(err).__name__}: {(text.splitlines() or [''])[0][:200]}") from None


def _parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def _traced(static: Static, where: str) -> Any:
    """The logits' shape and dtype on two examples in training mode (nothing computed: `jax.eval_shape`)."""
    inputs = jnp.concatenate([models.example_inputs(static)] * 2)

    def forward() -> Any:
        variables = models.init(static, jax.random.key(0), jnp.float32(1.0))
        state = [c for c in variables if c != "params"]
        out = models.call(models.build(static), variables, inputs, train=True, rate=jnp.float32(0.0),
                          mask=jnp.ones(2, bool), rngs={"dropout": jax.random.key(1)}, mutable=state)
        return out[0]

    try:
        return jax.eval_shape(forward)
    except Exception as err:  # noqa: BLE001 (the user's module may raise anything)
        text = str(err).strip()
        line = text.splitlines()[0] if text else ""
        raise ConfigError(f"{where}: building or calling it raised {type(err).__name__}: {line[:200]}") from None


def _drawn(task: Any, where: str) -> None:
    """Raise ConfigError unless the task's draw traces on a data key into integer inputs and labels shaped as the
    Task's."""
    try:
        inputs, labels = jax.eval_shape(task.draw, jax.random.key(0))
    except Exception as err:  # noqa: BLE001 (the user's function may raise anything)
        raise ConfigError(f"{where}: its draw raised {type(err).__name__}: {str(err).strip()[:200]}") from None
    for name, got, want in (("inputs", inputs, task.inputs), ("labels", labels, task.labels)):
        if got.shape != want.shape or not jnp.issubdtype(got.dtype, jnp.integer):
            raise ConfigError(f"{where}: its draw returned {name} of {_described(got)}; allowed: integers of shape "
                              f"{want.shape}, as the Task's {name}")


def _described(value: Any) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"shape {tuple(value.shape)}, dtype {np.dtype(value.dtype)}"
    return f"a {type(value).__name__}"
