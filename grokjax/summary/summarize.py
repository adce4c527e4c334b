"""From what training returns to table rows: accuracies from counts, curves, final values, phases.

Everything here is host-side pandas and numpy on one chunk's logs (or, for phases, on
the whole sweep's runs): no device, no files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from grokjax.config.fields import PROGRESS_MEASURES
from grokjax.config.sweep_file import SweepConfig
from grokjax.core import analysis
from grokjax.core.types import Static
from grokjax.summary import stages
from grokjax.summary.phases import TOLERANCE, classify, dynamics


def accuracies(logs: dict[str, np.ndarray], n_train: np.ndarray, n_corrupt: np.ndarray,
               n_test: np.ndarray) -> dict[str, np.ndarray]:
    """Train, test, clean-train and corrupted-train accuracy from the counts of correct examples (`metrics.evaluate`);
    NaN where a set is empty."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "train_acc": logs["train_correct"] / n_train,
            "test_acc": logs["test_correct"] / n_test,
            "train_acc_clean": logs["clean_correct"] / (n_train - n_corrupt),
            "train_acc_corrupted": logs["corrupted_correct"] / n_corrupt,
        }


def chunk_metrics(chunk: pd.DataFrame, static: Static, logs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Accuracies from counts; per-run final values and status; curve rows."""
    n = len(chunk)
    logs = {key: value[:, :n] for key, value in logs.items()}  # drop padding runs
    n_train, n_corrupt, n_test = (chunk[c].to_numpy() for c in ("n_train", "n_corrupt", "n_test"))
    curves = {
        "train_loss": logs["train_loss"].astype(np.float64),
        "test_loss": logs["test_loss"].astype(np.float64),
        **accuracies(logs, n_train, n_corrupt, n_test),
        "weight_norm": logs["weight_norm"].astype(np.float64),
        "ipr_mean": logs["ipr_mean"].astype(np.float64),
        **{m: logs[m].astype(np.float64) for m in PROGRESS_MEASURES if m in logs},
    }
    if "collapsed_count" in logs:  # cross-entropy and StableMax runs
        with np.errstate(invalid="ignore", divide="ignore"):
            curves.update(softmax_collapse=logs["collapsed_count"] / n_train,
                          zero_loss_fraction=logs["zero_loss_count"] / n_train)
    # A run diverges at its first logged step with a non-finite loss or weight norm: from there on its
    # curves are NaN, and its final values are those of its last finite logged step.
    finite = np.logical_and.accumulate(np.isfinite(curves["train_loss"]) & np.isfinite(curves["weight_norm"]), axis=0)
    curves = {key: np.where(finite, value, np.nan) for key, value in curves.items()}
    last = np.maximum(finite.sum(axis=0) - 1, 0)
    steps = np.asarray(static.logged_steps)
    final = {key: value[last, np.arange(n)] for key, value in curves.items()}
    final["status"] = pd.array(np.where(finite[-1], "ok", "diverged"), dtype="string")
    final["max_test_acc"] = np.fmax.reduce(curves["test_acc"], axis=0)  # NaN only without a test set
    frame = pd.DataFrame({key: value.T.ravel() for key, value in curves.items()})
    frame.insert(0, "step", np.tile(steps, n))
    frame.insert(0, "run_id", np.repeat(chunk.run_id.to_numpy(), len(steps)))
    return final, frame


def neuron_rows(chunk: pd.DataFrame, step: int, stats: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per run of the chunk and neuron at one step (padding runs dropped)."""
    n, width = len(chunk), stats["ipr"].shape[1]
    frame = pd.DataFrame({key: value[:n].ravel() for key, value in stats.items()})
    frame.insert(0, "neuron", np.tile(np.arange(width, dtype=np.int64), n))
    frame.insert(0, "step", np.full(n * width, step, dtype=np.int64))
    frame.insert(0, "run_id", np.repeat(chunk.run_id.to_numpy(), width))
    return frame


def periodic_fraction(final: dict, ipr: np.ndarray, n: int) -> np.ndarray:
    """Per run: the fraction of its neurons that are periodic (IPR above `analysis.PERIODIC_IPR`); NaN if diverged."""
    ok = (final["status"] == "ok").to_numpy(dtype=bool)
    return np.where(ok, (ipr[:n] >= analysis.PERIODIC_IPR).mean(axis=1), np.nan)


def with_first_steps(runs: pd.DataFrame, curves: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Add step_train_acc_90 and step_test_acc_90: each run's first logged step with that accuracy at least
    `threshold` (NA if none), from its curves; so a new threshold needs no training."""
    for name in ("train_acc", "test_acc"):
        reached = curves[curves[name] >= threshold - TOLERANCE]
        first = reached.groupby("run_id").step.min()
        runs[f"step_{name}_90"] = pd.array(runs.run_id.map(first), dtype="Int64")
    return runs


def with_phases(runs: pd.DataFrame, config: SweepConfig) -> pd.DataFrame:
    """Add phase, dynamics and grok_delay to runs that have their final metrics."""
    runs["phase"] = pd.array(
        classify(runs.train_acc, runs.test_acc, runs.corruption_fraction, runs.max_test_acc, config.phases),
        dtype="string",
    )
    runs["dynamics"] = pd.array(
        dynamics(runs.step_train_acc_90, runs.step_test_acc_90, runs.steps, config.phases.grokking_delay),
        dtype="string",
    )
    runs["grok_delay"] = runs.step_test_acc_90 - runs.step_train_acc_90
    return runs


def tables(runs: pd.DataFrame, records: list[tuple], config: SweepConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """(runs, curves, neurons) of the whole sweep from its chunks' records (final, curves, neuron frames), sorted."""
    finals = [final for final, _, _ in records]
    final = pd.concat(finals).sort_index() if finals else pd.DataFrame(index=runs.index[:0])
    curve_frames = [c for _, c, _ in records]
    curves = pd.concat(curve_frames, ignore_index=True) if curve_frames else pd.DataFrame(columns=["run_id", "step"])
    curves = curves.sort_values(["run_id", "step"], ignore_index=True)
    final = final.drop(columns=[c for c in final if c.startswith("step_")])  # records of older versions have them
    table = runs.loc[final.index].join(final)
    table = with_phases(with_first_steps(table, curves, config.phases.threshold), config)
    if PROGRESS_MEASURES[0] in curves:
        table = stages.with_stages(table, curves)
    neuron_frames = [frame for _, _, frames in records for frame in frames]
    neurons = (
        pd.concat(neuron_frames, ignore_index=True).sort_values(["run_id", "step", "neuron"], ignore_index=True)
        if neuron_frames
        else None
    )
    return table, curves, neurons
