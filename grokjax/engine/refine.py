"""`grokjax refine RESULTS_DIR --budget N [--rounds K]`: more runs where the phase boundaries are.

Each round proposes new runs from the folder's runs (`boundaries.propose`: midpoints between
neighbouring cells that disagree), persists the proposal in `.grokjax/rounds/round_NNNN/`
(its runs, their plan, its provenance), trains it with the sweep's stages (`plan.plan`,
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

import datetime as dt
import math
import time
from pathlib import Path

import pandas as pd

from grokjax.config.sweep_file import ConfigError, SweepConfig, load
from grokjax.engine import boundaries, plan, runs_table, sweep, tuning
from grokjax.store import checkpoints, lock, results
from grokjax.store.checkpoints import Round
from grokjax.summary import expect, summarize
from grokjax.summary.cells import SEED_AXES, grid_axes


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def finished_sweep(folder: Path) -> tuple[SweepConfig, pd.DataFrame, list[plan.Chunk]]:
    """The folder's config, its sweep's runs and chunks; a ConfigError unless the sweep finished here."""
    if not (folder / "runs.parquet").exists() or not (folder / "sweep.toml").is_file():
        raise ConfigError(f"{folder}: no results here (runs.parquet, sweep.toml); refine starts from a finished "
                          "grokjax sweep's folder")
    config = load(folder / "sweep.toml")
    runs = runs_table.expand(config)
    x, y = grid_axes(runs)
    if runs[x].nunique() < 2 and runs[y].nunique() < 2:
        raise ConfigError(f"{folder}: the sweep varies neither {x} nor {y}; refine needs a heatmap axis with "
                          "two numeric values or more (data_fraction, corruption_fraction, train_size, "
                          "weight_decay or dropout)")
    saved = checkpoints.read_plan(folder)
    chunks = plan.from_json(saved["chunks"], runs) if saved and saved["config_hash"] == config.hash() else []
    recorded = checkpoints.read_records(folder)
    if not chunks or any(c.index not in recorded for c in chunks):
        raise ConfigError(f"{folder}: the sweep's chunk records (.grokjax/) are missing or unfinished; refine "
                          f"trains beside them: run grokjax sweep {folder / 'sweep.toml'} --out {folder} first")
    return config, runs, chunks


def continued_call(history: list[Round], budget: int, rounds: int) -> dict | None:
    """The call (budget, rounds, first round) that the same command left unfinished, or None."""
    if not history:
        return None
    last, call = history[-1], history[-1].info["call"]
    same = call["budget"] == budget and call["rounds"] == rounds
    return call if same and (not last.finished or last.index < call["first"] + rounds - 1) else None


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
    limits = (("--budget", budget, 1), ("--rounds", rounds, 1), ("--checkpoint-every", checkpoint_every, 0))
    for flag, value, least in limits:
        if value < least:
            raise ConfigError(f"command line: {flag} = {value}; allowed: an integer >= {least}")
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError(f"command line: --chunk-size = {chunk_size}; allowed: an integer >= 1")
    with lock.hold(folder, f"grokjax refine {folder}", wait, create=False):
        config, runs, chunks = finished_sweep(folder)
        step = tuning.default_step() if step is None else step
        tuning.check_step(step, "command line")

        history = checkpoints.read_rounds(folder)
        call = continued_call(history, budget, rounds) or {
            "budget": budget, "rounds": rounds, "first": history[-1].index + 1 if history else 1}
        runs, round_chunks, _ = sweep.with_rounds(folder, runs)
        chunks = chunks + round_chunks
        recorded = checkpoints.read_records(folder)
        trained: list[dict] = []

        def train_round(rnd: Round) -> pd.DataFrame:
            """Train a persisted round (resuming its recorded chunks), rewrite the tables, record it as finished;
            returns the runs table, every round's runs included."""
            nonlocal runs, chunks
            mine = plan.from_json(rnd.plan, rnd.runs, rnd.first_chunk)
            t0 = time.perf_counter()
            todo = sweep.train(mine, recorded, config, folder, f"{config.name} round {rnd.index}", progress=progress,
                               warm_charts=plots, checkpoint_every=checkpoint_every,
                               keep_params=(folder / results.PARAMS_DIR).is_dir())
            wall = time.perf_counter() - t0
            rnd.info.update(finished=now(), wall_time_s=round(wall, 3), chunks=len(mine),
                            chunks_resumed=len(mine) - len(todo), run_steps_per_s=round(sum(int(c.runs.steps.sum()) for c in todo) / wall, 1) if todo else 0.0)
            runs, chunks = pd.concat([runs, rnd.runs]), chunks + mine
            table, curves, neurons = summarize.tables(runs, [recorded[c.index] for c in chunks], config)
            meta = results.read_meta(folder / "runs.parquet")
            meta.update(runs=len(table), rounds=[r.info for r in history if r.finished],
                        expect=expect.evaluate(config.expect, table))
            results.write(folder, table, curves, meta, neurons)
            checkpoints.update_round(folder, rnd)  # after the tables: a kill between leaves it to finish again, at no cost
            trained.append(rnd.info)
            return table

        if history and not history[-1].finished:
            table = train_round(history[-1])
        else:
            table = summarize.tables(runs, [recorded[c.index] for c in chunks], config)[0]
        while True:
            index = history[-1].index + 1 if history else 1
            left_rounds = call["first"] + rounds - index
            left = budget - sum(r.info["proposed"] for r in history if r.info["call"] == call)
            if left_rounds < 1 or left < 1:
                break
            share = math.ceil(left / left_rounds)
            new = boundaries.propose(table, share)
            if new.empty:
                break
            first_chunk = max(c.index for c in chunks) + 1
            info = {"round": index, "call": call, "budget": share, "proposed": len(new),
                    "points": len(new.drop_duplicates([c for c in new if c not in ("run_id", *SEED_AXES)])),
                    "run_ids": [int(new.run_id.min()), int(new.run_id.max())], "started": now()}
            rnd = Round(index, new, plan.to_json(plan.plan(new, config.source, chunk_size, step, first=first_chunk)),
                        first_chunk, info)
            checkpoints.write_round(folder, rnd)
            history.append(rnd)
            table = train_round(rnd)

        outcome = sweep.SweepOutcome(folder, results.load(folder))
        if plots:
            from grokjax.charts import drawing  # Altair loads only when charts are drawn

            drawing.write_all(folder, outcome.results.runs, outcome.results.curves, outcome.results.neurons)
        return outcome, trained
