"""grokjax refine: proposals at the midpoints of disagreeing neighbours, trained as rounds into the same folder."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grokjax.charts import figures
from grokjax.cli import main
from grokjax.config.sweep_file import from_dict, load
from grokjax.engine import boundaries, runs_table
from grokjax.store import results

ROOT = Path(__file__).resolve().parents[2]
PHASE_COLUMNS = {"train_acc": 1.0, "test_acc": 0.5, "train_acc_corrupted": 1.0}


def table(sweep: dict, phase) -> pd.DataFrame:
    """A sweep's runs (p 31) with the phase `phase(run)` gives each, as refine reads them from runs.parquet."""
    runs = runs_table.expand(from_dict({"task": {"p": 31}, "sweep": sweep}))
    return runs.assign(phase=[phase(r) for r in runs.itertuples()], **PHASE_COLUMNS)


def diagonal(run) -> str:
    """Coexistence above a line in (data fraction, corruption fraction), memorization below; the line moves with wd."""
    return "coexistence" if run.data_fraction - run.corruption_fraction > 0.4 + 0.1 * run.weight_decay else "memorization"


GRID = {"weight_decay": [0.0, 1.0], "corruption_fraction": [0.0, 0.1, 0.2, 0.3],
        "data_fraction": [0.3, 0.45, 0.6, 0.75, 0.9]}


def test_proposed_points_are_the_midpoints_of_every_disagreeing_pair():
    runs = table(GRID, diagonal)
    proposed = boundaries.propose(runs, budget=1000)
    cells = runs.set_index(["weight_decay", "data_fraction", "corruption_fraction"]).phase
    expected = set()
    for wd in GRID["weight_decay"]:
        for i, a in enumerate(GRID["data_fraction"][:-1]):  # rows: neighbours along data fraction
            for xi in GRID["corruption_fraction"]:
                b = GRID["data_fraction"][i + 1]
                if cells[(wd, a, xi)] != cells[(wd, b, xi)]:
                    expected.add((wd, round((a + b) / 2, 12), xi))
        for i, a in enumerate(GRID["corruption_fraction"][:-1]):  # columns: along corruption fraction
            for alpha in GRID["data_fraction"]:
                b = GRID["corruption_fraction"][i + 1]
                if cells[(wd, alpha, a)] != cells[(wd, alpha, b)]:
                    expected.add((wd, alpha, round((a + b) / 2, 12)))
    assert expected and set(zip(proposed.weight_decay, proposed.data_fraction, proposed.corruption_fraction)) == expected
    # Each new run is a run of the sweep but for its place, with the split sizes of that place.
    sizes = ["n_train", "n_corrupt", "n_test"]
    assert (proposed[sizes] == runs_table.split_sizes(proposed.copy())[sizes]).all().all()
    same = [c for c in proposed if c not in ("run_id", "data_fraction", "corruption_fraction", "weight_decay",
                                             "n_train", "n_corrupt", "n_test")]
    assert (proposed[same].nunique() <= 1).all() and (proposed[same].iloc[0] == runs[same].iloc[0]).all()


@pytest.mark.parametrize("budget", [1, 3, 7])
def test_never_more_than_the_budget_and_coarse_gaps_first(budget):
    runs = table({**GRID, "seed": [0, 1]}, diagonal)
    proposed = boundaries.propose(runs, budget)
    # Two seeds per point: a point costs 2 runs, so an odd budget leaves one run unused (a budget of 1, all).
    assert len(proposed) == budget - budget % 2 <= budget
    if proposed.empty:
        return
    assert proposed.run_id.is_unique and proposed.run_id.min() == runs.run_id.max() + 1
    assert proposed.index.equals(pd.Index(proposed.run_id.to_numpy()))
    # The corruption axis's gaps (0.1 of a range of 0.3) are coarser than the data fraction's (0.15 of 0.6).
    pairs = boundaries.disagreeing_pairs(runs)
    if len(proposed) // 2 <= (pairs.axis == "corruption_fraction").sum():
        assert proposed.corruption_fraction.isin(GRID["corruption_fraction"]).sum() == 0


def test_uncertain_cells_get_twice_the_seeds():
    def split(run) -> str:  # seed 2 disagrees at data fraction 0.5: 2 of 3 seeds agree there
        return "memorization" if run.data_fraction < 0.5 or (run.data_fraction == 0.5 and run.seed == 2) else "coexistence"

    runs = table({"data_fraction": [0.3, 0.5, 0.7], "seed": [0, 1, 2]}, split)
    proposed = boundaries.propose(runs, budget=100)
    # (0.3, 0.5) disagree in phase and 0.5 is uncertain; (0.5, 0.7) agree in phase but 0.5 is uncertain.
    assert sorted(proposed.data_fraction.unique()) == [0.4, 0.6]
    for _, point in proposed.groupby("data_fraction"):
        assert sorted(point.seed) == [0, 1, 2, 3, 4, 5]


def test_a_midpoint_that_trains_what_an_endpoint_trains_is_not_proposed():
    # At p 31 (961 examples), data fractions 0.5 and 0.5005 both give 480 training examples, as does 0.50025.
    runs = table({"data_fraction": [0.5, 0.5005]}, lambda r: "memorization" if r.data_fraction == 0.5 else "coexistence")
    assert runs.n_train.nunique() == 1
    assert boundaries.propose(runs, budget=10).empty


def test_refined_cells_reach_half_way_to_their_neighbours_without_overlapping():
    runs = table({"data_fraction": [0.3, 0.5, 0.7], "corruption_fraction": [0.0, 0.2]}, diagonal)
    refined = pd.concat([runs, boundaries.propose(runs, budget=100).assign(phase="coexistence", **PHASE_COLUMNS)])
    cells = figures.phase_cells(refined).set_index(["data_fraction", "corruption_fraction"])
    assert len(cells) > len(runs)
    for (alpha, xi), cell in cells.iterrows():  # along its row, a cell reaches half-way to its neighbours
        row = sorted(cells.xs(xi, level="corruption_fraction").index)
        i = row.index(alpha)
        if 0 < i < len(row) - 1:
            assert cell.x0 == pytest.approx((row[i - 1] + alpha) / 2) and cell.x1 == pytest.approx((alpha + row[i + 1]) / 2)
    assert (cells.x1 - cells.x0).round(9).nunique() > 1  # the midpoints' cells are narrower than the grid's
    # Each rectangle holds its own point, and no two overlap (where a cell's parents span differently
    # across its line, a gap is left rather than an overlap).
    points = cells.reset_index()
    assert ((points.x0 <= points.data_fraction) & (points.data_fraction <= points.x1)).all()
    assert ((points.y0 <= points.corruption_fraction) & (points.corruption_fraction <= points.y1)).all()
    r = cells[["x0", "x1", "y0", "y1"]].to_numpy()
    overlap_x = np.minimum(r[:, None, 1], r[None, :, 1]) - np.maximum(r[:, None, 0], r[None, :, 0])
    overlap_y = np.minimum(r[:, None, 3], r[None, :, 3]) - np.maximum(r[:, None, 2], r[None, :, 2])
    shared = np.clip(overlap_x, 0, None) * np.clip(overlap_y, 0, None)
    np.fill_diagonal(shared, 0)
    assert shared.max() == pytest.approx(0)


# --- rounds, trained -----------------------------------------------------------------------

SWEEP = """\
name = "edge"
[task]
p = 11
[model]
width = 24
[train]
steps = 60
log_every = 20
[phases]
threshold = 0.25
[sweep]
corruption_fraction = [0.0, 0.4]
data_fraction = [0.3, 0.9]
[[expect]]
claim = "every run counts"
phase = "memorization"
at_least = 0.0
"""
ARGS = ["--chunk-size", "1", "--no-progress", "--no-plots"]
# A child that dies (SIGKILL) right after the round's first chunk is recorded.
KILL_AFTER_FIRST_RECORD = """
import os, signal, sys
from grokjax.store import checkpoints
from grokjax.cli import main
real = checkpoints.write_record
def dying(*args):
    real(*args)
    os.kill(os.getpid(), signal.SIGKILL)
checkpoints.write_record = dying
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refine")
    (folder / "edge.toml").write_text(SWEEP)
    assert main(["sweep", str(folder / "edge.toml"), "--out", str(folder / "swept"), *ARGS]) == 0
    return folder


@pytest.fixture(scope="module")
def refined(swept):
    out = swept / "refined"
    shutil.copytree(swept / "swept", out)
    assert main(["refine", str(out), "--budget", "3", "--rounds", "2", *ARGS]) == 0
    return out


def test_a_round_grows_the_runs_with_unique_ids_and_is_listed(swept, refined, capsys):
    before, after = results.load(swept / "swept"), results.load(refined)
    rounds = after.meta["rounds"]
    assert [r["round"] for r in rounds] == [1, 2] and sum(r["proposed"] for r in rounds) <= 3
    assert len(after.runs) == len(before.runs) + sum(r["proposed"] for r in rounds)
    assert after.runs.run_id.is_unique and set(after.curves.run_id) == set(after.runs.run_id)
    pd.testing.assert_frame_equal(after.runs[after.runs.run_id.isin(before.runs.run_id)].reset_index(drop=True),
                                  before.runs)
    # grokjax check, like the provenance, judges every run.
    assert after.meta["expect"][0]["runs"] == len(after.runs)
    capsys.readouterr()
    assert main(["check", str(refined)]) == 0 and f"({len(after.runs)} runs)" in capsys.readouterr().out
    cells = figures.phase_cells(after.runs)
    assert (cells.x1 - cells.x0).round(9).nunique() > 1 and figures.phase_diagram(after.runs).to_dict()


def test_a_sweep_run_again_keeps_the_rounds(swept, refined):
    again = swept / "again"
    shutil.copytree(refined, again)
    assert main(["sweep", str(swept / "edge.toml"), "--out", str(again), *ARGS]) == 0
    pd.testing.assert_frame_equal(results.load(again).runs, results.load(refined).runs)
    assert results.load(again).meta["rounds"] == results.load(refined).meta["rounds"]


@pytest.mark.slow
def test_a_killed_round_resumes_without_retraining_its_finished_chunks(swept, refined):
    out = swept / "killed"
    shutil.copytree(swept / "swept", out)
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_RECORD, "refine", str(out), "--budget", "3",
                           "--rounds", "2", *ARGS], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL
    assert len(results.load(out).runs) == len(results.load(swept / "swept").runs)  # the tables wait for the round
    assert main(["refine", str(out), "--budget", "3", "--rounds", "2", *ARGS]) == 0
    done = results.load(out)
    assert done.meta["rounds"][0]["chunks_resumed"] == 1
    pd.testing.assert_frame_equal(done.runs, results.load(refined).runs)  # as if never killed
    # Run again, the finished call is not repeated: a new one refines further.
    assert main(["refine", str(out), "--budget", "1", *ARGS]) == 0
    assert len(results.load(out).runs) == len(done.runs) + 1


@pytest.mark.parametrize("args, says", [
    (["--budget", "0"], "--budget = 0; allowed: an integer >= 1"),
    (["--budget", "2", "--rounds", "0"], "--rounds = 0; allowed: an integer >= 1"),
])
def test_bad_arguments_are_one_line_and_exit_2(refined, capsys, args, says):
    assert main(["refine", str(refined), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err


def test_a_folder_without_results_or_refinable_axes_is_refused(tmp_path, capsys):
    assert main(["refine", str(tmp_path / "missing"), "--budget", "4"]) == 2
    assert "no results here" in capsys.readouterr().err
    (tmp_path / "sweep.toml").write_text('name = "seeds"\n[sweep]\nseed = [0, 1]\n')
    (tmp_path / "runs.parquet").write_text("")
    assert load(tmp_path / "sweep.toml").axes
    assert main(["refine", str(tmp_path), "--budget", "4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "varies neither data_fraction nor corruption_fraction" in err


def test_a_log_spaced_axis_is_refined_and_drawn_in_log():
    """Weight decays 0.01 .. 1 (the PAIR sweep's) on the y axis: midpoints are geometric means, and each
    cell reaches half-way to its neighbours in log10, as the chart's log scale shows them."""
    decays = [0.01, 0.1, 1.0]
    runs = table({"weight_decay": decays, "data_fraction": [0.3, 0.6, 0.9]},
                 lambda r: "coexistence" if r.weight_decay >= 0.1 else "memorization")
    assert figures.log_axis(runs.weight_decay) and not figures.log_axis(runs.data_fraction)
    proposed = boundaries.propose(runs, budget=100)
    np.testing.assert_allclose(sorted(proposed.weight_decay.unique()), [np.sqrt(0.01 * 0.1)])
    cells = figures.phase_cells(runs)
    np.testing.assert_allclose(np.log10(cells.y1) - np.log10(cells.y0), 1.0)  # a decade each, in log10
