"""The sweep grid: one row per run, grouped by the static fields that need their own program.

Columns are the fields of [task], [model] and [train] under short names (task and
model for the two `name` fields, beta1 and beta2 for betas), in the product of the
sweep axes in file order; run_id numbers the rows in that order.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Iterator

import numpy as np
import pandas as pd

from grokjax.config import SWEEPABLE_TABLES, ConfigError, SweepConfig
from grokjax.tasks import split_counts
from grokjax.train import HPARAM_DTYPES, STATIC_FIELDS, Hparams, Static


def column_name(qualified: str) -> str:
    table, _, name = qualified.partition(".")
    return table if name == "name" else name


def expand(config: SweepConfig) -> pd.DataFrame:
    """All runs of the sweep as a DataFrame, with their exact split sizes."""
    base: dict[str, Any] = {}
    for table in SWEEPABLE_TABLES:
        for key, value in dataclasses.asdict(getattr(config, table)).items():
            base[column_name(f"{table}.{key}")] = value
    keys = [column_name(k) for k, _ in config.axes]
    rows = []
    for combo in itertools.product(*(values for _, values in config.axes)):
        row = dict(base)
        row.update(zip(keys, combo))
        rows.append(row)
    runs = pd.DataFrame(rows)
    runs.insert(0, "run_id", np.arange(len(runs), dtype=np.int64))
    runs["beta1"] = runs["betas"].map(lambda b: b[0])
    runs["beta2"] = runs["betas"].map(lambda b: b[1])
    runs = runs.drop(columns="betas")
    counts = [split_counts(a, x, p) for a, x, p in zip(runs.data_fraction, runs.corruption_fraction, runs.p)]
    runs["n_train"] = np.array([c[0] for c in counts], dtype=np.int64)
    runs["n_corrupt"] = np.array([c[1] for c in counts], dtype=np.int64)
    runs["n_test"] = runs.p**2 - runs.n_train
    empty = runs[runs.n_train == 0]
    if len(empty):
        row = empty.iloc[0]
        raise ConfigError(
            f"{config.source}: data_fraction = {row.data_fraction} gives no training example at p = {row.p}; "
            f"allowed: data_fraction >= 1/p^2 = {1 / row.p**2:.3g}"
        )
    return runs


def static_of(row: pd.Series) -> Static:
    values = {f: row[f] for f in STATIC_FIELDS if f != "betas"}
    return Static(betas=(float(row.beta1), float(row.beta2)), **{k: _py(v) for k, v in values.items()})


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def groups(runs: pd.DataFrame) -> Iterator[tuple[Static, pd.DataFrame]]:
    """(static config, its runs) for each distinct static combination, in run order."""
    keys = [f for f in STATIC_FIELDS if f != "betas"] + ["beta1", "beta2"]
    for _, group in runs.groupby(keys, sort=False):
        yield static_of(group.iloc[0]), group


def hparams(runs: pd.DataFrame, pad_to: int | None = None) -> Hparams:
    """Per-run arrays for a chunk; padded by repeating the last run up to `pad_to` rows."""
    if pad_to is not None and pad_to > len(runs):
        runs = pd.concat([runs, runs.iloc[[-1] * (pad_to - len(runs))]])
    return Hparams(*(np.asarray(runs[name].to_numpy(), dtype=dtype) for name, dtype in zip(Hparams._fields, HPARAM_DTYPES)))
