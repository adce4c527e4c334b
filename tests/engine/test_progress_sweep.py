"""[analysis] progress end to end: a sweep's curves gain the measures, its runs the key frequencies and stages,
its folder the charts, and the stored weights give back the last logged measures through their definitions."""

import jax
import numpy as np
import pandas as pd
import pytest

import grokjax
from grokjax.core import models, progress, registry
from grokjax.core.tasks import make_run_data, model_inputs
from grokjax.engine.runs_table import static_of
from grokjax.store import results
from tests.core.test_progress import numpy_measures

SWEEP = """\
name = "progress"
[task]
p = 11
[model]
width = 24
[train]
loss = "cross_entropy"
learning_rate = 0.01
steps = 60
log_every = 20
[analysis]
progress = true
[sweep]
task = ["modular_addition", "modular_multiplication"]
data_fraction = [0.5]
weight_decay = [0.0, 1.0]
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("progress")
    (folder / "on.toml").write_text(SWEEP)
    (folder / "off.toml").write_text(SWEEP.replace("progress = true", "progress = false"))
    on = grokjax.run_sweep(folder / "on.toml", out=folder / "on", progress=False).folder
    off = grokjax.run_sweep(folder / "off.toml", out=folder / "off", progress=False, plots=False).folder
    return grokjax.load_results(on), grokjax.load_results(off), on


def test_stored_weights_give_back_the_last_logged_measures_by_their_definitions(swept):
    res, _, folder = swept
    last = res.curves.sort_values("step").groupby("run_id").last()
    for row in res.runs.itertuples():
        static = static_of(pd.Series(row._asdict()))
        params = jax.tree.map(lambda x: x[0], results.load_params(folder, [row.run_id]))
        data = make_run_data(static, jax.random.key(row.data_seed), row.n_train, row.n_corrupt)
        logits = models.build(static).apply({"params": params}, model_inputs(static, data), train=False, rate=0.0,
                                            mask=None)
        task = registry.task_of(static)
        restricted, excluded, _ = numpy_measures(np.asarray(logits, np.float64), task, np.asarray(data.train),
                                                 np.asarray(data.labels), list(row.key_frequencies), static.loss)
        np.testing.assert_allclose(last.loc[row.run_id, "restricted_loss"], restricted, rtol=1e-3)
        np.testing.assert_allclose(last.loc[row.run_id, "excluded_loss"], excluded, rtol=1e-3)
        assert all(1 <= k <= task.fourier.order // 2 for k in row.key_frequencies)


def test_progress_adds_columns_and_changes_nothing_else(swept):
    on, off, folder = swept
    shared = [c for c in off.curves if c in on.curves]
    pd.testing.assert_frame_equal(on.curves[shared], off.curves)
    assert not {"restricted_loss", "stage_cleanup", "key_frequencies"} & (set(off.runs) | set(off.curves))
    stages = on.runs[[f"stage_{s}" for s in ("memorization", "circuit_formation", "cleanup")]]
    for first, second in zip(stages.columns, stages.columns[1:]):
        both = stages[first].notna() & stages[second].notna()
        assert (stages[first][both] <= stages[second][both]).all()
    assert on.runs.stage_circuit_formation.notna().sum() <= on.runs.stage_memorization.notna().sum()
    for chart in ("stages", "progress"):
        assert (folder / f"{chart}.png").stat().st_size > 1000


def test_progress_turned_on_over_a_finished_folder_replays_into_the_same_tables(swept, tmp_path):
    """From params/ (the key frequencies) and from a replay alone (--no-params): the tables of a sweep that had the
    measures from the start, value for value; turned off again, its columns go."""
    on, _, _ = swept
    for keep in (True, False):
        path, out = tmp_path / f"off_{keep}.toml", tmp_path / f"out_{keep}"
        path.write_text(SWEEP.replace("progress = true", "progress = false"))
        grokjax.run_sweep(path, out=out, progress=False, plots=False, keep_params=keep)
        later = grokjax.run_sweep(path, out=out, overrides=["analysis.progress=true"], progress=False,
                                  plots=False).results
        assert later.meta["chunks_resumed"] == len(later.meta["chunk_sizes"])
        pd.testing.assert_frame_equal(later.curves, on.curves)
        columns = [c for c in on.runs if c not in ("key_frequencies",)]
        pd.testing.assert_frame_equal(later.runs[columns], on.runs[columns])
        assert later.runs.key_frequencies.map(list).tolist() == on.runs.key_frequencies.map(list).tolist()
    again = grokjax.run_sweep(path, out=out, progress=False, plots=False).results
    assert "restricted_loss" not in again.curves and "stage_cleanup" not in again.runs


def test_a_task_without_a_fourier_group_says_so_and_trains(tmp_path, capsys):
    path = tmp_path / "s5.toml"
    path.write_text(SWEEP.replace('task = ["modular_addition", "modular_multiplication"]', 'task = ["s5_composition"]')
                    .replace("steps = 60", "steps = 2").replace("log_every = 20", "log_every = 1"))
    res = grokjax.run_sweep(path, out=tmp_path / "out", progress=False, plots=False).results
    assert "restricted_loss" not in res.curves
    assert "progress measures left out: the labels of task s5_composition" in capsys.readouterr().err
    assert progress.left_out(static_of(res.runs.iloc[0])) is not None
