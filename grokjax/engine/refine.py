"""`grokjax refine RESULTS_DIR --budget N [--rounds K]`: more runs where the phase boundaries are.

Each round proposes new runs from the folder's runs (`boundaries.propose`: midpoints between
neighbouring cells that disagree), persists the proposal in `.grokjax/rounds/round_NNNN/`
(its runs, their plan, its provenance), trains it with the sweep's stages (`sweep.planned`,
`sweep.train`, `summarize.tables`, `results.write`) into the same folder, and rewrites the
tables: runs.parquet grows by the round's runs, whose run_ids follow the largest in use, and
the provenance lists the rounds (`rounds`: budget, proposed runs and points, times). The
charts are redrawn at the end; in the phase diagram, refined cells are smaller.

A call's budget N is spread over its K rounds (each gets its share of what is left, so one
that proposes less leaves more to the next); it stops early when no pair disagrees.
Resuming: the proposal follows from the runs alone and is written before training, and a
round's chunks are recorded as a sweep's are. So a round stopped by Ctrl-C or a kill is
finished first by the next `grokjax refine` on the folder, from its records and checkpoints;
run with the same N and K, that call then goes on with the rounds it has left, as if never
stopped. Run again once finished, it refines further.

`grokjax sweep` run again on the folder (the same config) keeps the finished rounds' runs in
the tables; --restart, or another config, starts over without them. `grokjax check` and
`grokjax plot` read runs.parquet, so they see every run.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from grokjax.config.sweep_file import ConfigError, SweepConfig, load
from grokjax.engine import boundaries, plan, runs_table, sweep
from grokjax.engine.machine import Machine
from grokjax.engine.machine import local as local_machine
from grokjax.store import checkpoints, lock, results
from grokjax.store.checkpoints import Round
from grokjax.summary import expect, summarize
from grokjax.summary.cells import SEED_AXES, grid_axes


@dataclass
class Refinement:
    """What refine carries from round to round: the folder's runs and chunks so far (the sweep's and each
    finished round's), the chunks' records, and the rounds."""

    folder: Path
    config: SweepConfig
    machine: Machine
    runs: pd.DataFrame
    chunks: list[plan.Chunk]
    recorded: dict
    history: list[Round]


def run(
    folder: str | Path,
    budget: int,
    rounds: int = 1,
    chunk_size: int | None = None,
    progress: bool = True,
    plots: bool = True,
    checkpoint_every: int = 10,
    step: str | None = None,
    wait: bool = False,
) -> tuple[sweep.SweepOutcome, list[dict]]:
    """Refine the phase boundaries of a finished sweep's folder with up to `budget` new runs over `rounds`
    rounds (see the module docstring); returns the folder's results and the provenance of the rounds
    this call trained. Trained weights are kept (params/) when the sweep kept them. The folder is held while
    refine writes it (`grokjax.store.lock`): a folder that another command is writing is refused, or with wait=True
    waited for."""
    folder = Path(folder)
    for flag, value in (("--budget", budget), ("--rounds", rounds)):
        if value < 1:
            raise ConfigError(f"command line: {flag} = {value}; allowed: an integer >= 1")
    step = sweep.check_options("command line", chunk_size, checkpoint_every, step)
    with lock.hold(folder, f"grokjax refine {folder}", wait, create=False):
        state = refinement(folder)
        call = continued_call(state.history, budget, rounds) or {
            "budget": budget, "rounds": rounds, "first": state.history[-1].index + 1 if state.history else 1}
        train = functools.partial(train_round, state, progress=progress, plots=plots,
                                  checkpoint_every=checkpoint_every)
        trained = []
        if state.history and not state.history[-1].finished:
            table = train(state.history[-1])
            trained.append(state.history[-1].info)
        else:
            table = summarize.tables(state.runs, [state.recorded[c.index] for c in state.chunks], state.config)[0]
        while (rnd := next_round(state, table, call, chunk_size, step)) is not None:
            table = train(rnd)
            trained.append(rnd.info)
        return sweep.finish(folder, plots), trained


def refinement(folder: Path) -> Refinement:
    """The folder as refine finds it: a finished sweep (a ConfigError otherwise), its finished rounds, and the
    round a stopped call left unfinished."""
    if not (folder / "runs.parquet").exists() or not (folder / "sweep.toml").is_file():
        raise ConfigError(f"{folder}: no results here (runs.parquet, sweep.toml); refine starts from a finished "
                          "grokjax sweep's folder")
    config = load(folder / "sweep.toml")
    runs = runs_table.expand(config)
    x, y = grid_axes(runs, config.plot_axes())
    if runs[x].nunique() < 2 and runs[y].nunique() < 2:
        raise ConfigError(f"{folder}: the sweep varies neither {x} nor {y}; refine needs a heatmap axis with "
                          "two numeric values or more (data_fraction, corruption_fraction, train_size, "
                          "weight_decay or dropout)")
    machine = local_machine()
    saved = checkpoints.read_plan(folder)
    chunks = plan.from_json(saved["chunks"], runs, machine) if saved and saved["config_hash"] in config.plan_hashes() else []
    recorded = checkpoints.read_records(folder)
    if not chunks or any(c.index not in recorded for c in chunks):
        raise ConfigError(f"{folder}: the sweep's chunk records (.grokjax/) are missing or unfinished; refine "
                          f"trains beside them: run grokjax sweep {folder / 'sweep.toml'} --out {folder} first")
    runs, round_chunks, _ = sweep.with_rounds(folder, runs, machine)
    return Refinement(folder, config, machine, runs, chunks + round_chunks, recorded, checkpoints.read_rounds(folder))


def continued_call(history: list[Round], budget: int, rounds: int) -> dict | None:
    """The call (budget, rounds, first round) that the same command left unfinished, or None."""
    if not history:
        return None
    last, call = history[-1], history[-1].info["call"]
    same = call["budget"] == budget and call["rounds"] == rounds
    return call if same and (not last.finished or last.index < call["first"] + rounds - 1) else None


def next_round(state: Refinement, table: pd.DataFrame, call: dict, chunk_size: int | None, step: str) -> Round | None:
    """The call's next round, proposed from the runs so far, planned and persisted (so a kill resumes it); None when
    the call has no rounds or budget left, or no neighbouring cells disagree."""
    index = state.history[-1].index + 1 if state.history else 1
    left_rounds = call["first"] + call["rounds"] - index
    left = call["budget"] - sum(r.info["proposed"] for r in state.history if r.info["call"] == call)
    if left_rounds < 1 or left < 1:
        return None
    share = math.ceil(left / left_rounds)
    new = boundaries.propose(table, share, axes=state.config.plot_axes())
    if new.empty:
        return None
    first_chunk = max(c.index for c in state.chunks) + 1
    info = {"round": index, "call": call, "budget": share, "proposed": len(new),
            "points": len(new.drop_duplicates([c for c in new if c not in ("run_id", *SEED_AXES)])),
            "run_ids": [int(new.run_id.min()), int(new.run_id.max())], "started": sweep.now()}
    chunks = sweep.planned(new, state.config.source, state.machine, chunk_size, step, first=first_chunk)
    rnd = Round(index, new, plan.to_json(chunks), first_chunk, info)
    checkpoints.write_round(state.folder, rnd)
    state.history.append(rnd)
    return rnd


def train_round(state: Refinement, rnd: Round, progress: bool, plots: bool, checkpoint_every: int) -> pd.DataFrame:
    """Train a persisted round (resuming its recorded chunks), rewrite the tables, record it as finished;
    returns the runs table, every round's runs included."""
    folder, config = state.folder, state.config
    mine = plan.from_json(rnd.plan, rnd.runs, state.machine, rnd.first_chunk)
    t0 = time.perf_counter()
    todo = sweep.train(mine, state.recorded, config, folder, f"{config.name} round {rnd.index}", progress=progress,
                       warm_charts=plots, checkpoint_every=checkpoint_every,
                       keep_params=(folder / results.PARAMS_DIR).is_dir())
    wall = time.perf_counter() - t0
    rnd.info.update(finished=sweep.now(), wall_time_s=round(wall, 3), chunks=len(mine),
                    chunks_resumed=len(mine) - len(todo), run_steps_per_s=sweep.run_steps_per_s(todo, wall))
    state.runs, state.chunks = pd.concat([state.runs, rnd.runs]), state.chunks + mine
    table, curves, neurons = summarize.tables(state.runs, [state.recorded[c.index] for c in state.chunks], config)
    meta = results.read_meta(folder / "runs.parquet")
    meta.update(runs=len(table), rounds=[r.info for r in state.history if r.finished],
                expect=expect.evaluate(config.expect, table))
    results.write(folder, table, curves, meta, neurons)
    checkpoints.update_round(folder, rnd)  # after the tables: a kill between leaves it to finish again, at no cost
    return table
