"""A results folder as a sweep in progress: whose it is, its plan, its finished chunks, its checkpoints, its rounds.

Everything a resume starts from lives in `.grokjax/` inside the results folder: the
plan (`plan.to_json`), a record per finished chunk (its rows, written as it
finishes), a segment checkpoint per chunk in training (state arrays keyed by
their path in the state), and one folder per refinement round (`grokjax.engine.refine`):
`rounds/round_NNNN/` with its proposed runs and their plan. A round's chunks are
numbered after all earlier chunks, so their records and params sit beside the sweep's
under names of their own. The folder's sweep.toml says which config owns it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import pandas as pd
import tomli_w

from grokjax.core.training import RunState
from grokjax.store import files, results
from grokjax.store.results import PARAMS_DIR, TABLES

STATE_DIR = ".grokjax"  # while a sweep runs: its plan, and a record per finished chunk (what a resume starts from)
ROUNDS_DIR = "rounds"  # in STATE_DIR: a folder per refinement round


def owner(folder: Path) -> Any:
    """The config whose results `folder` holds (from its sweep.toml), "unreadable", or None if none."""
    from grokjax.config.sweep_file import ConfigError, load

    path = folder / "sweep.toml"
    if not path.is_file():
        return None
    try:
        return load(path)
    except ConfigError:
        return "unreadable"


def check_owner(folder: Path, config: Any, overwrite: bool) -> Any:
    """The config `folder` holds results of when it trained as this one does (`SweepConfig.training_hash`; it may
    differ in what is read off the runs), else None; another config's results are refused unless overwrite."""
    from grokjax.config.sweep_file import ConfigError

    old = owner(folder)
    if old is None:
        return None
    trained_alike = old != "unreadable" and old.training_hash() == config.training_hash()
    if not trained_alike and not overwrite:
        shown = "unreadable" if old == "unreadable" else old.training_hash()
        raise ConfigError(
            f"{config.source}: {folder} holds the results of another config (training hash {shown}; this one's is "
            f"{config.training_hash()}); give another --out, or --overwrite to replace them"
        )
    return old if trained_alike else None


def write_config(folder: Path, config: dict[str, Any], source: str, overrides: list[str]) -> None:
    """sweep.toml: the resolved config, with every default written out; `grokjax sweep` on it runs it again."""
    folder.mkdir(parents=True, exist_ok=True)
    header = f"# Resolved sweep config written by grokjax; run it again with: grokjax sweep {folder / 'sweep.toml'}\n"
    header += f"# source: {source}; overrides: {overrides or 'none'}\n"
    text = header + tomli_w.dumps(config)
    files.atomic_write(folder / "sweep.toml", lambda tmp: tmp.write_text(text, encoding="utf-8"))


def clear_tables(folder: Path) -> None:
    """Remove the tables (files, or folders of parts) that an earlier sweep wrote into `folder`."""
    for name in TABLES:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def clear(folder: Path, tables: bool = True) -> None:
    """Remove what an earlier sweep into `folder` left: its records, checkpoints and stored weights, and
    (with tables) its tables. A sweep of the same config keeps the old tables until the new ones replace them."""
    if tables:
        clear_tables(folder)
    for old in (folder / PARAMS_DIR).glob("chunk_*.npz"):
        old.unlink()
    shutil.rmtree(folder / STATE_DIR, ignore_errors=True)


def write_plan(folder: Path, config_hash: str, chunks: list[dict[str, Any]]) -> None:
    """The sweep's plan (`plan.to_json`), so that a resumed sweep trains exactly the same chunks the same way."""
    (folder / STATE_DIR).mkdir(parents=True, exist_ok=True)
    text = json.dumps({"config_hash": config_hash, "chunks": chunks})
    files.atomic_write(folder / STATE_DIR / "plan.json", lambda tmp: tmp.write_text(text))


def read_plan(folder: Path) -> dict[str, Any] | None:
    """The plan of the sweep that was started in `folder`, or None (none, unreadable, or of an older grokjax)."""
    try:
        saved = json.loads((folder / STATE_DIR / "plan.json").read_text())
    except (OSError, ValueError):
        return None
    return saved if all("formulation" in c for c in saved.get("chunks", [None])) else None


def write_record(folder: Path, index: int, final: pd.DataFrame, curves: pd.DataFrame,
                 neurons: list[pd.DataFrame]) -> None:
    """A finished chunk's per-run rows, curves and neuron rows; the `done` marker is written last."""
    target = folder / STATE_DIR / f"chunk_{index:05d}"
    target.mkdir(parents=True, exist_ok=True)
    results.write_parquet(target / "final.parquet", final, index=True)
    results.write_parquet(target / "curves.parquet", curves)
    if neurons:
        results.write_parquet(target / "neurons.parquet", pd.concat(neurons, ignore_index=True))
    files.atomic_write(target / "done", lambda tmp: tmp.write_text("done\n"))
    (target / "progress.npz").unlink(missing_ok=True)  # the record supersedes any segment checkpoint


def read_records(folder: Path) -> dict[int, tuple[pd.DataFrame, pd.DataFrame, list[pd.DataFrame]]]:
    """The finished chunks' records by chunk index: (final, curves, neuron frames). Unfinished ones are skipped."""
    records = {}
    for target in sorted((folder / STATE_DIR).glob("chunk_*")):
        if (target / "done").is_file():
            neurons = target / "neurons.parquet"
            records[int(target.name.split("_")[1])] = (
                pd.read_parquet(target / "final.parquet"),
                pd.read_parquet(target / "curves.parquet"),
                [pd.read_parquet(neurons)] if neurons.is_file() else [],
            )
    return records


class Progress(NamedTuple):
    """Runs part-way through training, on the host: what a segment checkpoint holds."""

    next_log: int  # index of the next logged step to train
    state: RunState
    logs: list[dict[str, np.ndarray]]
    neurons: list[tuple[int, dict[str, np.ndarray]]]


def write_progress(folder: Path, index: int, progress: Progress) -> None:
    """A chunk's segment checkpoint: state arrays keyed by their path in the state
    (`files.tree_key`: e.g. `state/params/U/embedding`), the metrics logged so far, neuron snapshots."""
    arrays = {"next_log": np.asarray(progress.next_log), **files.tree_arrays(progress.state, "state/")}
    for key in progress.logs[0] if progress.logs else ():
        arrays[f"log/{key}"] = np.stack([log[key] for log in progress.logs])
    arrays["neuron_steps"] = np.asarray([step for step, _ in progress.neurons], np.int64)
    for j, (_, stats) in enumerate(progress.neurons):
        arrays.update({f"neurons/{j}/{key}": value for key, value in stats.items()})
    target = folder / STATE_DIR / f"chunk_{index:05d}"
    target.mkdir(parents=True, exist_ok=True)
    files.atomic_write(target / "progress.npz", lambda tmp: files.savez(tmp, arrays))


def read_progress(folder: Path, index: int, state_shape: Callable[[], Any]) -> Progress | None:
    """The chunk's segment checkpoint as a `Progress`, its state shaped like `state_shape()`, or None
    (none, or one whose state does not have that shape)."""
    path = folder / STATE_DIR / f"chunk_{index:05d}" / "progress.npz"
    if not path.is_file():
        return None
    state_like = state_shape()
    with np.load(path) as data:
        names = set(data.files)
        paths = files.tree_keys(state_like, "state/")
        if not set(paths) <= names:
            return None
        leaves = [data[path] for path in paths]
        keys = sorted({name.split("/", 1)[1] for name in names if name.startswith("log/")})
        logged = {key: data[f"log/{key}"] for key in keys}
        n_logs = int(data["next_log"])
        logs = [{key: logged[key][i] for key in keys} for i in range(n_logs)]
        neurons = []
        for j, step in enumerate(data["neuron_steps"]):
            prefix = f"neurons/{j}/"
            neurons.append((int(step), {n[len(prefix):]: data[n] for n in names if n.startswith(prefix)}))
    state = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(state_like), leaves)
    return Progress(n_logs, state, logs, neurons)


@dataclass
class Round:
    """A refinement round (`grokjax.engine.refine`): its proposed runs, their plan, and what it was given and did."""

    index: int  # 1, 2, ... in the order they were proposed (the sweep's grid is round 0)
    runs: pd.DataFrame  # the proposed runs (config columns), indexed by run_id
    plan: list[dict[str, Any]]  # its chunks (`plan.to_json`)
    first_chunk: int  # the index of its first chunk: after the sweep's and earlier rounds'
    info: dict[str, Any]  # its provenance: budget, proposed, call, started; finished and times once trained

    @property
    def finished(self) -> bool:
        return "finished" in self.info


def _round_dir(folder: Path, index: int) -> Path:
    return folder / STATE_DIR / ROUNDS_DIR / f"round_{index:04d}"


def write_round(folder: Path, rnd: Round) -> None:
    """A round as proposed, before it trains: its runs, then round.json (plan and provenance), which makes it one."""
    target = _round_dir(folder, rnd.index)
    target.mkdir(parents=True, exist_ok=True)
    results.write_parquet(target / "runs.parquet", rnd.runs)
    update_round(folder, rnd)


def update_round(folder: Path, rnd: Round) -> None:
    """(Re)write a round's round.json with its plan and provenance as they now stand (`finished` once trained)."""
    text = json.dumps({"first_chunk": rnd.first_chunk, "plan": rnd.plan, "info": rnd.info})
    files.atomic_write(_round_dir(folder, rnd.index) / "round.json", lambda tmp: tmp.write_text(text))


def read_rounds(folder: Path) -> list[Round]:
    """The folder's refinement rounds in order (a proposal killed before its round.json was written is none)."""
    rounds = []
    for target in sorted((folder / STATE_DIR / ROUNDS_DIR).glob("round_*")):
        if (target / "round.json").is_file():
            saved = json.loads((target / "round.json").read_text())
            runs = pd.read_parquet(target / "runs.parquet")
            rounds.append(Round(int(target.name.split("_")[1]), runs.set_index(runs.run_id.to_numpy()),
                                saved["plan"], saved["first_chunk"], saved["info"]))
    return rounds
