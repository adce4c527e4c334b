"""The results folder: runs, curves and neurons .parquet, sweep.toml; written atomically, read back whole.

Provenance (resolved config, source file, overrides, versions, device, times)
is stored as JSON under the key `grokjax` in every Parquet file's metadata.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import tomli_w

from grokjax.fields import config_columns

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
STATE_DIR = ".grokjax"  # while a sweep runs: its plan, and a record per finished chunk (what a resume starts from)
TABLES = ("runs.parquet", "curves.parquet", "neurons.parquet", "pruning.parquet")


@dataclass
class Results:
    """A results folder in memory: one row per run, per run and logged step, per run and neuron; provenance."""

    runs: pd.DataFrame
    curves: pd.DataFrame
    meta: dict[str, Any]
    neurons: pd.DataFrame = dataclasses.field(default_factory=lambda: pd.DataFrame(columns=list(NEURON_COLUMNS)))


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside `path`, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_parquet(path: Path, frame: pd.DataFrame, meta: dict[str, Any] | None = None, index: bool = False) -> None:
    """A frame as Parquet, atomically; with the provenance `meta` in its schema metadata when given."""
    table = pa.Table.from_pandas(frame, preserve_index=index)
    if meta is not None:
        table = table.replace_schema_metadata({**table.schema.metadata, META_KEY: json.dumps(meta).encode()})
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


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

    _write_parquet(target("curves.parquet"), curves[list(CURVE_COLUMNS)], meta)
    if neurons is not None or part is None:
        if neurons is None:
            neurons = pd.DataFrame({c: pd.Series(dtype="float64") for c in NEURON_COLUMNS})
        _write_parquet(target("neurons.parquet"), neurons[list(NEURON_COLUMNS)], meta)
    _write_parquet(target("runs.parquet"), runs[list(RUN_COLUMNS)], meta)


def owner(folder: Path) -> str | None:
    """Hash of the config whose results `folder` holds (from its sweep.toml), "unreadable", or None if none."""
    from grokjax.config import ConfigError, load

    path = folder / "sweep.toml"
    if not path.is_file():
        return None
    try:
        return load(path).hash()
    except ConfigError:
        return "unreadable"


def check_owner(folder: Path, config: Any, overwrite: bool) -> bool:
    """Whether `folder` already holds this config's results; another config's are refused unless overwrite."""
    from grokjax.config import ConfigError

    old = owner(folder)
    if old is not None and old != config.hash() and not overwrite:
        raise ConfigError(
            f"{config.source}: {folder} holds the results of another config (hash {old}; this one is "
            f"{config.hash()}); give another --out, or --overwrite to replace them"
        )
    return old == config.hash()


def write_config(folder: Path, config: dict[str, Any], source: str, overrides: list[str]) -> None:
    """sweep.toml: the resolved config, with every default written out; `grokjax sweep` on it runs it again."""
    folder.mkdir(parents=True, exist_ok=True)
    header = f"# Resolved sweep config written by grokjax; run it again with: grokjax sweep {folder / 'sweep.toml'}\n"
    header += f"# source: {source}; overrides: {overrides or 'none'}\n"
    text = header + tomli_w.dumps(config)
    atomic_write(folder / "sweep.toml", lambda tmp: tmp.write_text(text, encoding="utf-8"))


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
    atomic_write(folder / STATE_DIR / "plan.json", lambda tmp: tmp.write_text(text))


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
    _write_parquet(target / "final.parquet", final, index=True)
    _write_parquet(target / "curves.parquet", curves)
    if neurons:
        _write_parquet(target / "neurons.parquet", pd.concat(neurons, ignore_index=True))
    atomic_write(target / "done", lambda tmp: tmp.write_text("done\n"))
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


def write_progress(folder: Path, index: int, progress: Any) -> None:
    """A chunk's segment checkpoint (`runner.Progress`): state arrays keyed by their path in the state
    (e.g. `state/.params['U']['embedding']`), the metrics logged so far, neuron snapshots."""
    arrays: dict[str, np.ndarray] = {"next_log": np.asarray(progress.next_log)}
    for path, leaf in jax.tree_util.tree_flatten_with_path(progress.state)[0]:
        arrays[f"state/{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
    for key in progress.logs[0] if progress.logs else ():
        arrays[f"log/{key}"] = np.stack([log[key] for log in progress.logs])
    arrays["neuron_steps"] = np.asarray([step for step, _ in progress.neurons], np.int64)
    for j, (_, stats) in enumerate(progress.neurons):
        arrays.update({f"neurons/{j}/{key}": value for key, value in stats.items()})
    target = folder / STATE_DIR / f"chunk_{index:05d}"
    target.mkdir(parents=True, exist_ok=True)
    atomic_write(target / "progress.npz", lambda tmp: _savez(tmp, arrays))


def read_progress(folder: Path, index: int, state_shape: Callable[[], Any]) -> Any:
    """The chunk's segment checkpoint as a `runner.Progress`, its state shaped like `state_shape()`, or None
    (none, or one whose state does not have that shape)."""
    from grokjax.runner import Progress

    path = folder / STATE_DIR / f"chunk_{index:05d}" / "progress.npz"
    if not path.is_file():
        return None
    state_like = state_shape()
    with np.load(path) as data:
        files = set(data.files)
        paths = [f"state/{jax.tree_util.keystr(path)}" for path, _ in jax.tree_util.tree_flatten_with_path(state_like)[0]]
        if not set(paths) <= files:
            return None
        leaves = [data[path] for path in paths]
        keys = sorted({name.split("/", 1)[1] for name in files if name.startswith("log/")})
        logged = {key: data[f"log/{key}"] for key in keys}
        n_logs = int(data["next_log"])
        logs = [{key: logged[key][i] for key in keys} for i in range(n_logs)]
        neurons = []
        for j, step in enumerate(data["neuron_steps"]):
            prefix = f"neurons/{j}/"
            neurons.append((int(step), {n[len(prefix):]: data[n] for n in files if n.startswith(prefix)}))
    state = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(state_like), leaves)
    return Progress(n_logs, state, logs, neurons)


def write_params(folder: Path, index: int, run_ids: np.ndarray, params: Any) -> None:
    """params/chunk_NNNNN.npz, NNNNN the chunk's index: `run_id` and each parameter array stacked over its runs.

    Keys are the parameter paths joined by "/" (for the mlp: U/embedding, V/embedding,
    W/kernel); padding runs are dropped.
    """
    target = folder / PARAMS_DIR
    target.mkdir(parents=True, exist_ok=True)
    arrays = {"run_id": np.asarray(run_ids, np.int64)}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        arrays["/".join(str(k.key) for k in path)] = np.asarray(leaf)[: len(run_ids)]
    atomic_write(target / f"chunk_{index:05d}.npz", lambda tmp: _savez(tmp, arrays))


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with path.open("wb") as f:  # a file object, so numpy does not append ".npz" to the temporary name
        np.savez(f, **arrays)


def load_params(folder: str | Path, run_ids: list[int] | np.ndarray) -> dict[str, Any]:
    """The stored parameters of the given runs as a nested dict of arrays with a leading run axis, in that order."""
    files = sorted((Path(folder) / PARAMS_DIR).glob("chunk_*.npz"))
    if not files:
        raise FileNotFoundError(f"{folder}: no stored parameters (params/); run the sweep without --no-params")
    found: dict[int, tuple[Path, int]] = {}
    for path in files:
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
    nested: dict[str, Any] = {}
    for key, values in rows.items():
        node = nested
        *parents, leaf = key.split("/")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = np.stack(values)
    return nested


def write_pruning(folder: str | Path, curves: pd.DataFrame) -> None:
    """pruning.parquet, with the provenance of the runs it was computed from."""
    folder = Path(folder)
    _write_parquet(folder / "pruning.parquet", curves, read_meta(folder / "runs.parquet"))


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
    return Results(
        runs=read_table(runs_path, ["run_id"]),
        curves=read_table(folder / "curves.parquet", ["run_id", "step"]),
        meta=read_meta(runs_path),
        **({"neurons": read_table(neurons_path, ["run_id", "step", "neuron"])} if neurons_path.exists() else {}),
    )


def read_table(path: Path, order: list[str]) -> pd.DataFrame:
    """A table from one Parquet file or a folder of parts (one per process), sorted by `order`."""
    frame = pd.read_parquet(path)
    return frame if path.is_file() else frame.sort_values(order, ignore_index=True)
