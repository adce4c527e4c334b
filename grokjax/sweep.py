"""The host loop: grid -> static groups -> chunks -> compiled training -> metrics -> phases -> Parquet."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import math
import os
import platform
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from grokjax import analysis, grid, pruning, results
from grokjax.chunks import auto_chunk_size, padded_size
from grokjax.config import ConfigError, SweepConfig, load
from grokjax.phases import TOLERANCE, classify, dynamics
from grokjax.tasks import num_examples
from grokjax.train import Progress, Static, compiled, train


@dataclass
class SweepOutcome:
    """What a finished sweep hands back: where its results are, and the results themselves."""

    folder: Path
    results: results.Results


def device_info() -> dict[str, Any]:
    devices = jax.local_devices()
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
    """Accuracies from counts; per-run final values, status and first steps at threshold; curve rows."""
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
    # A run diverges at its first logged step with a non-finite loss or weight norm: from there on its
    # curves are NaN, and its final values are those of its last finite logged step.
    finite = np.logical_and.accumulate(np.isfinite(curves["train_loss"]) & np.isfinite(curves["weight_norm"]), axis=0)
    curves = {key: np.where(finite, value, np.nan) for key, value in curves.items()}
    last = np.maximum(finite.sum(axis=0) - 1, 0)
    steps = np.asarray(static.logged_steps)
    final = {key: value[last, np.arange(n)] for key, value in curves.items()}
    final["status"] = pd.array(np.where(finite[-1], "ok", "diverged"), dtype="string")
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


@dataclass(frozen=True)
class Chunk:
    """Runs trained by one compiled call: `runs` padded to `size` (a multiple of the local device count)."""

    index: int  # position among all chunks of the sweep; names its params file
    static: Static
    runs: pd.DataFrame
    size: int


def plan(config: SweepConfig, runs: pd.DataFrame, chunk_size: int | None) -> list[Chunk]:
    """All chunks of the sweep: per static group, per rung of training slots (`grid.train_slots`), in run order.

    Runs of one chunk share their rung, so each chunk gathers about as many training
    examples as its runs have, and a run is computed the same whatever chunk it lands
    in. Chunks fit memory at the group's largest runs, and each rung is cut into chunks
    of equal size, so no chunk is mostly padding runs.
    """
    chunks: list[Chunk] = []
    for static, group in grid.groups(runs):
        rungs = group.n_train.map(lambda n, s=static: grid.train_slots(s, int(n)))
        widest = dataclasses.replace(static, train_slots=int(rungs.max()) if rungs.all() else 0)
        most = min(len(group), chunk_size or auto_chunk_size(widest, len(group), config.source))
        for rung in sorted(rungs.unique(), key=lambda r: r or math.inf):  # smallest first, the grid (0) last
            part = group[rungs == rung]
            size = padded_size(math.ceil(len(part) / math.ceil(len(part) / most)))
            chunk_static = dataclasses.replace(static, train_slots=int(rung))
            for start in range(0, len(part), size):
                chunks.append(Chunk(len(chunks), chunk_static, part.iloc[start : start + size], size))
    return chunks


def planned(saved: dict[str, Any], runs: pd.DataFrame) -> list[Chunk]:
    """The chunks of a sweep's saved plan (`results.write_plan`), rebuilt on these runs."""
    chunks = []
    for index, entry in enumerate(saved["chunks"]):
        part = runs.loc[entry["run_ids"]]
        static = grid.static_of(part.iloc[0])
        static = dataclasses.replace(static, train_slots=grid.train_slots(static, int(part.n_train.max())))
        chunks.append(Chunk(index, static, part, padded_size(entry["size"])))
    return chunks


@dataclass
class ChunkResult:
    final: pd.DataFrame  # per run: final metrics, first steps at threshold, frac_periodic, min_prune
    curves: pd.DataFrame
    neurons: list[pd.DataFrame]
    params: Any  # trained weights (padding included), or None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped the sweep after a segment; what was done is kept, and running again resumes."""


STOP = threading.Event()  # set by the first Ctrl-C: stop after the current segment


def train_chunk(chunk: Chunk, config: SweepConfig, keep_params: bool, on_segment: Callable[[int], None],
                folder: Path, checkpoint_every: int) -> ChunkResult:
    """Train one chunk (from its segment checkpoint, if it has one) and turn what comes back into rows.

    Every `checkpoint_every` logged steps, and when Ctrl-C asks to stop, the chunk's
    state is checkpointed (`results.write_progress`), so a kill loses at most that many segments.
    """
    static, runs = chunk.static, chunk.runs
    hp = grid.hparams(runs, pad_to=chunk.size)
    resume = results.read_progress(folder, chunk.index, lambda: jax.eval_shape(compiled(static)[0], hp))
    n_logs = len(static.logged_steps)

    def segment_done(i: int, progress: Callable[[], Progress]) -> None:
        on_segment(i)
        if i + 1 == n_logs:
            return  # the chunk is trained: it gets its record, and the sweep stops after it if asked
        if STOP.is_set() or (checkpoint_every and (i + 1) % checkpoint_every == 0):
            results.write_progress(folder, chunk.index, progress())
        if STOP.is_set():
            raise Interrupted(f"stopped after logged step {static.logged_steps[i]} of chunk {chunk.index}")

    logs, params, snapshots = train(static, hp, on_segment=segment_done, final=True, resume=resume)
    final, curves = chunk_metrics(runs, static, logs, config.phases.threshold)
    final["frac_periodic"] = np.full(len(runs), np.nan)
    final["min_prune"] = pd.array([pd.NA] * len(runs), dtype="Int64")
    neurons = [neuron_rows(runs, step, stats) for step, stats in snapshots]
    ok = (final["status"] == "ok").to_numpy(dtype=bool)
    if snapshots:
        ipr = snapshots[-1][1]["ipr"]
        final["frac_periodic"] = np.where(ok, (ipr[: len(runs)] >= analysis.PERIODIC_IPR).mean(axis=1), np.nan)
        if keep_params and pruning.can_prune(static):
            pruned = pruning.prune_runs(static, runs, params, ipr, "low")
            final["min_prune"] = pd.array(pruning.minimum_pruning(pruned).loc[runs.run_id].to_numpy(), dtype="Int64")
            final["min_prune"][~ok] = pd.NA  # a diverged run's weights are not a network to prune
    return ChunkResult(pd.DataFrame(final, index=runs.index), curves, neurons, jax.device_get(params) if keep_params else None)


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


def useful_work(chunks: list[Chunk]) -> float:
    """Fraction of the training-step examples computed that are real training examples (not padding
    slots, test examples or padding runs), over these chunks; what a step's compute is worth."""
    useful = computed = 0
    for chunk in chunks:
        static = chunk.static
        per_step = static.batch_size or static.train_slots or num_examples(static)
        computed += chunk.size * per_step * static.steps
        useful += int(np.minimum(chunk.runs.n_train, static.batch_size or chunk.runs.n_train).sum()) * static.steps
    return round(useful / computed, 4) if computed else 1.0


@contextlib.contextmanager
def stop_after_segment() -> Iterator[None]:
    """While training: the first Ctrl-C sets STOP (the sweep stops after its current segment), a second one stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(signum: int, frame: Any) -> None:
        STOP.set()
        print("\ngrokjax: stopping after the current segment (Ctrl-C again to stop at once)", file=sys.stderr)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    STOP.clear()
    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        STOP.clear()


def barrier(name: str) -> None:
    """Wait until every process of a multi-process sweep gets here (a no-op for one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def run(
    config: SweepConfig | str | Path,
    out: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    chunk_size: int | None = None,
    progress: bool = True,
    plots: bool = True,
    keep_params: bool = True,
    overwrite: bool = False,
    restart: bool = False,
    checkpoint_every: int = 10,
) -> SweepOutcome:
    """Run a sweep from a sweep file (with `--set` style overrides) or a SweepConfig.

    Writes runs.parquet, curves.parquet, neurons.parquet and sweep.toml into `out` (default
    results/<name>), the trained parameters into `out`/params/ unless keep_params=False,
    then the charts of `grokjax plot` unless plots=False, and returns the folder and the results.
    A folder that holds another config's results is refused unless overwrite=True.

    Each finished chunk is recorded in `out`/.grokjax/ as it completes. Running the same
    config into the same folder again resumes: it trains only the chunks not yet recorded,
    exactly as planned the first time, so the tables equal an uninterrupted sweep's
    (restart=True starts over). Within a chunk, its state is checkpointed every
    `checkpoint_every` logged steps (0: never) and when Ctrl-C stops the sweep, which
    happens after the current segment (a second Ctrl-C stops at once).

    With several processes (`jax.distributed.initialize` called first, as `grokjax sweep
    --coordinator` does), process i trains chunks i, i + n, i + 2n, ... on its own devices
    and writes its own part files (runs.parquet/part-0000i.parquet, ...); after all have
    finished, every process returns the merged results and process 0 draws the charts.
    """
    if not isinstance(config, SweepConfig):
        config = load(config, overrides)
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError(f"{config.source}: --chunk-size = {chunk_size}; allowed: an integer >= 1")
    if checkpoint_every < 0:
        raise ConfigError(f"{config.source}: --checkpoint-every = {checkpoint_every}; allowed: an integer >= 0")
    folder = Path(out) if out is not None else Path("results") / config.name
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{config.source}: output {folder} exists and is not a folder")
    runs = grid.expand(config)
    same_config = results.check_owner(folder, config, overwrite)
    saved = None if restart else results.read_plan(folder)
    resuming = saved is not None and saved["config_hash"] == config.hash()
    chunks = planned(saved, runs) if resuming else plan(config, runs, chunk_size)
    process, processes = jax.process_index(), jax.process_count()
    part = process if processes > 1 else None
    barrier("grokjax-sweep-checked")  # every process has checked before process 0 writes
    if process == 0 and not resuming:
        results.clear(folder, tables=not same_config or processes > 1)
        results.write_config(folder, config.to_dict(), config.source, list(overrides))
        results.write_plan(folder, config.hash(), [(c.runs.run_id.tolist(), c.size) for c in chunks])
    elif process == 0 and processes > 1:
        results.clear_tables(folder)  # parts of another process count would mix with this run's
    barrier("grokjax-sweep-start")
    recorded = results.read_records(folder) if resuming else {}
    mine = chunks[process::processes]

    started, t0 = dt.datetime.now(dt.timezone.utc), time.perf_counter()
    todo = [c for c in mine if c.index not in recorded]
    name = config.name if part is None else f"{config.name} [process {process}/{processes}]"
    bar = tqdm(
        total=sum(len(c.runs) for c in mine),
        initial=sum(len(c.runs) for c in mine if c.index in recorded),
        unit="run",
        disable=not progress,
        bar_format="{desc} {percentage:3.0f}%|{bar}| {n:.0f}/{total} runs [{elapsed}<{remaining}]",
        desc=f"{name}:",
    )

    def advance(chunk: Chunk, i: int) -> None:
        bar.set_description_str(f"{name}:")
        finished = sum(len(c.runs) for c in mine if c.index in recorded)
        bar.n = finished + len(chunk.runs) * (i + 1) / len(chunk.static.logged_steps)  # exact at a chunk's end
        bar.refresh()

    with bar, stop_after_segment():
        for k, chunk in enumerate(todo):
            if k == 0 or chunk.static != todo[k - 1].static:
                bar.set_description_str(f"{name}: compiling p={chunk.static.p} width={chunk.static.width};")
            result = train_chunk(chunk, config, keep_params, lambda i, c=chunk: advance(c, i), folder, checkpoint_every)
            if result.params is not None:
                results.write_params(folder, chunk.index, chunk.runs.run_id.to_numpy(), result.params)
            results.write_record(folder, chunk.index, result.final, result.curves, result.neurons)
            recorded[chunk.index] = (result.final, result.curves, result.neurons)
            if STOP.is_set() and k + 1 < len(todo):
                raise Interrupted(f"stopped after chunk {chunk.index}")
    wall = time.perf_counter() - t0
    done = [ChunkResult(*recorded[c.index], params=None) for c in mine]

    finals = [r.final for r in done]
    final = pd.concat(finals).sort_index() if finals else pd.DataFrame(index=runs.index[:0])
    ours = with_phases(runs.loc[final.index].join(final), config)
    curves = pd.concat([r.curves for r in done] or [pd.DataFrame(columns=list(results.CURVE_COLUMNS))], ignore_index=True)
    curves = curves.sort_values(["run_id", "step"], ignore_index=True)
    neuron_frames = [frame for r in done for frame in r.neurons]
    neurons = (
        pd.concat(neuron_frames, ignore_index=True).sort_values(["run_id", "step", "neuron"], ignore_index=True)
        if neuron_frames
        else None
    )
    meta = {
        "config": config.to_dict(),
        "config_hash": config.hash(),
        "source": config.source,
        "overrides": list(overrides),
        "versions": versions(),
        "device": device_info(),
        "process": {"index": process, "count": processes},
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(wall, 3),
        "runs": len(ours),
        "run_steps_per_s": round(sum(int(c.runs.steps.sum()) for c in todo) / wall, 1) if todo else 0.0,
        "chunks": len(chunks),
        "chunks_resumed": len(mine) - len(todo),
        "compiled_programs": len({c.static for c in todo}),
        "chunk_sizes": [c.size for c in mine],
        "useful_work": useful_work(mine),
    }
    if done:  # a process with no chunk (more processes than chunks) writes no part
        results.write(folder, ours, curves, meta, neurons, part=part)
    barrier("grokjax-sweep-written")
    outcome = SweepOutcome(folder, results.load(folder))
    if plots and process == 0:
        from grokjax import plots as charts  # Altair loads only when charts are drawn

        charts.write_all(folder, outcome.results.runs, outcome.results.curves, outcome.results.neurons)
    return outcome
