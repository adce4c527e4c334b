"""The step's formulations and run blocks compute the same training; the fastest is measured once and remembered."""

import collections
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grokjax.cli import main
from grokjax.config.sweep_file import ConfigError, load
from grokjax.core.training import FORMULATIONS
from grokjax.core.types import Static
from grokjax.engine import costmodel, machine, plan, runner, runs_table, tuning
from grokjax.store import checkpoints, results
from tests.conftest import TINY_SWEEP

ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys; from grokjax.cli import main; sys.exit(main(sys.argv[1:]))"

COUNTS = ("train_correct", "test_correct", "clean_correct", "corrupted_correct")


@pytest.fixture
def chunk(sweep_file):
    """The tiny sweep's largest gathered chunk (4 runs at weight decay 0 and 1)."""
    chunks = plan.plan(runs_table.expand(load(sweep_file())), "tiny", machine.local(), None, step="gather")
    return max(chunks, key=lambda c: (len(c.runs), c.static.train_slots))


def test_every_formulation_and_block_trains_the_same(chunk):
    hp = runs_table.hparams(chunk.runs, pad_to=chunk.size)
    forms, layouts = tuning.candidates(chunk.static, chunk.size)
    assert set(forms) == set(FORMULATIONS) and layouts == [(0, 0), (1, 0)]  # 4 runs on one device: all vmapped, or one at a time
    reference = runner.train(chunk.static, hp).logs
    for form in forms:  # run blocks do not depend on the formulation: blocks of 2 with one of them
        for block in (0, 1, 2) if form == "gather" else (0, 1):
            logs = runner.train(dataclasses.replace(chunk.static, formulation=form, run_block=block), hp).logs
            for key in COUNTS:
                np.testing.assert_array_equal(logs[key], reference[key], err_msg=f"{form}:{block} {key}")
            for key in ("train_loss", "test_loss", "weight_norm"):
                np.testing.assert_allclose(logs[key], reference[key], rtol=1e-4, err_msg=f"{form}:{block} {key}")


def test_the_choice_is_measured_once_then_read_from_the_cache(chunk, tmp_path, monkeypatch):
    monkeypatch.setenv("GROKJAX_CACHE_DIR", str(tmp_path / "cache"))
    hp = runs_table.hparams(chunk.runs, pad_to=chunk.size)
    first, record = tuning.choose(chunk.static, hp, chunk.size)
    assert record["measured"] == "now" and (first.formulation, first.run_block) == (record["formulation"], record["run_block"])
    forms, _ = tuning.candidates(chunk.static, chunk.size)
    assert {f"{f}:0" for f in forms} <= set(record["seconds"])  # every formulation was timed
    assert record["seconds"][f"{first.formulation}:{first.run_block}"] == min(
        v for k, v in record["seconds"].items() if k.startswith(f"{first.formulation}:") or k.endswith(":0"))
    again, cached = tuning.choose(chunk.static, hp, chunk.size)
    assert cached["measured"] == "cached" and again == first
    stored = json.loads((tmp_path / "cache" / tuning.CHOICES_FILE).read_text())
    assert len(stored) == 1
    monkeypatch.setattr(tuning, "REVISION", tuning.REVISION + 1)  # the candidates changed since: measured again
    assert tuning.choose(chunk.static, hp, chunk.size)[1]["measured"] == "now"
    monkeypatch.setenv("GROKJAX_CACHE_DIR", "off")
    assert tuning.cache_dir() is None and tuning.choose(chunk.static, hp, chunk.size)[1]["measured"] == "now"


def test_a_sweep_records_how_its_step_was_computed(sweep_file, tmp_path):
    assert main(["sweep", str(sweep_file()), "--out", str(tmp_path / "out"), "--step", "onehot:1",
                 "--no-progress", "--no-plots", "--no-params"]) == 0
    meta = results.load(tmp_path / "out").meta
    steps = {(s["formulation"], s["run_block"]) for s in meta["step"]}
    assert ("onehot", 1) in steps and steps <= {("onehot", 1), ("grid", 1)}  # grid where a rung holds every example
    saved = checkpoints.read_plan(tmp_path / "out")["chunks"]
    assert all(c["run_block"] == 1 and c["formulation"] in ("onehot", "grid") for c in saved)


@pytest.mark.parametrize("bad", ["fast", "gather:x", "gather:-1", ":8", "gather@0", "gather:8@2", "gather@x"])
def test_a_bad_step_is_one_line_and_exit_2(sweep_file, tmp_path, capsys, bad):
    assert main(["sweep", str(sweep_file()), "--out", str(tmp_path / "out"), "--step", bad, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--step" in err and "allowed: auto" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError):
        tuning.parse_step(bad, "x")


def test_rungs_take_each_ends_winner_even_where_the_ends_chose_differently(sweep_file, tmp_path, monkeypatch):
    """--step tuned (tuning.time_ends, then plan.plan from its timings): each end's winner is timed at the other end too, so the smallest and largest rung run
    their own winner, and a rung between one of the two (not a way merely timed at both ends)."""
    monkeypatch.setenv("GROKJAX_CACHE_DIR", str(tmp_path / "cache"))
    text = ("[task]\np = 11\n[model]\nwidth = 24\n[train]\nsteps = 30\nlog_every = 10\n"
            "[sweep]\ndata_fraction = [0.2, 0.35, 0.5]\ncorruption_fraction = [0.0, 0.25]\nweight_decay = [0.0, 1.0]\n")
    runs = runs_table.expand(load(sweep_file(text)))
    chunks = plan.plan(runs, "tiny", machine.local(), None, step="gather")
    slots = sorted({c.static.train_slots for c in chunks})
    assert len(slots) == 3 and slots[0] > 0
    fast = {slots[0]: {"gather:0": 2.0, "gather:1": 1.0}, slots[-1]: {"grid:0": 2.0, "grid:1": 1.0}}
    timed = collections.Counter()

    def fake(static, hp, n, name):
        timed[static.train_slots, name] += 1
        return fast[static.train_slots].get(name, 5.0)

    monkeypatch.setattr(tuning, "time_way", fake)
    for cache in (tmp_path / "cache", "off"):  # with the cache off too, no way is timed twice
        monkeypatch.setenv("GROKJAX_CACHE_DIR", str(cache))
        timed.clear()
        ways = {plan.train_slots(c.static, int(n)):  # each run's rung (the grid computes its rungs as one)
                tuning.step_name(c.static.formulation, c.static.run_block, c.static.devices)
                for c in plan.plan(runs, "tiny", machine.local(), None, "tuned", timings=tuning.time_ends(plan.ends(chunks)))
                for n in c.runs.n_train}
        assert ways[slots[0]] == "gather:1" and ways[slots[-1]] == "grid:1" and ways[slots[1]] in ("gather:1", "grid:1")
        assert max(timed.values()) == 1 and {"gather:1", "grid:1"} <= {name for _, name in timed}
    stored = json.loads((tmp_path / "cache" / tuning.CHOICES_FILE).read_text()).values()
    assert all({"gather:1", "grid:1"} <= set(record["seconds"]) for record in stored)


SWEEP_ARGS = ["--no-progress", "--no-plots", "--no-params"]


def test_a_sweep_gives_the_same_tables_whatever_the_timings(sweep_file, tmp_path, monkeypatch):
    """--step auto reads no clock: with every timing replaced by a random number, the tables are the same."""
    monkeypatch.setenv("GROKJAX_STEP", "auto")
    assert main(["sweep", str(sweep_file()), "--out", str(tmp_path / "real"), *SWEEP_ARGS]) == 0
    rng = np.random.default_rng(0)
    monkeypatch.setattr(tuning, "segment_seconds", lambda static, hp: float(rng.random()))
    monkeypatch.setattr(tuning, "time_way", lambda static, hp, runs, name: float(rng.random()))
    assert main(["sweep", str(sweep_file()), "--out", str(tmp_path / "random"), *SWEEP_ARGS]) == 0
    real, noisy = results.load(tmp_path / "real"), results.load(tmp_path / "random")
    for name in ("runs", "curves", "neurons"):
        pd.testing.assert_frame_equal(getattr(real, name), getattr(noisy, name))
    assert real.meta["step"] == noisy.meta["step"] and real.meta["step_choice"] == "auto"
    assert checkpoints.read_plan(tmp_path / "real") == checkpoints.read_plan(tmp_path / "random")


@pytest.mark.slow
def test_sweeps_at_once_sharing_a_cache_folder_equal_their_references(sweep_file, tmp_path):
    """Two processes sweep into two folders with one fresh cache folder, at once: each writes the tables the sweep
    writes alone (here, with another cache folder). (tests/store/test_lock.py: the step choices that processes
    write at once are all kept.)"""
    other = sweep_file(TINY_SWEEP.replace("width = 24", "width = 16"), name="other.toml")
    files = {"tiny": sweep_file(), "other": other}

    def sweep(name: str, out: Path, cache: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", CLI, "sweep", str(files[name]), "--out", str(out), *SWEEP_ARGS],
                                cwd=ROOT, env={**os.environ, "GROKJAX_STEP": "auto", "GROKJAX_CACHE_DIR": str(cache)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    for name in files:  # the references, one at a time, in this process: with this test run's cache folder
        assert main(["sweep", str(files[name]), "--out", str(tmp_path / f"{name}-alone"), *SWEEP_ARGS]) == 0
    procs = {name: sweep(name, tmp_path / f"{name}-at-once", tmp_path / "shared-cache") for name in files}
    for proc in procs.values():
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    for name in files:
        alone, at_once = results.load(tmp_path / f"{name}-alone"), results.load(tmp_path / f"{name}-at-once")
        for table in ("runs", "curves", "neurons"):
            pd.testing.assert_frame_equal(getattr(alone, table), getattr(at_once, table))


def test_the_cost_model_prefers_the_least_work_and_reads_no_clock():
    """costmodel.cost counts each formulation's work per the module's definition; choose is a pure function."""
    base = Static(model="mlp", p=31, width=128, depth=2, task="modular_addition", train_slots=304)
    body = 6 * (128 * 31)  # the output layer's weights, forward and both gradients
    per_float, fixed = costmodel.SCATTER["cpu"]
    assert costmodel.cost(base, "gather", "cpu") == 304 * (body + per_float * 2 * 128 + fixed)
    assert costmodel.cost(base, "onehot", "cpu") == 304 * (body + 8 * 31 * 128)
    assert costmodel.cost(base, "grid", "cpu") == 31 * 31 * (body + 2 * 128)
    assert costmodel.choose(base, 30, "cpu", 2) == ("gather", 1, 0)  # one at a time, split over both devices
    assert costmodel.choose(base, 1, "cpu", 2) == ("gather", 0, 1)  # a lone run: on one device
    assert costmodel.choose(base, 30, "gpu", 1) == ("gather", 0, 0)  # all vmapped
    assert costmodel.choose(dataclasses.replace(base, batch_size=64), 30, "cpu", 2) == ("gather", 8, 0)
    full = dataclasses.replace(base, train_slots=31 * 31 - 8)  # a rung that gathers nearly every example
    assert costmodel.choose(full, 30, "cpu", 2)[0] == "grid"
    assert costmodel.candidates(dataclasses.replace(base, train_slots=0)) == ["grid"]
    scatter_dear = dict(costmodel.SCATTER, cpu=(10 * 31, 0.0))  # scatter-adds dearer than the one-hot matmul
    with pytest.MonkeyPatch.context() as m:
        m.setattr(costmodel, "SCATTER", scatter_dear)
        assert costmodel.choose(base, 30, "cpu", 2)[0] == "onehot"
