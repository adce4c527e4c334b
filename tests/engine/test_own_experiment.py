"""A task and a model from a package outside grokjax (docs/extending/mypkg) run as the built-ins do: vmapped,
over two CPU devices, resumed after SIGKILL, into Parquet and charts (real processes)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grokjax.cli import main
from grokjax.store import checkpoints, results

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "docs" / "extending"
SWEEP = """\
name = "own"
[task]
name = "mypkg.tasks:sum_of_three"
p = 5
weights = [1, 2, 3]
[model]
name = "mypkg.models:EmbedMLP"
width = 16
embed = 8
drop = 0.1
[train]
loss = "cross_entropy"
learning_rate = 0.01
steps = 120
log_every = 20
[sweep]
weight_decay = [0.0, 1.0]
data_fraction = [0.4, 0.8]
seed = [0, 1, 2, 3]
"""
# 16 runs: 4 chunks of 4. One way to compute the step throughout: dropout draws a mask over the examples a
# step computes, so the gathered training set and the whole grid draw differently.
ARGS = ["--chunk-size", "4", "--no-progress", "--step", "gather"]
CLI = "import sys; from grokjax.cli import main; sys.exit(main(sys.argv[1:]))"


def cli(args: list[str], devices: int = 1) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE), os.environ.get("PYTHONPATH", "")]),
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen([sys.executable, "-c", CLI, *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    folder = tmp_path_factory.mktemp("own")
    (folder / "own.toml").write_text(SWEEP)
    sys.path.insert(0, str(PACKAGE))
    try:
        assert main(["sweep", str(folder / "own.toml"), "--out", str(folder / "whole"), *ARGS]) == 0
    finally:
        sys.path.remove(str(PACKAGE))
    return folder


def test_own_task_and_model_train_vmapped_into_parquet_and_charts(whole):
    res = results.load(whole / "whole")
    assert len(res.runs) == 16 and res.meta["chunk_sizes"] == [4, 4, 4, 4]
    assert set(res.runs.task) == {"mypkg.tasks:sum_of_three"} and set(res.runs.weights) == {"[1, 2, 3]"}
    assert set(res.runs.model_args) == {'{"drop": 0.1, "embed": 8}'}
    assert (res.runs.n_train + res.runs.n_test == 5**3).all()
    # Trained: with the most data and no weight decay, training accuracy climbs above chance.
    assert res.runs.query("data_fraction == 0.8 and weight_decay == 0").train_acc.min() > 0.5
    # The model shows its embedding directions (neuron_weights) and the task is cyclic: per-neuron analyses run.
    assert len(res.neurons) and res.runs.ipr_mean.notna().all()
    for chart in ("phase_diagram", "accuracy", "curves", "ipr", "frequencies"):
        assert (whole / "whole" / f"{chart}.png").stat().st_size > 1000
    assert (whole / "whole" / "explore.html").exists()
    # It opens its units to pruning (without_units): the curves start at the trained runs and end with no unit.
    sys.path.insert(0, str(PACKAGE))
    try:
        assert main(["prune", str(whole / "whole"), "--order", "low"]) == 0
    finally:
        sys.path.remove(str(PACKAGE))
    curves = pd.read_parquet(whole / "whole" / "pruning.parquet")
    assert len(curves) == 16 * 9 and set(curves.pruned) == set(range(9))
    start = curves[curves.pruned == 0].set_index("run_id").test_acc
    np.testing.assert_allclose(start, res.runs.set_index("run_id").test_acc.loc[start.index])
    # Seeds differ (dropout and init draw from them); a run trained again alone gives the same numbers.
    assert res.runs.groupby(["weight_decay", "data_fraction"]).train_loss.nunique().min() > 1


def test_own_experiment_over_two_devices_gives_the_one_device_results(whole):
    """Without dropout, whose draws amplify float rounding over the steps: sharding changes how XLA vectorizes,
    so float metrics agree to float32 rounding, as for the built-ins (tests/engine/test_scale.py)."""
    runs = {}
    for devices in (1, 2):
        out = whole / f"devices_{devices}"
        proc = cli(["sweep", str(whole / "own.toml"), "--out", str(out), *ARGS, "--no-plots", "--no-params",
                    "--set", "model.drop=0.0"], devices=devices)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        res = results.load(out)
        assert res.meta["device"]["device_count"] == devices and {s["devices"] for s in res.meta["step"]} == {devices}
        runs[devices] = res.runs
    exact = ["run_id", "n_train", "n_corrupt", "train_acc", "test_acc", "phase"]
    pd.testing.assert_frame_equal(runs[2][exact], runs[1][exact])
    floats = ["train_loss", "test_loss", "weight_norm", "ipr_mean"]
    np.testing.assert_allclose(runs[2][floats], runs[1][floats], rtol=1e-5, atol=1e-6)


def test_own_experiment_killed_and_resumed_gives_the_whole_results(whole):
    out = whole / "killed"
    proc = cli(["sweep", str(whole / "own.toml"), "--out", str(out), *ARGS, "--no-plots"])
    deadline = time.monotonic() + 180
    done = lambda: len(list((out / checkpoints.STATE_DIR).glob("chunk_*/done")))  # noqa: E731
    while time.monotonic() < deadline and proc.poll() is None and done() < 2:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = done()
    assert 2 <= kept < 4 and not (out / "runs.parquet").exists()
    resumed = cli(["sweep", str(whole / "own.toml"), "--out", str(out), *ARGS, "--no-plots"])
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    a, b = results.load(out), results.load(whole / "whole")
    assert a.meta["chunks_resumed"] == kept
    pd.testing.assert_frame_equal(a.runs, b.runs)
    pd.testing.assert_frame_equal(a.curves, b.curves)
