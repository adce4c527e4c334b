"""Results folders that stay trustworthy: refusal to mix configs, contained divergence, unwritable folders,
determinism across chunk sizes, `grokjax info`."""

import numpy as np
import pandas as pd

from grokjax.cli import main
from grokjax.store import checkpoints, results
from tests.conftest import TINY_SWEEP


def test_a_folder_refuses_another_config_unless_overwrite(sweep_file, tmp_path, capsys):
    path, out = sweep_file(), tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--no-progress", "--no-plots", "--no-params"]) == 0
    before = (out / "runs.parquet").read_bytes()
    capsys.readouterr()
    assert main(["sweep", str(path), "--out", str(out), "--set", "train.steps=20", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "holds the results of another config" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "runs.parquet").read_bytes() == before  # untouched
    assert main(["sweep", str(path), "--out", str(out), "--no-progress", "--no-plots", "--no-params"]) == 0  # same config
    assert main(["sweep", str(path), "--out", str(out), "--set", "train.steps=20", "--overwrite",
                 "--no-progress", "--no-plots", "--no-params"]) == 0
    res = results.load(out)
    assert (res.runs.steps == 20).all() and res.meta["config_hash"] != ""


DIVERGE = TINY_SWEEP.split("[sweep]")[0] + "[sweep]\nlearning_rate = [0.01, {lr}]\nseed = [0, 1]\n"


def test_a_diverged_run_is_marked_and_does_not_touch_its_chunk(sweep_file, tmp_path):
    """Two runs with an absurd learning rate in a chunk with two normal ones: those equal a chunk without them."""
    def sweep(lr: float, name: str) -> results.Results:
        path = sweep_file(DIVERGE.format(lr=lr), name=f"{name}.toml")
        assert main(["sweep", str(path), "--out", str(tmp_path / name), "--chunk-size", "4",
                     "--no-progress", "--no-plots"]) == 0
        return results.load(tmp_path / name)

    calm, wild = sweep(0.02, "calm"), sweep(1e9, "wild")
    assert calm.runs.status.tolist() == ["ok"] * 4
    assert wild.runs.status.tolist() == ["ok", "ok", "diverged", "diverged"]
    same = [c for c in wild.runs.columns if c not in ("learning_rate",)]
    pd.testing.assert_frame_equal(wild.runs.loc[:1, same], calm.runs.loc[:1, same])
    pd.testing.assert_frame_equal(wild.curves[wild.curves.run_id < 2], calm.curves[calm.curves.run_id < 2])
    bad = wild.runs.iloc[2]
    curve = wild.curves[wild.curves.run_id == 2].drop(columns="run_id").set_index("step")
    finite = curve.dropna(subset=["train_loss"])
    assert len(finite) < len(curve) and curve.loc[30].isna().all()  # NaN from the step it diverged
    if len(finite):  # final values are those of the last finite logged step
        assert bad.train_loss == finite.train_loss.iloc[-1] and bad.test_acc == finite.test_acc.iloc[-1]
    assert np.isnan(bad.frac_periodic) and pd.isna(bad.min_prune)


def test_info_prints_what_made_the_results(sweep_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", str(sweep_file()), "--out", str(out), "--no-progress", "--no-plots", "--no-params"]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    config_hash, chunks = results.load(out).meta["config_hash"], len(checkpoints.read_plan(out)["chunks"])
    for expected in (f"config hash {config_hash}", "sweep file: ", "versions: python", "jax 0.", "device: cpu",
                     "started 20", f"chunks: {chunks} done, 0 left", "runs: 8; ok 8, diverged 0"):
        assert expected in text, expected
    assert main(["info", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "no runs.parquet or sweep.toml here" in err and len(err.strip().splitlines()) == 1


def test_an_unwritable_output_folder_gets_one_line(sweep_file, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["sweep", str(sweep_file()), "--out", str(blocker / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cannot write the results" in err and str(blocker) in err and len(err.strip().splitlines()) == 1


def test_a_full_disk_leaves_earlier_results_intact_and_the_sweep_resumable(sweep_file, tmp_path, capsys, monkeypatch):
    import errno

    path, out = sweep_file(), tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--no-progress", "--no-plots"]) == 0
    before = {p.name: p.read_bytes() for p in out.glob("*.parquet")}
    real = results.write_parquet

    def full(target, frame, meta=None, **kwargs):
        if target.name == "runs.parquet":
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        real(target, frame, meta, **kwargs)

    monkeypatch.setattr(results, "write_parquet", full)
    assert main(["sweep", str(path), "--out", str(out), "--restart", "--no-progress", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "runs.parquet" in err and len(err.strip().splitlines()) == 1
    assert (out / "runs.parquet").read_bytes() == before["runs.parquet"]
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind
    monkeypatch.setattr(results, "write_parquet", real)
    assert main(["sweep", str(path), "--out", str(out), "--no-progress", "--no-plots"]) == 0
    assert results.load(out).meta["chunks_resumed"] == len(checkpoints.read_plan(out)["chunks"])  # all were kept


DETERMINISM = """\
name = "det"
[task]
p = 11
data_fraction = 0.5
corruption_fraction = 0.2
[model]
width = 24
[train]
steps = 30
log_every = 10
loss = "cross_entropy"
[sweep]
seed = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
weight_decay = [0.0, 1.0]
"""


def test_a_runs_results_do_not_depend_on_its_chunk_or_a_second_run(sweep_file, tmp_path):
    """40 runs in chunks of 8 and of 24 (so most runs land in another chunk, at another place), and again.

    The same plan gives the same numbers, bit for bit (what resuming needs). Another chunk size
    vectorizes a run's arithmetic differently, so its numbers agree to float32 rounding: the
    speed-for-determinism trade the README describes (pin --step gather:8 for blocks of 8 runs).
    """
    path = sweep_file(DETERMINISM)
    tables = {}
    for size, extra in (("8", []), ("24", []), ("8", ["--restart"])):
        out = tmp_path / f"chunks_{size}"
        assert main(["sweep", str(path), "--out", str(out), "--chunk-size", size, "--no-progress", "--no-plots",
                     *extra]) == 0
        res = results.load(out)
        tables[(size, bool(extra))] = res
    first, other, again = tables[("8", False)], tables[("24", False)], tables[("8", True)]
    assert first.meta["chunk_sizes"] == [8] * 5 and other.meta["chunk_sizes"] == [20, 20]  # no padding runs
    pd.testing.assert_frame_equal(again.runs, first.runs)
    pd.testing.assert_frame_equal(again.curves, first.curves)
    pd.testing.assert_frame_equal(again.neurons, first.neurons)
    floats = ["train_loss", "test_loss", "weight_norm", "ipr_mean", "frac_periodic"]
    pd.testing.assert_frame_equal(other.runs.drop(columns=floats), first.runs.drop(columns=floats))
    np.testing.assert_allclose(other.runs[floats], first.runs[floats], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(other.curves, first.curves, rtol=1e-4, atol=1e-6)
