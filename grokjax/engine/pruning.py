"""Pruning neurons in IPR order (seed 002, Figures 6, 17, 18, 32), every prune count of every run vectorized.

A model opens its units to pruning with `without_units(params, keep)` (docs/extending.md): the
2-layer MLP removes neuron k by zeroing its output weights (column k of the paper's W), so its
contribution to every logit vanishes. For each run, units are ranked by IPR (lowest or highest
first) and the network is evaluated with the first 0, 1, ..., all of them removed: `lax.map` over
prune counts inside `vmap` over runs.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from grokjax.config import expressions
from grokjax.core import analysis, models
from grokjax.core.metrics import evaluate
from grokjax.core.tasks import make_run_data, model_inputs, num_classes, num_examples
from grokjax.core.training import apply_model
from grokjax.core.types import Static
from grokjax.engine import plan, runner, runs_table
from grokjax.store import results
from grokjax.summary.summarize import accuracies

ORDERS = ("low", "high")
MEMORY_BUDGET = 512 * 2**20  # bytes of activations in flight
KEEP_TEST_ACC = 0.9  # minimum pruning keeps test accuracy >= 90% of its unpruned value (Figure 32)


def can_prune(static: Static) -> bool:
    """Whether these runs' units can be pruned: a model with per-neuron analyses and `without_units`, whose
    evaluation needs its parameters only (BatchNorm's running statistics are not stored)."""
    return analysis.has_neurons(static) and hasattr(models.build(static), "without_units") and params_only(static)


@functools.cache
def params_only(static: Static) -> bool:
    """Whether the model's variables are its parameters alone (no BatchNorm statistics, which params/ lacks)."""
    return set(jax.eval_shape(lambda: models.init(static, jax.random.key(0), jnp.float32(1.0)))) == {"params"}


def removal_rank(ipr: np.ndarray, order: str) -> np.ndarray:
    """Position of each neuron in the removal order, shape (runs, width); dead neurons (NaN IPR) go first."""
    key = np.where(np.isnan(ipr), -np.inf, ipr if order == "low" else -ipr)
    return np.argsort(np.argsort(key, axis=1, kind="stable"), axis=1).astype(np.int32)


def _pruned_metrics(static: Static, params: Any, data_seed: jax.Array, n_train: jax.Array, n_corrupt: jax.Array,
                    rank: jax.Array, batch: int) -> dict[str, jax.Array]:
    """Metrics of one run with its first c units removed, for c = 0 .. units (leading axis)."""
    data = make_run_data(static, jax.random.key(data_seed), n_train, n_corrupt)
    model, inputs = models.build(static), model_inputs(static, data)

    def one(count: jax.Array) -> dict[str, jax.Array]:
        pruned = model.without_units(params, rank >= count)
        logits = apply_model(static, model, {"params": pruned}, inputs, train=False, rate=0.0, mask=None)
        return evaluate(logits, data, pruned, static.loss, static.loss_precision)

    return jax.lax.map(one, jnp.arange(rank.shape[-1] + 1), batch_size=batch)


@functools.cache
def _compiled(static: Static, batch: int) -> Any:
    return jax.jit(jax.vmap(functools.partial(_pruned_metrics, static, batch=batch)))


def prune_runs(static: Static, runs: pd.DataFrame, params: Any, ipr: np.ndarray, order: str) -> pd.DataFrame:
    """Pruning curves of runs sharing one static config: one row per run and prune count.

    `ipr` is the runs' per-unit IPR, shape (runs, units), as `runner.neuron_stats` gives it.
    """
    units = np.shape(ipr)[1]
    per_eval = 12 * num_examples(static) * max(units, num_classes(static))  # hidden, activation, logits (bytes)
    batch = int(max(1, min(units + 1, MEMORY_BUDGET // per_eval)))
    runs_per_call = int(max(1, MEMORY_BUDGET // (per_eval * batch)))
    rank = removal_rank(np.asarray(ipr), order)
    frames = []
    for start in range(0, len(runs), runs_per_call):
        part = runs.iloc[start : start + runs_per_call]
        take = lambda x: x[start : start + len(part)]  # noqa: E731 (slice this part's runs)
        hp = runs_table.hparams(part)
        logs = jax.device_get(_compiled(static, batch)(jax.tree.map(take, params), hp.data_seed, hp.n_train,
                                                          hp.n_corrupt, take(rank)))
        frames.append(_rows(part, logs, units, order))
    return pd.concat(frames, ignore_index=True)


def _rows(runs: pd.DataFrame, logs: dict[str, np.ndarray], units: int, order: str) -> pd.DataFrame:
    n, counts = len(runs), np.arange(units + 1)
    sizes = [np.repeat(runs[name].to_numpy(), units + 1) for name in ("n_train", "n_corrupt", "n_test")]
    return pd.DataFrame({
        "run_id": np.repeat(runs.run_id.to_numpy(), units + 1),
        "order": order,
        "pruned": np.tile(counts, n),
        "fraction_pruned": np.tile(counts / units, n),
        **accuracies({key: value.ravel() for key, value in logs.items()}, *sizes),
        "train_loss": logs["train_loss"].ravel().astype(np.float64),
        "test_loss": logs["test_loss"].ravel().astype(np.float64),
    })  # fmt: skip


def minimum_pruning(curves: pd.DataFrame) -> pd.Series:
    """Per run: neurons removable (lowest IPR first) with test accuracy still >= 90% of the unpruned value."""
    def count(run: pd.DataFrame) -> int:
        run = run.sort_values("pruned")
        ok = run.test_acc.to_numpy() >= KEEP_TEST_ACC * run.test_acc.iloc[0] - 1e-9
        return int(run.pruned.iloc[np.argmin(ok) - 1]) if not ok.all() else int(run.pruned.iloc[-1])

    low = curves[curves.order == "low"]
    return low.groupby("run_id")[["pruned", "test_acc"]].apply(count).rename("min_prune")


def prune(folder: str, order: str = "low", where: str | None = None) -> pd.DataFrame:
    """Pruning curves of the chosen runs of a results folder (those `can_prune` applies to; params stored).

    order is "low" (lowest IPR first), "high" or "both"; `where` is an expression on runs.parquet's
    columns (`grokjax.config.expressions`: data, never executed as code).
    """
    runs = results.load(folder).runs
    if where is not None:
        try:
            runs = expressions.select(runs, where)
        except expressions.ExpressionError as err:
            raise ValueError(f'{folder}: --where "{expressions.shown(where)}" is not a query on runs.parquet: '
                             f"{err}") from None
    orders = ORDERS if order == "both" else (order,)
    frames = []
    for static, group in plan.groups(runs):
        if can_prune(static):
            params = results.load_params(folder, group.run_id.to_numpy())
            ipr = jax.device_get(runner.neuron_stats(static, True)(params)["ipr"])
            frames.extend(prune_runs(static, group, params, ipr, o) for o in orders)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(PRUNING_COLUMNS))


def summary(curves: pd.DataFrame) -> str:
    """A line per run and order: accuracies unpruned and with half of the neurons removed."""
    lines = []
    for (run_id, order), run in curves.groupby(["run_id", "order"], sort=True):
        start = run[run.pruned == 0].iloc[0]
        half = run.iloc[(run.fraction_pruned - 0.5).abs().argmin()]
        lines.append(
            f"run {run_id}, {order} IPR first: test {start.test_acc:.3f} -> {half.test_acc:.3f}, "
            f"corrupted train {start.train_acc_corrupted:.3f} -> {half.train_acc_corrupted:.3f}, "
            f"clean train {start.train_acc_clean:.3f} -> {half.train_acc_clean:.3f} at half pruned"
        )
    return "\n".join(lines)


PRUNING_COLUMNS = ("run_id", "order", "pruned", "fraction_pruned", "train_acc", "test_acc", "train_acc_clean",
                   "train_acc_corrupted", "train_loss", "test_loss")  # fmt: skip
