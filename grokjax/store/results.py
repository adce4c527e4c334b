"""The results folder: runs, curves and neurons .parquet, sweep.toml; written atomically, read back whole.

Provenance (resolved config, source file, overrides, versions, device, times)
is stored as JSON under the key `grokjax` in every Parquet file's metadata.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from grokjax.config.fields import (
    COLLAPSE_MEASURES,
    FIELDS,
    OPEN_COLUMNS,
    PROGRESS_MEASURES,
    PROGRESS_RUN_COLUMNS,
    config_columns,
    open_keys,
)
from grokjax.store import files

RUN_COLUMNS = (
    *config_columns(),
    "train_loss", "test_loss", "train_acc", "test_acc", "train_acc_clean", "train_acc_corrupted",
    "weight_norm", "ipr_mean", "frac_periodic", "min_prune", "max_test_acc", "step_train_acc_90", "step_test_acc_90",
    "phase", "dynamics", "grok_delay", "status",
)  # fmt: skip
METRIC_COLUMNS = (
    "train_loss", "test_loss", "train_acc", "test_acc", "train_acc_clean", "train_acc_corrupted", "weight_norm",
    "ipr_mean",
)  # fmt: skip
CURVE_COLUMNS = ("run_id", "step", *METRIC_COLUMNS)
PARAMS_DIR = "params"
NEURON_COLUMNS = ("run_id", "step", "neuron", "ipr_u", "ipr_v", "ipr_w", "ipr", "dominant_frequency", "norm")
META_KEY = b"grokjax"
TABLES = ("runs.parquet", "curves.parquet", "neurons.parquet", "pruning.parquet")


@dataclass
class Results:
    """A results folder in memory: one row per run, per run and logged step, per run and neuron; provenance."""

    runs: pd.DataFrame
    curves: pd.DataFrame
    meta: dict[str, Any]
    neurons: pd.DataFrame = dataclasses.field(default_factory=lambda: pd.DataFrame(columns=list(NEURON_COLUMNS)))


def write_parquet(path: Path, frame: pd.DataFrame, meta: dict[str, Any] | None = None, index: bool = False) -> None:
    """A frame as Parquet, atomically; with the provenance `meta` in its schema metadata when given."""
    table = pa.Table.from_pandas(frame, preserve_index=index)
    if meta is not None:
        table = table.replace_schema_metadata({**table.schema.metadata, META_KEY: json.dumps(meta).encode()})
    files.atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def write(
    folder: Path,
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    meta: dict[str, Any],
    neurons: pd.DataFrame | None = None,
    part: int | None = None,
) -> None:
    """Write the tables of a results folder (each file atomically); neurons.parquet when given.

    With `part = i` (one process of several), the tables go to folders of parts,
    runs.parquet/part-0000i.parquet and so on, which `pd.read_parquet` reads as one
    table. runs.parquet (or a part of it) is written last, so a folder with it is
    complete. (sweep.toml is written when the sweep starts: `write_config`.)
    """
    folder.mkdir(parents=True, exist_ok=True)
    if part is None:
        for name in TABLES:  # a folder of parts from an earlier multi-process sweep
            if (folder / name).is_dir():
                shutil.rmtree(folder / name)

    def target(name: str) -> Path:
        if part is None:
            return folder / name
        (folder / name).mkdir(exist_ok=True)
        return folder / name / f"part-{part:05d}.parquet"

    optional = [m for m in (*COLLAPSE_MEASURES, *PROGRESS_MEASURES) if m in curves]
    write_parquet(target("curves.parquet"), curves[[*CURVE_COLUMNS, *optional]], meta)
    if neurons is not None or part is None:
        if neurons is None:
            neurons = pd.DataFrame({c: pd.Series(dtype="float64") for c in NEURON_COLUMNS})
        write_parquet(target("neurons.parquet"), neurons[list(NEURON_COLUMNS)], meta)
    write_parquet(target("runs.parquet"), runs[run_columns(runs)], meta)


def missing_defaults(runs: pd.DataFrame) -> list[tuple[str, Any]]:
    """(column, value) of the config columns a runs table lacks: its fields' defaults ("{}" for the keys of open
    tasks, models and optimizers)."""
    defaults = {**{f.column_name: f.default for f in FIELDS if f.column_name}, **dict.fromkeys(OPEN_COLUMNS, "{}")}
    return [(c, defaults[c]) for c in config_columns() if c not in runs and c in defaults]


def run_columns(runs: pd.DataFrame) -> list[str]:
    """runs.parquet's columns: `RUN_COLUMNS`, with the keys of open tasks and models after the config columns, and
    what [analysis] progress adds where the runs have it."""
    own = open_keys(*(runs[c].unique() for c in OPEN_COLUMNS))
    at = RUN_COLUMNS.index("n_train")
    return [*RUN_COLUMNS[:at], *own, *RUN_COLUMNS[at:], *(c for c in (*COLLAPSE_MEASURES, *PROGRESS_RUN_COLUMNS)
                                                            if c in runs)]


def config_of(runs: pd.DataFrame) -> pd.DataFrame:
    """The config columns of a runs table (`config_columns`, and the keys of open tasks and models)."""
    return runs[[c for c in config_columns() if c in runs] + open_keys(*(runs[c].unique() for c in OPEN_COLUMNS))]


def write_params(folder: Path, index: int, run_ids: np.ndarray, params: Any) -> None:
    """params/chunk_NNNNN.npz, NNNNN the chunk's index: `run_id` and each parameter array stacked over its runs.

    Keys are the parameter paths (`files.tree_key`: for the mlp, U/embedding, V/embedding,
    W/kernel); padding runs are dropped.
    """
    target = folder / PARAMS_DIR
    target.mkdir(parents=True, exist_ok=True)
    arrays = {"run_id": np.asarray(run_ids, np.int64)}
    arrays.update({key: value[: len(run_ids)] for key, value in files.tree_arrays(params).items()})
    files.atomic_write(target / f"chunk_{index:05d}.npz", lambda tmp: files.savez(tmp, arrays))


def has_params(folder: str | Path) -> bool:
    """Whether the folder holds trained weights (params/)."""
    return any((Path(folder) / PARAMS_DIR).glob("chunk_*.npz"))


def load_params(folder: str | Path, run_ids: list[int] | np.ndarray) -> dict[str, Any]:
    """The stored parameters of the given runs as a nested dict of arrays with a leading run axis, in that order."""
    archives = sorted((Path(folder) / PARAMS_DIR).glob("chunk_*.npz"))
    if not archives:
        raise FileNotFoundError(f"{folder}: no stored parameters (params/); run the sweep without --no-params")
    found: dict[int, tuple[Path, int]] = {}
    for path in archives:
        with np.load(path) as data:
            found.update({int(r): (path, i) for i, r in enumerate(data["run_id"])})
    missing = [int(r) for r in run_ids if int(r) not in found]
    if missing:
        raise KeyError(f"{folder}: no stored parameters for runs {missing[:5]}")
    rows: dict[str, list[np.ndarray]] = {}
    cache: dict[Path, dict[str, np.ndarray]] = {}
    for r in run_ids:
        path, i = found[int(r)]
        if path not in cache:
            with np.load(path) as data:
                cache[path] = {k: data[k] for k in data.files if k != "run_id"}
        for key, value in cache[path].items():
            rows.setdefault(key, []).append(value[i])
    return files.nested({key: np.stack(values) for key, values in rows.items()})


def write_pruning(folder: str | Path, curves: pd.DataFrame) -> None:
    """pruning.parquet, with the provenance of the runs it was computed from."""
    folder = Path(folder)
    write_parquet(folder / "pruning.parquet", curves, read_meta(folder / "runs.parquet"))


def final_neurons(neurons: pd.DataFrame) -> pd.DataFrame:
    """The rows of each run's last step (the trained network), when neurons.parquet holds several steps."""
    last = neurons.groupby("run_id").step.transform("max")
    return neurons[neurons.step == last]


def read_meta(path: str | Path) -> dict[str, Any]:
    """The provenance stored in a grokjax Parquet file.

    For a folder of parts: part 0's, with `runs` the total and `parts` listing each
    process's own (process, runs, device, started, finished, wall time, speed).
    """
    path = Path(path)
    if path.is_file():
        return json.loads((pq.read_schema(path).metadata or {}).get(META_KEY, b"{}"))
    parts = [read_meta(part) for part in sorted(path.glob("part-*.parquet"))]
    keys = ("process", "runs", "device", "started", "finished", "wall_time_s", "run_steps_per_s", "chunk_sizes")
    return {**parts[0], "runs": sum(p.get("runs", 0) for p in parts), "parts": [{k: p.get(k) for k in keys} for p in parts]}


def load(folder: str | Path) -> Results:
    """Read a results folder: `load("results/quickstart").runs` is a DataFrame."""
    folder = Path(folder)
    runs_path = folder / "runs.parquet"
    if not runs_path.exists():
        raise FileNotFoundError(f"{folder}: no runs.parquet here; is it a grokjax results folder?")
    neurons_path = folder / "neurons.parquet"
    runs = read_table(runs_path, ["run_id"])
    for column, default in missing_defaults(runs):  # a folder written before the field existed ran at its default
        runs.insert(len(runs.columns), column, [default] * len(runs))
    return Results(
        runs=runs,
        curves=read_table(folder / "curves.parquet", ["run_id", "step"]),
        meta=read_meta(runs_path),
        **({"neurons": read_table(neurons_path, ["run_id", "step", "neuron"])} if neurons_path.exists() else {}),
    )


def read_table(path: Path, order: list[str]) -> pd.DataFrame:
    """A table from one Parquet file or a folder of parts (one per process), sorted by `order`."""
    frame = pd.read_parquet(path)
    return frame if path.is_file() else frame.sort_values(order, ignore_index=True)
