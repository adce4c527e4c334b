"""A tiny sweep end to end: CLI, Python API, Parquet schema, provenance, chunking, re-running."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import grokjax
from grokjax.cli import main
from grokjax.store.results import CURVE_COLUMNS, RUN_COLUMNS
from grokjax.summary.phases import PHASES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    """The tiny sweep of conftest, run once through the CLI."""
    from tests.conftest import TINY_SWEEP

    folder = tmp_path_factory.mktemp("tiny")
    path = folder / "tiny.toml"
    path.write_text(TINY_SWEEP)
    assert main(["sweep", str(path), "--out", str(folder / "out"), "--no-progress"]) == 0
    return folder / "out"


def test_runs_parquet_schema_and_values(tiny_results):
    runs = pd.read_parquet(tiny_results / "runs.parquet")
    assert list(runs.columns) == list(RUN_COLUMNS)
    assert len(runs) == 8 and runs.run_id.tolist() == list(range(8))
    # The grid is the product of the axes in file order (last axis fastest).
    assert runs.data_fraction.tolist() == [0.4] * 4 + [0.8] * 4
    assert runs.weight_decay.tolist() == [0.0, 1.0] * 4
    assert (runs.n_train == np.floor(runs.data_fraction * 121 + 1e-9)).all()
    assert (runs.n_corrupt == np.floor(runs.corruption_fraction * runs.n_train + 1e-9)).all()
    for col in ("train_acc", "test_acc", "train_acc_clean", "max_test_acc"):
        assert runs[col].between(0, 1).all(), col
    clean = runs.corruption_fraction == 0
    assert runs.loc[clean, "train_acc_corrupted"].isna().all()
    assert runs.loc[~clean, "train_acc_corrupted"].between(0, 1).all()
    assert set(runs.phase) <= set(PHASES)
    assert str(runs.step_test_acc_90.dtype) == "Int64"
    # Overall train accuracy is the count-weighted mix of the clean and corrupted parts.
    c = runs[~clean]
    mixed = (c.train_acc_clean * (c.n_train - c.n_corrupt) + c.train_acc_corrupted * c.n_corrupt) / c.n_train
    np.testing.assert_allclose(mixed, c.train_acc)


def test_curves_match_runs(tiny_results):
    res = grokjax.load_results(tiny_results)
    curves = res.curves
    assert list(curves.columns) == list(CURVE_COLUMNS)
    assert curves.groupby("run_id").step.apply(list).tolist() == [[10, 20, 30]] * 8
    last = curves[curves.step == 30].set_index("run_id")
    runs = res.runs.set_index("run_id")
    for col in ("train_loss", "test_acc", "train_acc", "weight_norm"):
        np.testing.assert_array_equal(last[col], runs[col])
    np.testing.assert_array_equal(curves.groupby("run_id").test_acc.max(), runs.max_test_acc)


def test_provenance(tiny_results):
    meta = grokjax.load_results(tiny_results).meta
    assert meta == grokjax.store.results.read_meta(tiny_results / "curves.parquet")
    assert meta["config"]["train"]["steps"] == 30 and meta["config"]["sweep"]["train.weight_decay"] == [0.0, 1.0]
    assert {"jax", "jaxlib", "grokjax", "optax"} <= set(meta["versions"])
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert meta["versions"]["grokjax_revision"].removesuffix("+changes") == (head or "not a git checkout")
    assert meta["step_choice"] == "auto"
    assert meta["device"]["platform"] == "cpu" and meta["wall_time_s"] > 0
    assert meta["started"] <= meta["finished"]
    assert not [f for f in os.listdir(tiny_results) if f.endswith(".tmp")], "no temporary files left"


def test_saved_sweep_file_reproduces_the_results(tiny_results, tmp_path):
    again = grokjax.run_sweep(tiny_results / "sweep.toml", out=tmp_path / "again", progress=False, plots=False).folder
    before, after = grokjax.load_results(tiny_results), grokjax.load_results(again)
    pd.testing.assert_frame_equal(before.runs, after.runs)
    pd.testing.assert_frame_equal(before.curves, after.curves)


def test_chunking_and_padding_do_not_change_results(tiny_results, tmp_path):
    chunked = grokjax.run_sweep(tiny_results / "sweep.toml", out=tmp_path / "c", chunk_size=3, progress=False, plots=False).folder
    a, b = grokjax.load_results(tiny_results).runs, grokjax.load_results(chunked).runs
    assert len(b) == 8
    pd.testing.assert_frame_equal(a.drop(columns=["train_loss", "test_loss", "weight_norm"]),
                                  b.drop(columns=["train_loss", "test_loss", "weight_norm"]))
    for col in ("train_loss", "test_loss", "weight_norm"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-4)


def test_static_axes_make_separate_groups(sweep_file, tmp_path):
    path = sweep_file("""\
        [task]
        p = 7
        [train]
        steps = 10
        log_every = 5
        [sweep]
        width = [16, 20]
        task = ["modular_addition", "modular_multiplication"]
        """)
    res = grokjax.load_results(grokjax.run_sweep(path, out=tmp_path / "g", progress=False, plots=False).folder)
    assert res.meta["compiled_programs"] == 4 and len(res.runs) == 4
    assert sorted(res.runs.task.unique()) == ["modular_addition", "modular_multiplication"]


def test_python_api_takes_a_config_object(tmp_path):
    config = grokjax.config.sweep_file.from_dict(
        {"name": "api", "task": {"p": 7}, "model": {"width": 16}, "train": {"steps": 5, "log_every": 5},
         "sweep": {"seed": [0, 1]}}
    )
    folder = grokjax.run_sweep(config, out=tmp_path / "api", progress=False, plots=False).folder
    assert len(grokjax.load_results(folder).runs) == 2


@pytest.mark.slow
def test_console_entry_point(sweep_file, tmp_path):
    """The installed command prints a summary with a phase map; --help answers."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    help_text = subprocess.run([sys.executable, "-m", "grokjax", "sweep", "--help"], capture_output=True, text=True, env=env)
    assert help_text.returncode == 0 and "--chunk-size" in help_text.stdout and "[sweep]" in help_text.stdout
    done = subprocess.run(
        [sys.executable, "-m", "grokjax", "sweep", str(sweep_file()), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "8 runs in" in done.stdout and "Phase map" in done.stdout and "weight_decay = 1" in done.stdout
    assert "8/8 runs" in done.stderr  # the progress bar
    assert pq.read_table(tmp_path / "o" / "runs.parquet").num_rows == 8


@pytest.mark.slow
def test_a_sweep_without_charts_never_loads_altair(sweep_file, tmp_path):
    code = ("import sys; from grokjax.cli import main; rc = main(sys.argv[1:]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('altair', 'vl_convert'))); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "sweep", str(sweep_file()), "--out", str(tmp_path / "out"),
                           "--no-plots", "--no-progress", "--no-params"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_library_calls_leave_jax_configured_as_they_found_it(sweep_file, tmp_path):
    """sweep.run changes no global JAX setting; grokjax.configure (which the CLI calls) is the explicit way."""
    code = ("import sys, jax, grokjax; from grokjax.engine import sweep; "
            "before = (jax.config.jax_compilation_cache_dir, jax.config.jax_num_cpu_devices); "
            "sweep.run(sys.argv[1], out=sys.argv[2], progress=False, plots=False, keep_params=False); "
            "after = (jax.config.jax_compilation_cache_dir, jax.config.jax_num_cpu_devices); "
            "grokjax.configure(cpu_devices=False); print(before == after, jax.config.jax_compilation_cache_dir)")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, "-c", code, str(sweep_file()), str(tmp_path / "out")], cwd=ROOT,
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    same, cache = proc.stdout.split()
    assert same == "True" and cache == str(Path(os.environ["GROKJAX_CACHE_DIR"]) / "jax")
