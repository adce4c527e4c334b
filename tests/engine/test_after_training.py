"""What is read off trained runs ([phases], [[expect]], name) leaves the training hash: changing it on a finished
folder trains nothing and recomputes phases, first steps at threshold and claims from the stored records."""

import tomllib

import pandas as pd

from grokjax.cli import main
from grokjax.config.sweep_file import from_dict
from grokjax.store import results
from grokjax.summary.summarize import with_first_steps, with_phases

ARGS = ["--no-progress", "--no-plots"]
CLAIM = '\n[[expect]]\nclaim = "some runs memorize"\nwhere = "weight_decay == 0"\nphase = "memorization"\nat_least = 0.0\n'


def test_new_thresholds_and_claims_recompute_without_training(sweep_file, tmp_path, capsys):
    path = sweep_file()
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), *ARGS]) == 0
    first = results.load(out)
    path.write_text(path.read_text() + '\n[phases]\nthreshold = 0.6\ngrokking_delay = 0.3\n' + CLAIM)
    assert main(["sweep", str(path), "--out", str(out), *ARGS, "--set", "name=renamed"]) == 0
    second = results.load(out)
    assert second.meta["chunks_resumed"] == len(second.meta["chunk_sizes"])  # nothing trained
    assert second.meta["training_hash"] == first.meta["training_hash"] != ""
    assert second.meta["config_hash"] != first.meta["config_hash"]
    pd.testing.assert_frame_equal(second.curves, first.curves)
    # Phases and first steps as the definitions give them on the same curves at the new settings.
    config = from_dict(tomllib.loads((out / "sweep.toml").read_text()))
    assert config.phases.threshold == 0.6 and config.name == "renamed" and len(config.expect) == 1
    expected = with_phases(with_first_steps(first.runs.copy(), first.curves, 0.6), config)
    for column in ("step_train_acc_90", "step_test_acc_90", "phase", "dynamics"):
        pd.testing.assert_series_equal(second.runs[column], expected[column])
    assert (second.runs.step_train_acc_90.fillna(10**9) <= first.runs.step_train_acc_90.fillna(10**9)).all()
    assert [e["claim"] for e in second.meta["expect"]] == ["some runs memorize"]


def test_a_changed_training_field_is_still_refused_in_one_line(sweep_file, tmp_path, capsys):
    path = sweep_file()
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), *ARGS]) == 0
    capsys.readouterr()
    assert main(["sweep", str(path), "--out", str(out), *ARGS, "--set", "train.steps=40"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds the results of another config (training hash" in err


def test_min_prune_turned_on_or_off_is_read_off_the_stored_weights(sweep_file, tmp_path, capsys):
    """analysis.min_prune leaves the training hash: turned on over a finished folder it is computed from params/,
    equal to a sweep that computed it while training; turned off it is NA; without params/ it is refused."""
    path = sweep_file()
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    assert main(["sweep", str(path), "--out", str(out), *ARGS]) == 0
    assert results.load(out).runs.min_prune.isna().all()
    on = ["--set", "analysis.min_prune=true"]
    assert main(["sweep", str(path), "--out", str(out), *ARGS, *on]) == 0
    assert main(["sweep", str(path), "--out", str(fresh), *ARGS, *on]) == 0
    later, direct = results.load(out), results.load(fresh)
    assert later.meta["chunks_resumed"] == len(later.meta["chunk_sizes"])  # nothing trained
    assert direct.runs.min_prune.notna().all()
    pd.testing.assert_series_equal(later.runs.min_prune, direct.runs.min_prune)
    assert main(["sweep", str(path), "--out", str(out), *ARGS]) == 0
    assert results.load(out).runs.min_prune.isna().all()

    bare = tmp_path / "bare"
    assert main(["sweep", str(path), "--out", str(bare), *ARGS, "--no-params"]) == 0
    before = (bare / "sweep.toml").read_text()
    capsys.readouterr()
    assert main(["sweep", str(path), "--out", str(bare), *ARGS, *on]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "analysis.min_prune = true needs the trained weights" in err, err
    assert (bare / "sweep.toml").read_text() == before


def test_a_plan_hashed_with_min_prune_inside_still_resumes(sweep_file, tmp_path):
    """A folder whose plan names the training hash as computed while analysis.min_prune was inside it (a sha256 of
    the config as JSON without name, [phases], [[expect]] and [plot]) resumes, training nothing."""
    import hashlib
    import json

    from grokjax.store import checkpoints

    path = sweep_file()
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), *ARGS]) == 0
    config = from_dict(tomllib.loads((out / "sweep.toml").read_text()))
    data = {k: v for k, v in config.to_dict().items() if k not in ("name", "phases", "expect", "plot")}
    older = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    assert older != config.training_hash()
    checkpoints.write_plan(out, older, checkpoints.read_plan(out)["chunks"])
    assert main(["sweep", str(path), "--out", str(out), *ARGS]) == 0
    again = results.load(out)
    assert again.meta["chunks_resumed"] == len(again.meta["chunk_sizes"])
