"""The step's formulations and run blocks compute the same training; the fastest is measured once and remembered."""

import collections
import dataclasses
import json

import jax
import numpy as np
import pytest

from grokjax import grid, plan, results, resume, runner, tuning
from grokjax.cli import main
from grokjax.config import ConfigError, load
from grokjax.train import FORMULATIONS

COUNTS = ("train_correct", "test_correct", "clean_correct", "corrupted_correct")


@pytest.fixture
def chunk(sweep_file):
    """The tiny sweep's largest gathered chunk (4 runs at weight decay 0 and 1)."""
    chunks = plan.plan(grid.expand(load(sweep_file())), "tiny", None, step="gather")
    return max(chunks, key=lambda c: (len(c.runs), c.static.train_slots))


def test_every_formulation_and_block_trains_the_same(chunk):
    hp = grid.hparams(chunk.runs, pad_to=chunk.size)
    forms, layouts = tuning.candidates(chunk.static, chunk.size)
    assert set(forms) == set(FORMULATIONS) and layouts == [(0, 0), (1, 0)]  # 4 runs on one device: all vmapped, or one at a time
    reference = runner.train(chunk.static, hp).logs
    for form in forms:
        for block in (0, 1, 2):
            logs = runner.train(dataclasses.replace(chunk.static, formulation=form, run_block=block), hp).logs
            for key in COUNTS:
                np.testing.assert_array_equal(logs[key], reference[key], err_msg=f"{form}:{block} {key}")
            for key in ("train_loss", "test_loss", "weight_norm"):
                np.testing.assert_allclose(logs[key], reference[key], rtol=1e-4, err_msg=f"{form}:{block} {key}")


def test_the_choice_is_measured_once_then_read_from_the_cache(chunk, tmp_path, monkeypatch):
    monkeypatch.setenv("GROKJAX_CACHE_DIR", str(tmp_path / "cache"))
    hp = grid.hparams(chunk.runs, pad_to=chunk.size)
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
    saved = resume.read_plan(tmp_path / "out")["chunks"]
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
    """plan.choose_step: each end's winner is timed at the other end too, so the smallest and largest rung run
    their own winner, and a rung between one of the two (not a way merely timed at both ends)."""
    monkeypatch.setenv("GROKJAX_CACHE_DIR", str(tmp_path / "cache"))
    text = ("[task]\np = 11\n[model]\nwidth = 24\n[train]\nsteps = 30\nlog_every = 10\n"
            "[sweep]\ndata_fraction = [0.2, 0.35, 0.5]\ncorruption_fraction = [0.0, 0.25]\nweight_decay = [0.0, 1.0]\n")
    runs = grid.expand(load(sweep_file(text)))
    chunks = plan.plan(runs, "tiny", None, step="gather")
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
        ways = {c.static.train_slots: tuning.step_name(c.static.formulation, c.static.run_block, c.static.devices)
                for c in plan.choose_step(chunks)}
        assert ways[slots[0]] == "gather:1" and ways[slots[-1]] == "grid:1" and ways[slots[1]] in ("gather:1", "grid:1")
        assert max(timed.values()) == 1 and {"gather:1", "grid:1"} <= {name for _, name in timed}
    stored = json.loads((tmp_path / "cache" / tuning.CHOICES_FILE).read_text()).values()
    assert all({"gather:1", "grid:1"} <= set(record["seconds"]) for record in stored)
