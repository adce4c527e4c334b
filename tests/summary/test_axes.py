"""Any two swept numbers as the phase diagram's axes: [plot] in the sweep file, --x and --y on the command line,
the chart functions' `axes`; the other swept fields become facets, and refine splits cells along the chosen axes."""

import pytest

from grokjax.cli import main
from grokjax.store import results
from grokjax.summary.cells import axes_problem, facet_axes, grid_axes, phase_cells

SWEEP = """\
name = "axes"
[task]
p = 7
data_fraction = 0.6
[model]
width = 16
[train]
steps = 20
log_every = 10
[plot]
x = "learning_rate"
y = "weight_decay"
[sweep]
learning_rate = {start = 0.001, stop = 0.1, num = 3, log = true}
weight_decay = [0.0, 2.0]
corruption_fraction = [0.0, 0.2]
"""
ARGS = ["--no-progress", "--no-plots"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("axes")
    (path / "axes.toml").write_text(SWEEP)
    assert main(["sweep", str(path / "axes.toml"), "--out", str(path / "out"), *ARGS]) == 0
    return path


def test_the_chosen_axes_make_the_cells_and_the_other_swept_fields_facets(folder):
    res = results.load(folder / "out")
    axes = ("learning_rate", "weight_decay")
    assert grid_axes(res.runs, axes) == axes and grid_axes(res.runs) == ("data_fraction", "corruption_fraction")
    assert facet_axes(res.runs, axes) == ["corruption_fraction"]
    cells = phase_cells(res.runs, axes)
    assert len(cells) == 3 * 2 * 2 and set(cells.facet) == {"corruption fraction ξ = 0", "corruption fraction ξ = 0.2"}
    assert (cells.x0 < cells.learning_rate).all() and (cells.learning_rate < cells.x1).all()  # each cell around its point
    assert "learning_rate, weight_decay" in axes_problem(res.runs, ("phase", ""))
    assert axes_problem(res.runs, ("width", "")) is None  # held fixed: one column
    assert axes_problem(res.runs, ("task", "")) is not None  # not a number
    assert axes_problem(res.runs, axes) is None


def test_the_summary_map_and_plot_use_the_sweep_files_axes_or_the_command_lines(folder, capsys):
    capsys.readouterr()
    assert main(["sweep", str(folder / "axes.toml"), "--out", str(folder / "out"), *ARGS]) == 0
    assert "Phase map: x = learning_rate, y = weight_decay" in capsys.readouterr().out
    assert main(["plot", str(folder / "out"), "--x", "corruption_fraction", "--y", "learning_rate"]) == 0
    assert (folder / "out" / "phase_diagram.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["plot", str(folder / "out"), "--x", "phase"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and '--x = "phase"; allowed: a numeric config column, such as' in err


def test_changing_the_axes_trains_nothing_and_a_bad_axis_is_refused_before_training(folder, capsys):
    assert main(["sweep", str(folder / "axes.toml"), "--out", str(folder / "out"), *ARGS,
                 "--set", "plot.y=corruption_fraction"]) == 0
    res = results.load(folder / "out")
    assert res.meta["chunks_resumed"] == res.meta["chunks"] and res.meta["config"]["plot"]["y"] == "corruption_fraction"
    capsys.readouterr()
    out = folder / "bad"
    assert main(["sweep", str(folder / "axes.toml"), "--out", str(out), *ARGS, "--set", "plot.x=optimizer"]) == 2
    err = capsys.readouterr().err.strip()
    assert 'plot.x = "optimizer"; allowed: a numeric config column, such as those the sweep varies: ' \
           'corruption_fraction, learning_rate, weight_decay' in err
    assert not out.exists()


def test_refine_splits_cells_along_the_chosen_axes(tmp_path):
    (tmp_path / "axes.toml").write_text(SWEEP)
    out = tmp_path / "out"
    assert main(["sweep", str(tmp_path / "axes.toml"), "--out", str(out), *ARGS]) == 0
    assert main(["refine", str(out), "--budget", "2", "--no-progress", "--no-plots"]) == 0
    runs = results.load(out).runs
    grid, new = runs[runs.run_id < 12], runs[runs.run_id >= 12]
    assert len(new) == 2 and set(new.corruption_fraction) <= {0.0, 0.2}  # a facet: never split
    for row in new.itertuples():  # a midpoint along learning rate (in log: the axis is log-spaced) or weight decay
        along_lr = row.learning_rate not in set(grid.learning_rate) and row.weight_decay in set(grid.weight_decay)
        along_wd = row.weight_decay == 1.0 and row.learning_rate in set(grid.learning_rate)
        assert along_lr or along_wd, row
        if along_lr:
            assert any(abs(row.learning_rate - (a * b) ** 0.5) < 1e-9 for a, b in ((0.001, 0.01), (0.01, 0.1)))
