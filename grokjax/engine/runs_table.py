"""The sweep grid: one row per run, grouped by the static fields that need their own program.

Columns are the fields of [task], [model] and [train] under short names (task and
model for the two `name` fields, beta1 and beta2 for betas), in the product of the
sweep axes in file order; run_id numbers the rows in that order.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
from typing import Any

import numpy as np
import pandas as pd

from grokjax.config.fields import BY_KEY, LATE_TRACED, OPEN_COLUMNS, STATIC_COLUMNS, SWEEPABLE_TABLES, column_of
from grokjax.config.sweep_file import OPEN_TABLES, ConfigError, SweepConfig, check_run
from grokjax.core import checks
from grokjax.core.registry import TASK_FIELDS, task_of
from grokjax.core.tasks import corrupt_count, split_counts
from grokjax.core.types import HPARAM_DTYPES, Hparams, Static
from grokjax.store.results import RUN_COLUMNS


def expand(config: SweepConfig) -> pd.DataFrame:
    """All runs of the sweep as a DataFrame, with their exact split sizes.

    With train.batch_scaling = "appendix_a" and a batch size, the run's steps and
    log_every are multiplied by 256 / batch_size (same epochs, same logged epochs)
    and its learning rate by sqrt(batch_size / 256); the columns hold the values used.
    The keys of an open task or model (`[task] expression = ...`) are the columns task_args and
    model_args, as JSON objects. Every task and model is built once here (`checks.task_and_model`),
    so that one that cannot be is refused before anything is written.
    """
    base: dict[str, Any] = {}
    args: dict[str, dict[str, Any]] = {}
    for table in SWEEPABLE_TABLES:
        values = dataclasses.asdict(getattr(config, table))
        args[table] = dict(values.pop("args", ()))
        for key in args[table]:
            if key in RUN_COLUMNS:
                raise ConfigError(f"{config.source}: {table}.{key}: '{key}' is a runs.parquet column of grokjax's "
                                  "own; allowed: another name for your key")
        for key, value in values.items():
            base[column_of(f"{table}.{key}")] = value
    rows = []
    for combo in itertools.product(*(values for _, values in config.axes)):
        row, own = dict(base), {t: dict(a) for t, a in args.items()}
        for key, value in zip((k for k, _ in config.axes), combo):
            table, _, name = key.partition(".")
            if f"{table}.{name}" in BY_KEY:
                row[column_of(key)] = value
            else:
                own[table][name] = value
        for table, column in zip(OPEN_TABLES, OPEN_COLUMNS):
            static = {k: (None if table == "train" and isinstance(v, float) else v) for k, v in own[table].items()}
            row[column] = json.dumps(static, sort_keys=True)  # an optimizer's floats: per-run numbers (null)
        # each key a column of its own too; a list as its JSON text, so that it groups, facets and compares as one value
        row.update({k: json.dumps(list(v)) if isinstance(v, (list, tuple)) else v
                    for t in OPEN_TABLES for k, v in own[t].items()})
        check_run(config.source, row)
        rows.append(_scaled(row))
    runs = pd.DataFrame(rows)
    runs.insert(0, "run_id", np.arange(len(runs), dtype=np.int64))
    runs["beta1"] = runs["betas"].map(lambda b: b[0])
    runs["beta2"] = runs["betas"].map(lambda b: b[1])
    for _, group in runs.groupby([*STATIC_COLUMNS, *OPEN_COLUMNS], sort=False):
        checks.task_and_model(config.source, static_of(group.iloc[0]))
    runs = split_sizes(runs.drop(columns="betas"))
    empty = runs[runs.n_train == 0]
    if len(empty):
        row = empty.iloc[0]
        raise ConfigError(
            f"{config.source}: data_fraction = {row.data_fraction} gives no training example at p = {row.p}; "
            f"allowed: data_fraction >= 1/{row.n_train + row.n_test} (one example)"
        )
    for row in runs.itertuples():
        examples = _examples(row.task, row.task_args, *(getattr(row, f) for f in TASK_FIELDS))[0]
        if row.n_train + row.n_test > examples:  # a task's own test set (Task.test_size) and train_size overlap
            raise ConfigError(f"{config.source}: task.train_size = {row.train_size} with the task's test set of "
                              f"{row.n_test} exceeds its {examples} examples; allowed: train_size <= "
                              f"{examples - row.n_test}")
    return runs


def _scaled(row: dict[str, Any]) -> dict[str, Any]:
    if row["batch_scaling"] != "appendix_a" or not row["batch_size"]:
        return row
    factor = 256 / row["batch_size"]
    return {
        **row,
        "steps": max(1, math.floor(row["steps"] * factor)),
        "log_every": (log_every := max(1, math.floor(row["log_every"] * factor))),
        "ipr_every": row["ipr_every"] // row["log_every"] * log_every,
        "learning_rate": round(row["learning_rate"] * math.sqrt(row["batch_size"] / 256), 12),
    }


def split_sizes(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with their n_train, n_corrupt and n_test from their task, data and corruption fractions."""
    counts = [_counts(row) for row in runs.itertuples()]
    runs["n_train"], runs["n_corrupt"], runs["n_test"] = (np.array(c, dtype=np.int64) for c in zip(*counts))
    return runs


def _counts(row: Any) -> tuple[int, int, int]:
    """(n_train, n_corrupt, n_test) of a run: a data fraction of its task's examples, or train_size of them
    where the task holds out a test set of its own (`Task.test_size`)."""
    examples, test_size = _examples(row.task, row.task_args, *(getattr(row, f) for f in TASK_FIELDS))
    if test_size is not None:
        return row.train_size, corrupt_count(row.corruption_fraction, row.train_size), test_size
    n_train, n_corrupt = split_counts(row.data_fraction, row.corruption_fraction, examples)
    return n_train, n_corrupt, examples - n_train


@functools.cache
def _examples(task: str, task_args: str, *fields: Any) -> tuple[int, int | None]:
    """(examples, Task.test_size) of a task."""
    static = Static(task=task, task_args=_args(task_args), **{f: _py(v) for f, v in zip(TASK_FIELDS, fields)})
    built = task_of(static)
    return int(built.mask.sum()), built.test_size


def static_of(row: pd.Series) -> Static:
    """The static config of a run (train_slots 0 and the default formulation: the plan sets those). A run without
    Grokfast (lambda 0) has its filter's fields at their defaults: its program is the plain one, whatever they say."""
    fields = {f: _py(row[f]) for f in STATIC_COLUMNS}
    has_grokfast = bool(row.grokfast_lambda > 0)
    if not has_grokfast:
        fields.update(grokfast_filter=Static.grokfast_filter, grokfast_window=Static.grokfast_window)
    return Static(
        betas=(float(row.beta1), float(row.beta2)),
        has_dropout=bool(row.dropout > 0),
        has_grokfast=has_grokfast,
        task_args=_args(row.task_args),
        model_args=_args(row.model_args),
        optimizer_args=_args(row.optimizer_args),
        **fields,
    )


@functools.cache
def _args(text: str) -> tuple[tuple[str, Any], ...]:
    """A task_args or model_args column's JSON as the static config holds it (lists as tuples)."""
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in json.loads(text).items())


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def hparams(runs: pd.DataFrame, pad_to: int | None = None) -> Hparams:
    """Per-run arrays for a chunk; padded by repeating the last run up to `pad_to` rows."""
    if pad_to is not None and pad_to > len(runs):
        runs = pd.concat([runs, runs.iloc[[-1] * (pad_to - len(runs))]])
    own = [k for k, v in _args(runs.optimizer_args.iloc[0]) if v is None]  # an Optax optimizer's per-run floats
    late = bool((runs.grokfast_lambda > 0).all())  # Grokfast's numbers: only for runs that use it (has_grokfast)
    return Hparams(**{name: np.asarray(runs[name].to_numpy(), dtype=dtype)
                      for name, dtype in zip(Hparams._fields, HPARAM_DTYPES)
                      if dtype is not None and (late or name not in LATE_TRACED)},
                   optimizer={k: runs[k].to_numpy(dtype=np.float32) for k in own} or None)
