"""The sweep grid: one row per run, grouped by the static fields that need their own program.

Columns are the fields of [task], [model] and [train] under short names (task and
model for the two `name` fields, beta1 and beta2 for betas), in the product of the
sweep axes in file order; run_id numbers the rows in that order.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any

import numpy as np
import pandas as pd

from grokjax.config.fields import STATIC_COLUMNS, SWEEPABLE_TABLES, column_of
from grokjax.config.sweep_file import ConfigError, SweepConfig, check_run
from grokjax.core.tasks import corrupt_count, modular_table, split_counts
from grokjax.core.types import HPARAM_DTYPES, Hparams, Static


def expand(config: SweepConfig) -> pd.DataFrame:
    """All runs of the sweep as a DataFrame, with their exact split sizes.

    With train.batch_scaling = "appendix_a" and a batch size, the run's steps and
    log_every are multiplied by 256 / batch_size (same epochs, same logged epochs)
    and its learning rate by sqrt(batch_size / 256); the columns hold the values used.
    """
    base: dict[str, Any] = {}
    for table in SWEEPABLE_TABLES:
        for key, value in dataclasses.asdict(getattr(config, table)).items():
            base[column_of(f"{table}.{key}")] = value
    keys = [column_of(k) for k, _ in config.axes]
    rows = []
    for combo in itertools.product(*(values for _, values in config.axes)):
        row = dict(base)
        row.update(zip(keys, combo))
        check_run(config.source, row)
        rows.append(_scaled(row))
    runs = pd.DataFrame(rows)
    runs.insert(0, "run_id", np.arange(len(runs), dtype=np.int64))
    runs["beta1"] = runs["betas"].map(lambda b: b[0])
    runs["beta2"] = runs["betas"].map(lambda b: b[1])
    runs = split_sizes(runs.drop(columns="betas"))
    empty = runs[runs.n_train == 0]
    if len(empty):
        row = empty.iloc[0]
        raise ConfigError(
            f"{config.source}: data_fraction = {row.data_fraction} gives no training example at p = {row.p}; "
            f"allowed: data_fraction >= 1/{row.n_train + row.n_test} (one example)"
        )
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
    """(n_train, n_corrupt, n_test) of a run."""
    if row.task == "sparse_parity":
        return row.train_size, corrupt_count(row.corruption_fraction, row.train_size), row.test_size
    examples = _modular_examples(row.task, row.p, row.symmetric)
    n_train, n_corrupt = split_counts(row.data_fraction, row.corruption_fraction, examples)
    return n_train, n_corrupt, examples - n_train


@functools.cache
def _modular_examples(task: str, p: int, symmetric: bool) -> int:
    return int(modular_table(task, p, symmetric)[1].sum())


def static_of(row: pd.Series) -> Static:
    """The static config of a run (train_slots 0 and the default formulation: the plan sets those)."""
    return Static(
        betas=(float(row.beta1), float(row.beta2)),
        has_dropout=bool(row.dropout > 0),
        **{f: _py(row[f]) for f in STATIC_COLUMNS},
    )


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def hparams(runs: pd.DataFrame, pad_to: int | None = None) -> Hparams:
    """Per-run arrays for a chunk; padded by repeating the last run up to `pad_to` rows."""
    if pad_to is not None and pad_to > len(runs):
        runs = pd.concat([runs, runs.iloc[[-1] * (pad_to - len(runs))]])
    return Hparams(*(np.asarray(runs[name].to_numpy(), dtype=dtype) for name, dtype in zip(Hparams._fields, HPARAM_DTYPES)))
