"""A sweep from file to folder, as a pipeline: config -> plan -> runner -> summarize -> store -> charts.

`run` reads top to bottom as those stages; each lives in its own module. What this
module adds is the host's part: resuming, Ctrl-C, the progress bar, and several
processes taking their share of the chunks. `train` and `with_rounds` are the stages
that `grokjax.engine.refine` shares with it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from grokjax.config.fields import PROGRESS_MEASURES
from grokjax.config.sweep_file import ConfigError, SweepConfig, load
from grokjax.core import analysis, progress
from grokjax.core.types import Hparams, Static
from grokjax.engine import plan, pruning, replay, runner, runs_table, tuning
from grokjax.engine.machine import Machine
from grokjax.engine.machine import local as local_machine
from grokjax.engine.plan import Chunk
from grokjax.store import checkpoints, lock, results
from grokjax.store.provenance import device_info, versions
from grokjax.summary import cells, expect, summarize


@dataclass
class SweepOutcome:
    """What a finished sweep hands back: where its results are, and the results themselves."""

    folder: Path
    results: results.Results


@dataclass
class ChunkResult:
    final: pd.DataFrame  # per run: final metrics, first steps at threshold, frac_periodic, min_prune
    curves: pd.DataFrame
    neurons: list[pd.DataFrame]
    params: Any  # trained weights (padding included), on the host, or None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped the sweep after a segment; what was done is kept, and running again resumes."""


def train_chunk(chunk: Chunk, config: SweepConfig, folder: Path, checkpoint_every: int, keep_params: bool,
                stop: threading.Event, moved: Callable[[float], None]) -> ChunkResult | None:
    """Train one chunk (from its segment checkpoint, if it has one) and turn what comes back into rows.

    Every `checkpoint_every` logged steps, and when `stop` is set, the chunk's state is
    checkpointed (`checkpoints.write_progress`), so a kill loses at most that many segments;
    after a checkpoint for `stop`, None is returned. `moved(fraction)` follows the training.
    """
    static, runs = chunk.static, chunk.runs
    hp = runs_table.hparams(runs, pad_to=chunk.size)
    saved = checkpoints.read_progress(folder, chunk.index, lambda: jax.eval_shape(runner.compiled(static)[0], hp))
    logs, snapshots = ([], []) if saved is None else (list(saved.logs), list(saved.neurons))
    n_logs = len(static.logged_steps)

    def keep(i: int) -> bool:
        return stop.is_set() or bool(checkpoint_every and (i + 1) % checkpoint_every == 0)

    ipr_every = int(runs.ipr_every.iloc[0])  # one value per chunk (plan.groups)
    for seg in runner.segments(static, hp, saved, neurons=True, ipr_every=ipr_every, keep=keep):
        logs.append(seg.metrics)
        if seg.neurons is not None:
            snapshots.append((seg.step, seg.neurons))
        moved((seg.index + 1) / n_logs)
        if seg.index + 1 < n_logs and seg.state is not None:
            checkpoints.write_progress(folder, chunk.index, checkpoints.Progress(seg.index + 1, seg.state, logs, snapshots))
            if stop.is_set():
                return None
    params = seg.state.params
    keys = None
    if config.analysis.progress and progress.left_out(static) is None:
        keys, replayed = replay.measured(static, hp, seg.state)
        logs = [{**log, **{m: again[m] for m in PROGRESS_MEASURES}} for log, again in zip(logs, replayed)]
    final, curves = summarize.chunk_metrics(runs, static, runner.stacked(logs))
    if keys is not None:
        final["key_frequencies"] = key_frequencies(final, keys)
    final["frac_periodic"] = np.full(len(runs), np.nan)
    final["min_prune"] = pd.array([pd.NA] * len(runs), dtype="Int64")
    if snapshots:
        ipr = snapshots[-1][1]["ipr"]
        final["frac_periodic"] = summarize.periodic_fraction(final, ipr, len(runs))
        if config.analysis.min_prune and pruning.can_prune(static):
            final["min_prune"] = min_prune(static, runs, final, params, ipr)
    neurons = [summarize.neuron_rows(runs, step, stats) for step, stats in snapshots]
    return ChunkResult(pd.DataFrame(final, index=runs.index), curves, neurons,
                       jax.device_get(params) if keep_params else None)


def min_prune(static: Static, runs: pd.DataFrame, final: pd.DataFrame, params: Any, ipr: Any) -> pd.api.extensions.ExtensionArray:
    """Per run, the fewest low-IPR units whose removal drops test accuracy below 90% of its value (NA for a diverged
    run: its weights are not a network to prune)."""
    pruned = pruning.prune_runs(static, runs, params, ipr, "low")
    counts = pd.array(pruning.minimum_pruning(pruned).loc[runs.run_id].to_numpy(), dtype="Int64")
    counts[~(final["status"] == "ok").to_numpy(dtype=bool)] = pd.NA
    return counts


def key_frequencies(final: dict | pd.DataFrame, keys: np.ndarray) -> list[list[int] | None]:
    """Each run's key frequencies (None for a diverged run)."""
    ok = (final["status"] == "ok").to_numpy(dtype=bool)
    return [k if good else None for k, good in zip(replay.frequency_lists(keys), ok)]


def with_progress(folder: Path, config: SweepConfig, chunks: list[Chunk], recorded: dict) -> None:
    """Bring the chunks' records to `[analysis] progress` as the config now sets it: where the runs trained without
    it, their measures by a replay (the key frequencies from params/ where the folder holds them and the model's
    variables are parameters only, else from a replay to the end); turned off, without its columns."""
    for chunk in chunks:
        final, curves, neurons = recorded[chunk.index]
        if not config.analysis.progress:
            final = final.drop(columns=[c for c in ("key_frequencies", *PROGRESS_MEASURES) if c in final])
            curves = curves.drop(columns=[c for c in PROGRESS_MEASURES if c in curves])
        elif PROGRESS_MEASURES[0] not in curves and progress.left_out(chunk.static) is None:
            hp = runs_table.hparams(chunk.runs, pad_to=chunk.size)
            stored = results.has_params(folder) and pruning.params_only(chunk.static)
            params = results.load_params(folder, chunk.runs.run_id.to_numpy()) if stored else None
            keys, replayed = replay.measured(chunk.static, hp, replay.final_state(chunk.static, hp, params))
            again, curves = summarize.chunk_metrics(chunk.runs, chunk.static, runner.stacked(replayed))
            final = final.assign(**{m: again[m] for m in PROGRESS_MEASURES}, key_frequencies=key_frequencies(final, keys))
            checkpoints.write_record(folder, chunk.index, final, curves, neurons)
        recorded[chunk.index] = (final, curves, neurons)


def with_min_prune(folder: Path, config: SweepConfig, chunks: list[Chunk], recorded: dict) -> None:
    """Bring the chunks' records to `[analysis] min_prune` as the config now sets it, from the stored weights where
    the runs trained without it (it is read off the trained runs, so turning it on or off trains nothing)."""
    for chunk in chunks:
        final, curves, neurons = recorded[chunk.index]
        if not config.analysis.min_prune:
            final = final.assign(min_prune=pd.array([pd.NA] * len(final), dtype="Int64"))
        elif (final.status == "ok").any() and final.min_prune[final.status == "ok"].isna().all() \
                and pruning.can_prune(chunk.static):
            params = results.load_params(folder, chunk.runs.run_id.to_numpy())
            ipr = jax.device_get(runner.neuron_stats(chunk.static, True)(params)["ipr"])
            final = final.assign(min_prune=min_prune(chunk.static, chunk.runs, final, params, ipr))
            checkpoints.write_record(folder, chunk.index, final, curves, neurons)
        recorded[chunk.index] = (final, curves, neurons)


@contextlib.contextmanager
def stop_on_ctrl_c() -> Iterator[threading.Event]:
    """An event that the first Ctrl-C sets (the sweep stops after its current segment); a second one stops at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def first(signum: int, frame: Any) -> None:
        stop.set()
        print("\ngrokjax: stopping after the current segment (Ctrl-C again to stop at once)", file=sys.stderr)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def barrier(name: str) -> None:
    """Wait until every process of a multi-process sweep gets here (a no-op for one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


@contextlib.contextmanager
def holding(folder: Path, command: str, wait: bool) -> Iterator[None]:
    """Hold the results folder for this sweep (`lock.hold`); with several processes, process 0 holds it for all
    and tells the others whether it could, so a refused sweep stops in every process with the same line."""
    with contextlib.ExitStack() as stack:
        refused = None
        if jax.process_index() == 0:
            try:
                stack.enter_context(lock.hold(folder, command, wait))
            except lock.FolderInUse as err:
                refused = err
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            if int(multihost_utils.broadcast_one_to_all(np.int32(refused is not None))):
                raise refused or lock.FolderInUse(f"{folder} is in use by {lock.holder(folder)}")
        elif refused is not None:
            raise refused
        yield


def progress_bar(name: str, mine: list[Chunk], recorded: dict, enabled: bool) -> tuple[tqdm, Callable]:
    """A bar over this process's runs, and `moved(chunk, fraction)` to advance it within a chunk."""
    bar = tqdm(
        total=sum(len(c.runs) for c in mine),
        initial=sum(len(c.runs) for c in mine if c.index in recorded),
        unit="run", disable=not enabled, desc=f"{name}:",
        bar_format="{desc} {percentage:3.0f}%|{bar}| {n:.0f}/{total} runs [{elapsed}<{remaining}]",
    )

    def moved(chunk: Chunk, fraction: float) -> None:
        bar.set_description_str(f"{name}:")
        finished = sum(len(c.runs) for c in mine if c.index in recorded)
        bar.n = finished + len(chunk.runs) * fraction  # exact at a chunk's end
        bar.refresh()

    return bar, moved


def train(chunks: list[Chunk], recorded: dict, config: SweepConfig, folder: Path, name: str, progress: bool,
          warm_charts: bool, checkpoint_every: int, keep_params: bool) -> list[Chunk]:
    """Train the chunks not in `recorded`, in order, each recorded (in `folder` and in `recorded`) as it
    finishes; returns the chunks it trained.

    Their programs compile in worker threads while earlier chunks train (and the chart engine warms
    up, with warm_charts). Ctrl-C stops after the current segment, with `Interrupted`.
    """
    todo = [c for c in chunks if c.index not in recorded]
    hps = [runs_table.hparams(chunk.runs, pad_to=chunk.size) for chunk in todo]
    for chunk, hp in zip(todo, hps):  # compiled in worker threads, each chunk's while earlier ones train
        runner.compile_ahead(chunk.static, hp, neurons=True)
    if warm_charts and todo:
        threading.Thread(target=warm_up_charts, args=(todo[0].static, hps[0]), daemon=True).start()
    bar, moved = progress_bar(name, chunks, recorded, progress)
    with bar, stop_on_ctrl_c() as stop:
        for k, chunk in enumerate(todo):
            if k == 0 or chunk.static != todo[k - 1].static:
                bar.set_description_str(f"{name}: compiling p={chunk.static.p} width={chunk.static.width};")
            result = train_chunk(chunk, config, folder, checkpoint_every, keep_params, stop,
                                 lambda fraction, c=chunk: moved(c, fraction))
            if result is None:
                raise Interrupted(f"stopped in chunk {chunk.index}")
            if result.params is not None:
                results.write_params(folder, chunk.index, chunk.runs.run_id.to_numpy(), result.params)
            checkpoints.write_record(folder, chunk.index, result.final, result.curves, result.neurons)
            recorded[chunk.index] = (result.final, result.curves, result.neurons)
            if stop.is_set() and k + 1 < len(todo):
                raise Interrupted(f"stopped after chunk {chunk.index}")
    return todo


def warm_up_charts(static: Static, hp: Hparams) -> None:
    """Start the chart engine while the runs train: once the first chunk's programs (for `static`, `hp`) are
    compiled, as starting it beside their compiles would delay the training."""
    try:
        runner.programs(static, hp)
    except Exception:  # noqa: BLE001 (the training meets the same error and reports it)
        return
    from grokjax.charts import figures as charts  # Altair loads only when charts are drawn

    charts.warm_up()


def with_rounds(folder: Path, runs: pd.DataFrame, machine: Machine) -> tuple[pd.DataFrame, list[Chunk], list[dict[str, Any]]]:
    """The sweep's runs with those of the folder's finished refinement rounds (`grokjax.engine.refine`), the
    rounds' chunks, and their provenance. A round still in training is left out (refine resumes it)."""
    done = [r for r in checkpoints.read_rounds(folder) if r.finished]
    runs = pd.concat([runs, *(r.runs for r in done)]) if done else runs
    return runs, [c for r in done for c in plan.from_json(r.plan, runs, machine, r.first_chunk)], [r.info for r in done]


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
    step: str | None = None,
    wait: bool = False,
) -> SweepOutcome:
    """Run a sweep from a sweep file (with `--set` style overrides) or a SweepConfig.

    Writes runs.parquet, curves.parquet, neurons.parquet and sweep.toml into `out` (default
    results/<name>), the trained parameters into `out`/params/ unless keep_params=False,
    then the charts of `grokjax plot` unless plots=False, and returns the folder and the results.
    A folder that holds another config's results is refused unless overwrite=True.

    Each finished chunk is recorded in `out`/.grokjax/ as it completes. Running the same
    config into the same folder again resumes: it trains only the chunks not yet recorded,
    exactly as planned the first time, so the tables equal an uninterrupted sweep's
    (restart=True starts over). A finished sweep run again trains nothing and keeps the
    runs of the folder's finished refinement rounds (`grokjax.engine.refine`) in its tables;
    restart=True, or another config with overwrite=True, starts over without them.
    Within a chunk, its state is checkpointed every
    `checkpoint_every` logged steps (0: never) and when Ctrl-C stops the sweep, which
    happens after the current segment (a second Ctrl-C stops at once).

    `step` says how to compute the training step: "auto" (the default, or $GROKJAX_STEP)
    as the cost model picks from each chunk's shape (`grokjax.engine.costmodel`: the same on every
    run, so the tables depend on the config, the device kind and count and the versions
    alone); "tuned", the fastest candidate timed once per machine and shape (`grokjax.engine.tuning`);
    or a fixed "FORMULATION[:BLOCK][@DEVICES]" (e.g. "gather", "onehot:8", "gather:8@1"). JAX's
    global configuration is left as it is: `grokjax.configure` (which the `grokjax` command calls)
    gives it one CPU device per core and the persistent compilation cache.

    With several processes (`jax.distributed.initialize` called first, as `grokjax sweep
    --coordinator` does), process 0 plans (and measures the step), then process i trains
    chunks i, i + n, i + 2n, ... on its own devices and writes its own part files
    (runs.parquet/part-0000i.parquet, ...); after all have finished, every process
    returns the merged results and process 0 draws the charts.

    The folder is held while the sweep writes it (`grokjax.store.lock`; by process 0 for all
    processes): a folder that another command is writing is refused, or with wait=True
    waited for.
    """
    config = config if isinstance(config, SweepConfig) else load(config, overrides)
    step = check_options(config.source, chunk_size, checkpoint_every, step)
    folder = output_folder(config, out)
    runs = runs_table.expand(config)
    config = judged_claims(config, runs, overrides)
    problem = cells.axes_problem(runs, config.plot_axes())
    if problem:
        raise ConfigError(f"{config.source}: {problem}")
    say_what_is_left_out(config.source, runs, config.analysis.progress)
    with holding(folder, f"grokjax sweep {config.source}", wait):
        machine = local_machine()
        chunks, recorded = plan_or_resume(folder, config, runs, machine, overrides, chunk_size, step, overwrite, restart)
        process, processes = jax.process_index(), jax.process_count()
        mine = chunks[process::processes]

        started, t0 = now(), time.perf_counter()
        name = config.name if processes == 1 else f"{config.name} [process {process}/{processes}]"
        todo = train(mine, recorded, config, folder, name, progress=progress, warm_charts=plots and process == 0,
                     checkpoint_every=checkpoint_every, keep_params=keep_params)
        wall = time.perf_counter() - t0

        # The runs of the folder's finished refinement rounds stay in its tables (process 0 writes them).
        runs, rounds, refined = with_rounds(folder, runs, machine) if process == 0 else (runs, [], [])
        with_min_prune(folder, config, mine + rounds, recorded)
        with_progress(folder, config, mine + rounds, recorded)
        table, curves, neurons = summarize.tables(runs, [recorded[c.index] for c in mine + rounds], config)
        meta = {**provenance(config, overrides, step, machine, started, wall), "runs": len(table), "rounds": refined,
                **chunk_figures(chunks, mine, todo, wall, machine),
                # The claims on these runs; on a part of a multi-process sweep, `grokjax check` judges the whole.
                "expect": expect.evaluate(config.expect, table) if processes == 1 else []}
        if mine:  # a process with no chunk (more processes than chunks) writes no part
            results.write(folder, table, curves, meta, neurons, part=process if processes > 1 else None)
        barrier("grokjax-sweep-written")
        return finish(folder, plots and process == 0)


# --- the stages of `run`, shared with `grokjax.engine.refine` -------------------------------------


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def check_options(source: str, chunk_size: int | None, checkpoint_every: int, step: str | None) -> str:
    """The options' one-line refusals; returns the step's way (the default's when None)."""
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError(f"{source}: --chunk-size = {chunk_size}; allowed: an integer >= 1")
    if checkpoint_every < 0:
        raise ConfigError(f"{source}: --checkpoint-every = {checkpoint_every}; allowed: an integer >= 0")
    step = tuning.default_step() if step is None else step
    tuning.check_step(step, source)
    return step


def output_folder(config: SweepConfig, out: str | Path | None) -> Path:
    folder = Path(out) if out is not None else Path("results") / config.name
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{config.source}: output {folder} exists and is not a folder")
    return folder


def judged_claims(config: SweepConfig, runs: pd.DataFrame, overrides: list[str] | tuple[str, ...]) -> SweepConfig:
    """The config with the claims its runs can judge, checked against them. A grid narrowed by --set may leave
    a claim no run to judge: it is left out, with a line."""
    if overrides:
        kept = expect.selecting(config.expect, runs)
        for i, e in enumerate(config.expect):
            if e not in kept:
                print(f"grokjax: {config.source}: expect[{i}] left out: no run of the grid as overridden is one it "
                      f"judges ({e.where or 'all runs'}{'; than ' + e.than if e.than else ''})", file=sys.stderr)
        config = replace(config, expect=kept)
    expect.validate(config.source, config.expect, runs, config.analysis.progress)
    return config


def say_what_is_left_out(source: str, runs: pd.DataFrame, progress_on: bool = False) -> None:
    """One line per reason that the per-neuron analyses (`analysis.left_out`) or, asked for, the progress measures
    (`progress.left_out`) do not apply to some of the runs."""
    statics = [static for static, _ in plan.groups(runs)]
    lines = {f"per-neuron analyses (IPR, frequencies, pruning) left out: {analysis.left_out(s)}"
             for s in statics if analysis.left_out(s)}
    if progress_on:
        lines |= {f"progress measures left out: {progress.left_out(s)}" for s in statics if progress.left_out(s)}
    for line in sorted(lines):
        print(f"grokjax: {source}: {line}", file=sys.stderr)


def planned(runs: pd.DataFrame, source: str, machine: Machine, chunk_size: int | None, step: str,
            first: int = 0) -> list[Chunk]:
    """The plan of these runs; with step "tuned", the plan's ends are timed first (`tuning.time_ends`)."""
    timings = tuning.time_ends(plan.ends(plan.cut(runs, source, machine, chunk_size, first))) if step == "tuned" else None
    return plan.plan(runs, source, machine, chunk_size, step, first, timings)


def plan_or_resume(folder: Path, config: SweepConfig, runs: pd.DataFrame, machine: Machine,
                   overrides: list[str] | tuple[str, ...], chunk_size: int | None, step: str, overwrite: bool,
                   restart: bool) -> tuple[list[Chunk], dict]:
    """Every process's chunks and the finished ones' records: the folder's saved plan when it holds this config's
    (a resume), else a new plan that process 0 makes (and times), writes, and the others read back."""
    held = checkpoints.check_owner(folder, config, overwrite)
    same_config = held is not None
    saved = None if restart else checkpoints.read_plan(folder)
    resuming = saved is not None and same_config and saved["config_hash"] in held.plan_hashes()
    if resuming and config.analysis.min_prune and not held.analysis.min_prune and not results.has_params(folder):
        raise ConfigError(f"{config.source}: analysis.min_prune = true needs the trained weights, and {folder} was "
                          "swept without them (--no-params); allowed: min_prune = false, or --restart to train again")
    process, processes = jax.process_index(), jax.process_count()
    chunks = None
    if resuming:
        chunks = plan.from_json(saved["chunks"], runs, machine)
    elif process == 0:
        chunks = planned(runs, config.source, machine, chunk_size, step)
    barrier("grokjax-sweep-checked")  # every process has checked before process 0 writes
    if process == 0 and not resuming:
        checkpoints.clear(folder, tables=not same_config or processes > 1)
        checkpoints.write_config(folder, config.to_dict(), config.source, list(overrides))
        checkpoints.write_plan(folder, config.training_hash(), plan.to_json(chunks))
    elif process == 0 and held.hash() != config.hash():  # new phases, claims, plot or name: read off the same runs
        checkpoints.write_config(folder, config.to_dict(), config.source, list(overrides))
    if process == 0 and resuming and processes > 1:
        checkpoints.clear_tables(folder)  # parts of another process count would mix with this run's
    barrier("grokjax-sweep-start")
    if chunks is None:
        chunks = plan.from_json(checkpoints.read_plan(folder)["chunks"], runs, machine)
    return chunks, checkpoints.read_records(folder) if resuming else {}


def provenance(config: SweepConfig, overrides: list[str] | tuple[str, ...], step: str, machine: Machine,
               started: str, wall: float) -> dict[str, Any]:
    """What made these results: the exact config, versions and revision, device, time."""
    return {
        "config": config.to_dict(),
        "config_hash": config.hash(),
        "training_hash": config.training_hash(),
        "source": config.source,
        "overrides": list(overrides),
        "versions": versions(),
        "device": device_info(),
        "process": {"index": jax.process_index(), "count": jax.process_count()},
        "started": started,
        "finished": now(),
        "wall_time_s": round(wall, 3),
        "step_choice": step,  # auto: the cost model; tuned: timed on this machine; else fixed
        "compile_cache": jax.config.jax_compilation_cache_dir or "off",
    }


def run_steps_per_s(todo: list[Chunk], wall: float) -> float:
    """Training steps per second over the runs trained now (padding runs not counted)."""
    return round(sum(int(c.runs.steps.sum()) for c in todo) / wall, 1) if todo else 0.0


def chunk_figures(chunks: list[Chunk], mine: list[Chunk], todo: list[Chunk], wall: float,
                  machine: Machine) -> dict[str, Any]:
    """How the runs were cut and computed, and how fast they trained."""
    return {
        "run_steps_per_s": run_steps_per_s(todo, wall),
        "chunks": len(chunks),
        "chunks_resumed": len(mine) - len(todo),
        "compiled_programs": len({c.static for c in todo}),
        "chunk_sizes": [c.size for c in mine],
        "useful_work": plan.useful_work(mine),
        "step": plan.formulations(mine, machine),
    }


def finish(folder: Path, plots: bool) -> SweepOutcome:
    """The folder's results, read back whole, and its charts drawn (Altair loads only then)."""
    outcome = SweepOutcome(folder, results.load(folder))
    if plots:
        from grokjax.charts import drawing

        res = outcome.results
        drawing.write_all(folder, res.runs, res.curves, res.neurons, cells.chosen_axes(res.meta))
    return outcome
