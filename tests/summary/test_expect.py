"""The paper's claims as [[expect]] entries: parsed with one-line errors, evaluated by their definition,
stored in the provenance, checked again by `grokjax check`."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from grokjax.cli import main
from grokjax.config.sweep_file import ConfigError, Expectation, from_dict, load
from grokjax.store import results
from grokjax.summary import expect
from tests.conftest import TINY_SWEEP


def runs_table() -> pd.DataFrame:
    """Six runs over two weight decays, by hand."""
    return pd.DataFrame({
        "weight_decay": [0.0, 0.0, 0.0, 5.0, 5.0, 5.0],
        "data_fraction": [0.3, 0.6, 0.9, 0.3, 0.6, 0.9],
        "phase": ["memorization", "coexistence", "coexistence", "memorization", "full_inversion", "full_inversion"],
        "test_acc": [0.1, 0.95, 1.0, 0.2, 0.9, np.nan],
        "ipr_mean": [0.1, 0.2, 0.3, 0.5, 0.6, 0.7],
    })


def claim(**fields) -> Expectation:
    return from_dict({"expect": [{"claim": "c", **fields}]}).expect[0]


@pytest.mark.parametrize(("fields", "value", "passed"), [
    (dict(phase="coexistence", where="weight_decay == 0"), 2 / 3, True),  # a majority by default
    (dict(phase="coexistence", where="weight_decay == 5"), 0.0, False),
    (dict(phase=["coexistence", "full_inversion"], at_least=0.66), 4 / 6, True),
    (dict(phase="memorization", at_most=0.3), 2 / 6, False),
    (dict(metric="test_acc", where="weight_decay == 0", of="min", at_least=0.1), 0.1, True),
    (dict(metric="test_acc", where="weight_decay == 0", at_least=0.7), (0.1 + 0.95 + 1.0) / 3, False),
    (dict(metric="test_acc", where="weight_decay == 5", of="max", at_least=0.0), math.nan, False),  # NaN never holds
    (dict(metric="ipr_mean", where="weight_decay == 5", than="weight_decay == 0"), 0.6, True),
    (dict(metric="ipr_mean", where="weight_decay == 0", than="weight_decay == 5"), 0.2, False),
    (dict(phase="full_inversion", where="data_fraction > 0.5", than="data_fraction < 0.5"), 0.5, True),
    (dict(metric="ipr_mean / data_fraction", where="weight_decay == 0", of="max", at_least=0.4), 0.1 / 0.3, False),
])
def test_a_claim_is_its_value_against_its_bounds_or_comparison(fields, value, passed):
    (record,) = expect.evaluate((claim(**fields),), runs_table())
    np.testing.assert_allclose(record["value"], value)
    assert record["passed"] is passed
    assert (record["where"] == "all runs") == ("where" not in fields)
    assert ("held" if passed else "FAILED") in expect.lines([record])[0]


@pytest.mark.parametrize(("entry", "message"), [
    ({"claim": "c", "phase": "coexistence", "colour": 1}, "expect[0]: unknown key 'colour'"),
    ({"phase": "coexistence"}, "expect[0]: 'claim' missing"),
    ({"claim": "c", "phase": "grokking"}, 'expect[0].phase = "grokking"; allowed: one of'),
    ({"claim": "c", "phase": "coexistence", "metric": "test_acc"}, "exactly one of 'phase'"),
    ({"claim": "c"}, "exactly one of 'phase'"),
    ({"claim": "c", "metric": "test_acc", "of": "mode", "at_least": 1}, "expect[0].of = \"mode\"; allowed: mean, median"),
    ({"claim": "c", "metric": "test_acc"}, "a 'metric' needs 'at_least', 'at_most' or 'than'"),
    ({"claim": "c", "metric": "test_acc", "at_least": "high"}, "expect[0].at_least = \"high\"; allowed: a finite"),
    ({"claim": "c", "metric": "test_acc", "at_least": 0.5, "where": 3}, "expect[0].where = 3; allowed: a string"),
])
def test_bad_entries_are_one_line(entry, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[").replace("]", r"\]")):
        from_dict({"expect": [entry]}, source="f.toml")


@pytest.mark.parametrize(("entry", "message"), [
    ('metric = "accuracy"\nat_least = 0.5', 'expect[0].metric = "accuracy"; allowed:'),
    ('metric = "test_acc /"\nat_least = 0.5', 'expect[0].metric = "test_acc /"; allowed:'),
    ('phase = "coexistence"\nwhere = "weight_decay =="', 'expect[0].where = "weight_decay ==" is not a query'),
    ('phase = "coexistence"\nwhere = "accuracy > 0.5"', "is not a query on the runs' columns: unknown name 'accuracy'"),
    ('phase = "coexistence"\nwhere = "weight_decay == 7"', 'expect[0].where = "weight_decay == 7" selects no run'),
    ('metric = "test_acc"\nthan = "weight_decay == 7"', 'expect[0].than = "weight_decay == 7" selects no run'),
])
def test_entries_checked_against_the_runs_exit_2_before_anything_is_written(sweep_file, tmp_path, capsys, entry,
                                                                            message):
    path = sweep_file(TINY_SWEEP + f'[[expect]]\nclaim = "c"\n{entry}\n')
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


CLAIMS = """\
[[expect]]
claim = "every run is trained to a finite loss"
metric = "train_loss"
of = "max"
at_most = 1e30

[[expect]]
claim = "no phase outside the paper's table"
phase = ["coexistence", "partial_inversion", "full_inversion", "memorization", "forgetting", "confusion"]
at_least = 1.0
"""


def test_claims_are_stored_printed_and_checked_again(sweep_file, tmp_path, capsys):
    path = sweep_file(TINY_SWEEP + CLAIMS)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--no-progress", "--no-plots", "--no-params"]) == 0
    printed = capsys.readouterr().out
    assert "The paper's claims ([[expect]]): 2 of 2 held" in printed and printed.count("  held  ") == 2
    meta = results.load(out).meta
    assert [r["claim"] for r in meta["expect"]] == [e.claim for e in load(path).expect]
    assert load(out / "sweep.toml").expect == load(path).expect  # the resolved config keeps its claims
    assert main(["check", str(out)]) == 0
    assert "2 of 2 claims held" in capsys.readouterr().out
    # An edited claim, checked on the same results without training: a test accuracy above 1 cannot hold.
    edited = sweep_file(TINY_SWEEP + CLAIMS + '[[expect]]\nclaim = "impossible"\nmetric = "test_acc"\nat_least = 1.5\n',
                        name="edited.toml")
    assert main(["check", str(out), "--file", str(edited)]) == 1
    assert "FAILED impossible: mean test_acc" in capsys.readouterr().out
    assert main(["check", str(tmp_path / "nowhere")]) == 2


def test_a_config_without_claims_keeps_its_hash():
    plain = from_dict(json.loads(json.dumps({"name": "x", "sweep": {"weight_decay": [0, 1]}})))
    assert "expect" not in plain.to_dict() and plain.expect == ()
    with_claim = from_dict({"name": "x", "sweep": {"weight_decay": [0, 1]},
                            "expect": [{"claim": "c", "phase": "coexistence"}]})
    assert with_claim.hash() != plain.hash()


def test_a_grid_narrowed_by_set_leaves_out_the_claims_it_gives_no_run(sweep_file, tmp_path, capsys):
    narrowed = '[[expect]]\nclaim = "weight decay helps"\nphase = "coexistence"\nwhere = "weight_decay == 1"\n'
    path = sweep_file(TINY_SWEEP + CLAIMS + narrowed)
    out = tmp_path / "out"
    args = ["sweep", str(path), "--out", str(out), "--no-progress", "--no-plots", "--no-params",
            "--set", "sweep.weight_decay=[0.0]", "--set", "train.steps=10"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "expect[2] left out" in captured.err and "2 of 2 held" in captured.out
    assert [e.claim for e in load(out / "sweep.toml").expect] == [e.claim for e in load(path).expect[:2]]
    # Without --set, the same claim on a grid without that weight decay is a mistake in the file: refused.
    typo = sweep_file(TINY_SWEEP + narrowed.replace("== 1", "== 7"), name="typo.toml")
    assert main(["sweep", str(typo), "--out", str(tmp_path / "typo"), "--no-progress"]) == 2


def test_claims_may_select_runs_by_their_results_and_take_medians():
    """A `where` on results (dynamics, stages) picks the runs after training; one that picks none gives NaN and
    fails with 0 runs; `of = "median"` is the median of the metric over the runs picked."""
    runs = pd.DataFrame({"run_id": [0, 1, 2, 3], "weight_decay": [0.0, 1.0, 1.0, 1.0],
                         "dynamics": ["memorization", "grokking", "grokking", "grokking"], "phase": ["memorization"] * 4,
                         "stage_circuit_formation": pd.array([None, 100, 200, 900], dtype="Int64"),
                         "stage_generalization": pd.array([None, 400, 300, 1000], dtype="Int64")})
    claims = from_dict({"expect": [
        {"claim": "restricted loss first", "where": "dynamics == 'grokking'", "of": "median",
         "metric": "stage_generalization - stage_circuit_formation", "at_least": 1},
        {"claim": "none", "where": "dynamics == 'comprehension'", "phase": "coexistence"},
    ]}).expect
    first, second = expect.evaluate(claims, runs)
    assert first["runs"] == 3 and first["value"] == 100 and first["passed"]
    assert second["runs"] == 0 and np.isnan(second["value"]) and not second["passed"]


def test_claims_on_progress_columns_need_progress_and_never_crash_without_them(sweep_file, tmp_path, capsys):
    claim = '[[expect]]\nclaim = "c"\nmetric = "stage_generalization - stage_circuit_formation"\nat_least = 1\n'
    path = sweep_file(TINY_SWEEP + claim)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("expect[0].metric names stage_circuit_formation, a column of the progress measures; allowed: "
                        "with [analysis] progress = true (docs/measures.md)") and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    # Runs without the columns (a task the measures do not apply to) make the claim fail, not the sweep.
    runs = pd.DataFrame({"run_id": [0], "phase": ["memorization"]})
    records = expect.evaluate(from_dict({"expect": [{"claim": "c", "metric": "excluded_rise", "at_least": 1},
                                                    {"claim": "d", "where": "dynamics == 'grokking'",
                                                     "phase": "coexistence"}]}).expect, runs)
    assert [r["passed"] for r in records] == [False, False] and np.isnan(records[0]["value"])


def test_a_step_never_reached_counts_as_after_every_step():
    """The median time to 90% over seeds puts the runs that never got there last (a survival curve's median), so
    a setting that groks in some seeds compares with one that groks in none; an expression of steps keeps NaN."""
    runs = pd.DataFrame({"grokfast_lambda": [0.0, 0.0, 0.0, 2.0, 2.0, 2.0],
                         "step_test_acc_90": pd.array([None, None, 900, 300, None, 500], dtype="Int64"),
                         "step_train_acc_90": pd.array([100] * 6, dtype="Int64")})
    claims = from_dict({"expect": [
        {"claim": "sooner", "where": "grokfast_lambda == 0", "than": "grokfast_lambda == 2",
         "metric": "step_test_acc_90", "of": "median"},
        {"claim": "a delay", "metric": "step_test_acc_90 - step_train_acc_90", "of": "max", "at_least": 0},
    ]}).expect
    sooner, delay = expect.evaluate(claims, runs)
    assert sooner["value"] == math.inf and sooner["than_value"] == 500 and sooner["passed"]
    assert np.isnan(delay["value"]) and not delay["passed"]
    assert "inf" in expect.lines([sooner])[0]
