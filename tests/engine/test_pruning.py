"""Stored parameters, pruning in IPR order (Figure 6) and minimum pruning (Figure 32)."""

import jax
import numpy as np
import pandas as pd
import pytest

from grokjax.cli import main
from grokjax.core.tasks import make_run_data
from grokjax.engine import plan, pruning
from grokjax.engine.sweep import run
from grokjax.store import results


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    """The tiny sweep (8 runs, p = 11, width 24) with its params and min_prune, pruned both ways through the CLI."""
    from tests.conftest import TINY_SWEEP

    folder = tmp_path_factory.mktemp("pruned")
    path = folder / "tiny.toml"
    path.write_text(TINY_SWEEP)
    run(path, out=folder / "out", overrides=["analysis.min_prune=true"], progress=False, plots=False)
    assert main(["prune", str(folder / "out")]) == 0
    return folder / "out"


def test_params_round_trip_in_any_order(pruned):
    runs = results.load(pruned).runs
    ids = runs.run_id.to_numpy()[::-1]
    params = results.load_params(pruned, ids)
    assert params["U"]["embedding"].shape == (len(ids), 11, 24) and params["W"]["kernel"].shape == (len(ids), 24, 11)
    one = results.load_params(pruned, [ids[2]])
    np.testing.assert_array_equal(one["V"]["embedding"][0], params["V"]["embedding"][2])
    with pytest.raises(KeyError):
        results.load_params(pruned, [999])


def test_pruning_table_ends_are_exact(pruned):
    runs = results.load(pruned).runs.set_index("run_id")
    curves = pd.read_parquet(pruned / "pruning.parquet")
    assert len(curves) == len(runs) * 25 * 2 and set(curves.order) == {"low", "high"}
    start = curves[curves.pruned == 0].groupby("run_id").first()
    for column in ("train_acc", "test_acc", "train_acc_clean"):  # no neuron removed: the trained run itself
        np.testing.assert_allclose(start[column], runs.loc[start.index, column])
    # Every neuron removed: all logits are 0, so argmax predicts class 0 for every example.
    end = curves[(curves.pruned == 24) & (curves.order == "low")].set_index("run_id")
    static, group = next(plan.groups(runs.reset_index()))
    for row in group.itertuples():
        data = make_run_data(static, jax.random.key(row.data_seed), row.n_train, row.n_corrupt)
        test_labels = np.asarray(data.labels)[np.asarray(data.test)]
        assert end.loc[row.run_id, "test_acc"] == pytest.approx(np.mean(test_labels == 0))


def test_min_prune_column_matches_the_low_curves(pruned):
    runs = results.load(pruned).runs.set_index("run_id")
    curves = pd.read_parquet(pruned / "pruning.parquet")
    expected = pruning.minimum_pruning(curves)
    np.testing.assert_array_equal(runs.loc[expected.index, "min_prune"].to_numpy(int), expected.to_numpy())
    for run_id, count in expected.items():  # test accuracy holds 90% of its value up to min_prune, not one further
        low = curves[(curves.run_id == run_id) & (curves.order == "low")].set_index("pruned").test_acc
        assert (low.loc[:count] >= 0.9 * low.loc[0] - 1e-9).all()
        if count < 24:
            assert low.loc[count + 1] < 0.9 * low.loc[0] - 1e-9


def test_removal_rank_orders_by_ipr():
    ipr = np.array([[0.3, np.nan, 0.9, 0.1]])
    assert removal_order(ipr, "low") == [1, 3, 0, 2]  # a dead neuron (NaN) goes first either way
    assert removal_order(ipr, "high") == [1, 2, 0, 3]


def removal_order(ipr, order):
    return list(np.argsort(pruning.removal_rank(ipr, order)[0]))


def test_no_params_and_bad_queries_exit_2(sweep_file, tmp_path, capsys):
    run(sweep_file(), out=tmp_path / "out", progress=False, plots=False, keep_params=False)
    assert not (tmp_path / "out" / "params").exists()
    assert results.load(tmp_path / "out").runs.min_prune.isna().all()
    assert main(["prune", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--no-params" in err
    assert main(["prune", str(tmp_path / "out"), "--where", "weight_decay >"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--where" in err
    assert not (tmp_path / "out" / "pruning.parquet").exists()


@pytest.mark.parametrize("depth", [2, 3])
def test_without_units_removes_exactly_those_neurons(depth):
    """The MLP's without_units, against the definition: the network with the removed first-layer neurons'
    activations set to 0 (their outputs reach nothing), all others as trained."""
    from grokjax.core import models
    from grokjax.core.types import Static

    static = Static(p=7, width=16, depth=depth, activation="relu")
    module = models.build(static)
    params = models.init(static, jax.random.key(3), jax.numpy.float32(1.0))["params"]
    keep = np.ones(16, bool)
    keep[[0, 5, 11]] = False
    m, n = np.divmod(np.arange(49), 7)
    h = np.maximum(np.asarray(params["U"]["embedding"])[m] + np.asarray(params["V"]["embedding"])[n], 0) * keep
    if depth == 3:
        h = np.maximum(h @ np.asarray(params["hidden_1"]["kernel"]), 0)
    expected = h @ np.asarray(params["W"]["kernel"])
    rows = np.stack([m, n], axis=1)
    got = module.apply({"params": module.without_units(params, keep)}, rows, train=False, rate=0.0, mask=None)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)
    assert pruning.can_prune(static) and not pruning.can_prune(Static(p=7, width=16, norm="batchnorm"))
