"""The stages of each run from its curves, by their rules (docs/measures.md), and Kaplan-Meier survival curves."""

import numpy as np
import pandas as pd

from grokjax.summary import stages


def curves_of(rows):
    """Curves of runs from (run_id, step, train_acc, test_acc, test_loss, restricted_loss, excluded_loss) rows."""
    return pd.DataFrame(rows, columns=["run_id", "step", "train_acc", "test_acc", "test_loss", "restricted_loss",
                                       "excluded_loss"])


def test_each_stage_begins_where_its_rule_first_holds_and_is_null_where_never():
    curves = curves_of([
        # run 0 groks: memorizes at 20, restricted below excluded from 40, test loss halves (from 4 to 2) at 60
        (0, 10, 0.5, 0.0, 4.0, 3.0, 1.0), (0, 20, 1.0, 0.0, 4.0, 2.0, 1.0), (0, 30, 1.0, 0.1, 4.1, 1.5, 1.0),
        (0, 40, 1.0, 0.2, 4.0, 0.9, 1.0), (0, 50, 1.0, 0.5, 3.0, 0.5, 1.5), (0, 60, 1.0, 0.95, 2.0, 0.1, 2.0),
        # run 1: restricted falls below excluded before memorizing, which does not count; then never again
        (1, 10, 0.5, 0.0, 4.0, 0.5, 1.0), (1, 20, 1.0, 0.0, 4.0, 2.0, 1.0), (1, 30, 1.0, 0.0, 1.0, 2.0, 1.0),
        # run 2 never memorizes
        (2, 10, 0.2, 0.0, 4.0, 0.5, 1.0), (2, 20, 0.3, 0.0, 4.0, 0.5, 1.0),
    ])  # fmt: skip
    runs = pd.DataFrame({"run_id": [0, 1, 2], "step_train_acc_90": pd.array([20, 20, None], dtype="Int64"),
                         "step_test_acc_90": pd.array([60, None, None], dtype="Int64")})
    got = stages.with_stages(runs, curves)
    assert got.stage_memorization.tolist() == [20, 20, pd.NA]
    assert got.stage_circuit_formation.tolist() == [40, pd.NA, pd.NA]
    assert got.stage_cleanup.tolist() == [60, pd.NA, pd.NA]
    assert got.stage_generalization.tolist() == [60, pd.NA, pd.NA]
    # The largest excluded loss from memorization until generalization (or the end), over its value at memorization.
    np.testing.assert_array_equal(got.excluded_rise, [1.5, 1.0, np.nan])


def test_kaplan_meier_by_its_product_formula():
    # Steps 100, 200, 200, 300, 300; the second run at 200 and the first at 300 censored (never reached).
    curve = stages.kaplan_meier(np.array([100, 200, 200, 300, 300]), np.array([True, True, False, False, True]))
    assert curve.step.tolist() == [0, 100, 200, 300]
    np.testing.assert_allclose(curve.surviving, [1.0, 1 - 1 / 5, 0.8 * (1 - 1 / 4), 0.6 * (1 - 1 / 2)])
    assert curve.at_risk.tolist() == [5, 5, 4, 2]
    assert stages.kaplan_meier(np.array([50, 50]), np.array([False, False])).surviving.tolist() == [1.0, 1.0]


def test_survival_groups_runs_and_censors_at_their_last_step():
    runs = pd.DataFrame({"weight_decay": [0.0, 0.0, 1.0, 1.0], "steps": [100, 100, 100, 100],
                         **{f"stage_{s}": pd.array(v, dtype="Int64") for s, v in zip(
                             ("memorization", "circuit_formation", "cleanup", "generalization"),
                             ([10, 10, 10, 10], [None, None, 30, 50], [None, None, 40, None], [None, None, 60, None]))}})
    curves = stages.survival(runs, ["weight_decay"])
    late = curves[(curves.stage == "generalization")].groupby("weight_decay").surviving.last()
    assert late.tolist() == [1.0, 0.5]
    assert curves.columns[:2].tolist() == ["weight_decay", "stage"]
    assert set(curves[curves.weight_decay == 0].query("stage == 'cleanup'").step) == {0, 100}
