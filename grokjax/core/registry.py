"""The doors: a task or model named in a sweep file, built in or the user's own, found and built the same way.

A built-in name is an alias of an import path in grokjax ("modular_addition" is
"grokjax.core.builtin_tasks:modular_addition", "mlp" is "grokjax.core.models:MLP"); any other name
is the user's "package.module:attribute". Both are imported, called with the sweep file's keys
and checked alike, so a test that runs over the built-ins can run over the user's (docs/extending.md).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from typing import Any

import numpy as np

from grokjax.config.fields import MODELS, TASKS
from grokjax.config.sweep_file import ConfigError
from grokjax.core.types import Fourier, Static, Task

BUILTIN_TASKS = {name: f"grokjax.core.builtin_tasks:{name}" for name in TASKS}
BUILTIN_MODELS = {"mlp": "grokjax.core.models:MLP", "pair_mlp": "grokjax.core.models:PairMLP",
                  "parity_mlp": "grokjax.core.models:ParityMLP", "transformer": "grokjax.core.models:Transformer",
                  "nanda_transformer": "grokjax.core.models:NandaTransformer"}
assert set(BUILTIN_MODELS) == set(MODELS)
# grokjax's own [task] fields that a task function receives when it takes them (by parameter name).
TASK_FIELDS = ("p", "symmetric", "n_bits", "k_bits", "test_size", "pool_size")


def import_path(kind: str, name: str) -> str:
    """The import path a [task] or [model] name stands for."""
    return {"task": BUILTIN_TASKS, "model": BUILTIN_MODELS}[kind].get(name, name)


def resolve(kind: str, name: str, source: str = "<config>") -> Any:
    """The object `name` stands for: a task function (kind "task") or a Module class ("model")."""
    path = import_path(kind, name)
    module_name, _, attribute = path.partition(":")
    where = f'{source}: {kind}.name = "{name}"'
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 (the user's module may raise anything on import)
        raise ConfigError(f"{where}: cannot import {module_name} ({_first_line(err)}); allowed: a module on "
                          "Python's path (pip install -e your package, or set PYTHONPATH)") from None
    if not hasattr(module, attribute):
        raise ConfigError(f"{where}: {module_name} has no attribute '{attribute}'")
    found = getattr(module, attribute)
    if kind == "task" and not (callable(found) and not isinstance(found, type)):
        raise ConfigError(f"{where}: {path} is a {type(found).__name__}; allowed: a function that returns a "
                          "grokjax.Task")
    if kind == "model":
        import flax.linen as nn

        if not (isinstance(found, type) and issubclass(found, nn.Module)):
            raise ConfigError(f"{where}: {path} is not a flax.linen.Module class; allowed: a Module class")
    return found


def task_key(static: Static) -> tuple[Any, ...]:
    """What a task's examples depend on: the name, its keys, and grokjax's task fields."""
    return (static.task, static.task_args, *(getattr(static, f) for f in TASK_FIELDS))


def task_of(static: Static) -> Task:
    """The task of a static config, built once per process."""
    return _built_task(task_key(static))


@functools.lru_cache(maxsize=64)
def _built_task(key: tuple[Any, ...]) -> Task:
    name, args, *values = key
    return build_task(name, dict(args), dict(zip(TASK_FIELDS, values)))


def build_task(name: str, args: dict[str, Any], fields: dict[str, Any], source: str = "<config>") -> Task:
    """Call the task function `name` with `args` (the [task] keys grokjax does not define) and those of grokjax's
    task `fields` it takes; check what it returns (`checked_task`)."""
    function = resolve("task", name, source)
    where = f'{source}: task.name = "{name}"'
    kwargs = {**{k: v for k, v in fields.items() if _takes(function, k, strict=True)}, **args}
    for key in args:
        if not _takes(function, key):
            raise ConfigError(f"{source}: task.{key}: {import_path('task', name)} takes no '{key}'; it takes: "
                              + _parameters(function))
    missing = [k for k, p in inspect.signature(function).parameters.items()
               if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               and k not in kwargs]
    if missing:
        raise ConfigError(f"{where}: its '{missing[0]}' is not given; allowed: write task.{missing[0]} in [task]")
    try:
        task = function(**kwargs)
    except ValueError as err:  # an expression refused, say: the message names what is allowed
        raise ConfigError(f"{where}: {_first_line(err)}") from None
    except Exception as err:  # noqa: BLE001 (the user's function may raise anything)
        raise ConfigError(f"{where}: it raised {type(err).__name__}: {_first_line(err)}") from None
    return checked_task(task, where)


def checked_task(task: Any, where: str) -> Task:
    """`task` with canonical dtypes (int32 inputs and labels, labels 0 on rows that are not examples), or one line
    saying what is wrong with it."""
    if not isinstance(task, Task):
        raise ConfigError(f"{where}: it returned {type(task).__name__}; allowed: a grokjax.Task")

    def fail(what: str) -> None:
        raise ConfigError(f"{where}: the Task's {what}")

    for count in ("num_tokens", "num_classes"):
        value = getattr(task, count)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            fail(f"{count} = {value!r}; allowed: an integer >= 1")
    inputs, labels = np.asarray(task.inputs), np.asarray(task.labels)
    if inputs.ndim != 2 or inputs.dtype.kind not in "iu" or not inputs.shape[0] or not inputs.shape[1]:
        fail(f"inputs have shape {inputs.shape} and dtype {inputs.dtype}; allowed: integers, shape (examples, arity)")
    if labels.shape != (inputs.shape[0],) or labels.dtype.kind not in "iu":
        fail(f"labels have shape {labels.shape} and dtype {labels.dtype}; allowed: integers, shape ({inputs.shape[0]},)")
    valid = np.ones(len(labels), bool) if task.valid is None else np.asarray(task.valid)
    if valid.shape != labels.shape or valid.dtype != bool or not valid.any():
        fail(f"valid has shape {valid.shape} and dtype {valid.dtype}; allowed: booleans, shape ({len(labels)},), "
             "some true")
    if inputs.min() < 0 or inputs.max() >= task.num_tokens:
        fail(f"inputs run from {inputs.min()} to {inputs.max()}; allowed: 0 .. num_tokens - 1 = {task.num_tokens - 1}")
    kept = labels[valid]
    if kept.min() < 0 or kept.max() >= task.num_classes:
        fail(f"labels run from {kept.min()} to {kept.max()}; allowed: 0 .. num_classes - 1 = {task.num_classes - 1}")
    if task.draw is not None and not callable(task.draw):
        fail(f"draw is a {type(task.draw).__name__}; allowed: a function of a data key, or None")
    size = task.test_size
    if size is not None and (not isinstance(size, (int, np.integer)) or isinstance(size, bool)
                             or not 1 <= size < len(labels)):
        fail(f"test_size = {size!r}; allowed: None, or an integer from 1 to examples - 1 = {len(labels) - 1}")
    return Task(inputs=inputs.astype(np.int32), labels=np.where(valid, labels, 0).astype(np.int32),
                num_tokens=int(task.num_tokens), num_classes=int(task.num_classes), valid=valid,
                cyclic=bool(task.cyclic), draw=task.draw, test_size=None if size is None else int(size),
                fourier=None if task.fourier is None else _checked_fourier(task, fail))


def _checked_fourier(task: Task, fail: Any) -> Fourier:
    """The Task's Fourier group with int64 arrays, or one line saying what is wrong with it."""
    order = task.fourier.order
    if task.draw is not None:
        fail("fourier with a draw; allowed: one or the other (the measures need every run's rows alike)")
    if not isinstance(order, (int, np.integer)) or isinstance(order, bool) or order < 3:
        fail(f"fourier.order = {order!r}; allowed: an integer >= 3")
    index, tokens = np.asarray(task.fourier.index), np.asarray(task.fourier.tokens)
    for name, array, length in (("index", index, task.examples), ("tokens", tokens, task.num_tokens)):
        if array.shape != (length,) or array.dtype.kind not in "iu" or array.min() < -1 or array.max() >= order:
            fail(f"fourier.{name} has shape {array.shape}, dtype {array.dtype}; allowed: integers from -1 to "
                 f"order - 1 = {order - 1}, shape ({length},)")
    counts = np.bincount(index[index >= 0], minlength=order)
    if counts.min() == 0 or counts.min() != counts.max():
        fail(f"fourier.index holds the elements of Z_{order} from {counts.min()} to {counts.max()} times; allowed: "
             "each element as often as every other (a full grid, so components are projections)")
    return Fourier(index=index.astype(np.int64), order=int(order), tokens=tokens.astype(np.int64))


def model_fields(cls: type) -> tuple[str, ...]:
    """The fields a Module class is built with (its dataclass fields but Flax's own parent and name)."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent", "name"))


def _takes(function: Any, key: str, strict: bool = False) -> bool:
    """Whether `function` takes the keyword `key` (by name; with **kwargs, any unless `strict`)."""
    parameters = inspect.signature(function).parameters
    if key in parameters:
        return parameters[key].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return not strict and any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _parameters(function: Any) -> str:
    names = [k for k, p in inspect.signature(function).parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    return ", ".join(names) or "no keys"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return line if len(line) <= 200 else line[:197] + "..."
