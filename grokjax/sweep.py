"""The host loop: grid -> static groups -> chunks -> compiled training -> metrics -> phases -> Parquet."""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from grokjax import analysis, grid, pruning, results
from grokjax.config import ConfigError, SweepConfig, load
from grokjax.phases import TOLERANCE, classify, dynamics
from grokjax.train import Static, train

MEMORY_FRACTION = 0.5  # of the device's free memory that chunks may fill
# On CPU, larger chunks fall out of cache: at the quickstart's size on 2 cores, 8-16 runs per
# call train at about 7,100 run-steps/s, 96 runs per call at 4,900 and one run at a time at 4,500.
CPU_MAX_CHUNK = 16


@dataclass
class SweepOutcome:
    """What a finished sweep hands back: where its results are, and the results themselves."""

    folder: Path
    results: results.Results


def run_bytes(static: Static) -> int:
    """Rough peak memory of one run in a vmapped chunk (float32).

    Dominated by the hidden layer over all p^2 pairs (pre-activation, activation
    and their gradients: 4 N p^2) and the logits and their gradients (4 p^3),
    plus weights, gradients and optimizer moments (about 18 N p).
    """
    n, p = static.width, static.p
    return 4 * (4 * n * p * p + 4 * p**3 + 18 * n * p + 8 * p * p) + 1024


def free_device_bytes() -> int:
    """Free memory of the first device; on CPU, the host's available memory."""
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def auto_chunk_size(static: Static, n_runs: int, source: str) -> int:
    """As many runs as fit in MEMORY_FRACTION of free device memory, at least one."""
    budget = MEMORY_FRACTION * free_device_bytes()
    per_run = run_bytes(static)
    if per_run > budget:
        raise ConfigError(
            f"{source}: one run at p = {static.p}, width = {static.width} needs about {per_run / 2**30:.1f} GiB; "
            f"the device has {budget / 2**30:.1f} GiB to give (half its free memory); lower task.p or model.width"
        )
    cap = CPU_MAX_CHUNK if jax.devices()[0].platform == "cpu" else n_runs
    return int(min(n_runs, cap, budget // per_run))


def device_info() -> dict[str, Any]:
    devices = jax.devices()
    return {
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
    }


def versions() -> dict[str, str]:
    names = ("grokjax", "jax", "jaxlib", "optax", "numpy", "pandas", "pyarrow")
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def chunk_metrics(chunk: pd.DataFrame, static: Static, logs: dict[str, np.ndarray], threshold: float) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Accuracies from counts; per-run final values and first steps at threshold; curve rows."""
    n = len(chunk)
    logs = {key: value[:, :n] for key, value in logs.items()}  # drop padding runs
    n_train, n_corrupt, n_test = (chunk[c].to_numpy() for c in ("n_train", "n_corrupt", "n_test"))
    with np.errstate(invalid="ignore", divide="ignore"):
        curves = {
            "train_loss": logs["train_loss"].astype(np.float64),
            "test_loss": logs["test_loss"].astype(np.float64),
            "train_acc": logs["train_correct"] / n_train,
            "test_acc": logs["test_correct"] / n_test,
            "train_acc_clean": logs["clean_correct"] / (n_train - n_corrupt),
            "train_acc_corrupted": logs["corrupted_correct"] / n_corrupt,
            "weight_norm": logs["weight_norm"].astype(np.float64),
            "ipr_mean": logs["ipr_mean"].astype(np.float64),
        }
    steps = np.asarray(static.logged_steps)
    final = {key: value[-1] for key, value in curves.items()}
    final["max_test_acc"] = np.fmax.reduce(curves["test_acc"], axis=0)  # NaN only without a test set
    for name in ("train_acc", "test_acc"):
        reached = curves[name] >= threshold - TOLERANCE
        first = pd.array(steps[np.argmax(reached, axis=0)], dtype="Int64")
        first[~reached.any(axis=0)] = pd.NA
        final[f"step_{name}_90"] = first
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


def run(
    config: SweepConfig | str | Path,
    out: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    chunk_size: int | None = None,
    progress: bool = True,
    plots: bool = True,
    keep_params: bool = True,
) -> SweepOutcome:
    """Run a sweep from a sweep file (with `--set` style overrides) or a SweepConfig.

    Writes runs.parquet, curves.parquet, neurons.parquet and sweep.toml into `out` (default
    results/<name>), the trained parameters into `out`/params/ unless keep_params=False,
    then the charts of `grokjax plot` unless plots=False, and returns the folder and the results.
    """
    if not isinstance(config, SweepConfig):
        config = load(config, overrides)
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError(f"{config.source}: --chunk-size = {chunk_size}; allowed: an integer >= 1")
    folder = Path(out) if out is not None else Path("results") / config.name
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{config.source}: output {folder} exists and is not a folder")
    runs = grid.expand(config)
    groups = list(grid.groups(runs))
    plans = [
        (static, group, min(len(group), chunk_size or auto_chunk_size(static, len(group), config.source)))
        for static, group in groups
    ]

    started, t0 = dt.datetime.now(dt.timezone.utc), time.perf_counter()
    finals: list[pd.DataFrame] = []
    curve_frames: list[pd.DataFrame] = []
    neuron_frames: list[pd.DataFrame] = []
    trained_params: list[tuple[np.ndarray, Any]] = []
    bar = tqdm(
        total=len(runs),
        unit="run",
        disable=not progress,
        bar_format="{desc} {percentage:3.0f}%|{bar}| {n:.0f}/{total} runs [{elapsed}<{remaining}]",
        desc=f"{config.name}:",
    )
    done = 0

    def advance(chunk_runs: int, n_logs: int, i: int) -> None:
        bar.set_description_str(f"{config.name}:")
        bar.n = done + chunk_runs * (i + 1) / n_logs  # fractional runs, exact at a chunk's end
        bar.refresh()

    with bar:
        for static, group, size in plans:
            bar.set_description_str(f"{config.name}: compiling p={static.p} width={static.width};")
            for start in range(0, len(group), size):
                chunk = group.iloc[start : start + size]
                n_logs = len(static.logged_steps)
                logs, params, snapshots = train(
                    static,
                    grid.hparams(chunk, pad_to=size),
                    on_segment=lambda i: advance(len(chunk), n_logs, i),  # noqa: B023 (called before chunk changes)
                    final=True,
                )
                done += len(chunk)
                final, frame = chunk_metrics(chunk, static, logs, config.phases.threshold)
                final["frac_periodic"] = np.full(len(chunk), np.nan)
                final["min_prune"] = pd.array([pd.NA] * len(chunk), dtype="Int64")
                if snapshots:
                    neuron_frames.extend(neuron_rows(chunk, step, stats) for step, stats in snapshots)
                    stats = snapshots[-1][1]
                    final["frac_periodic"] = (stats["ipr"][: len(chunk)] >= analysis.PERIODIC_IPR).mean(axis=1)
                    if keep_params and pruning.can_prune(static):
                        pruned = pruning.prune_runs(static, chunk, params, stats["ipr"], "low")
                        final["min_prune"] = pd.array(pruning.minimum_pruning(pruned).loc[chunk.run_id].to_numpy(), dtype="Int64")
                if keep_params:
                    trained_params.append((chunk.run_id.to_numpy(), jax.device_get(params)))
                finals.append(pd.DataFrame(final, index=chunk.index))
                curve_frames.append(frame)
    wall = time.perf_counter() - t0

    runs = runs.join(pd.concat(finals))
    runs["phase"] = pd.array(
        classify(runs.train_acc, runs.test_acc, runs.corruption_fraction, runs.max_test_acc, config.phases),
        dtype="string",
    )
    runs["dynamics"] = pd.array(
        dynamics(runs.step_train_acc_90, runs.step_test_acc_90, runs.steps, config.phases.grokking_delay),
        dtype="string",
    )
    runs["grok_delay"] = runs.step_test_acc_90 - runs.step_train_acc_90
    curves = pd.concat(curve_frames, ignore_index=True).sort_values(["run_id", "step"], ignore_index=True)
    run_steps = int(runs.steps.sum())
    meta = {
        "config": config.to_dict(),
        "source": config.source,
        "overrides": list(overrides),
        "versions": versions(),
        "device": device_info(),
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(wall, 3),
        "runs": len(runs),
        "run_steps_per_s": round(run_steps / wall, 1),
        "compiled_groups": len(groups),
        "chunk_sizes": [size for _, _, size in plans],
    }
    neurons = (
        pd.concat(neuron_frames, ignore_index=True).sort_values(["run_id", "step", "neuron"], ignore_index=True)
        if neuron_frames
        else pd.DataFrame({c: pd.Series(dtype="float64") for c in results.NEURON_COLUMNS})
    )
    results.write(folder, runs, curves, config.to_dict(), meta, neurons, trained_params if keep_params else None)
    outcome = SweepOutcome(folder, results.load(folder))
    if plots:
        from grokjax import plots as charts  # Altair loads only when charts are drawn

        charts.write_all(folder, outcome.results.runs, outcome.results.curves, outcome.results.neurons)
    return outcome

