"""The stages of grokking in each run, from its curves, and their timing across runs as survival curves.

A stage begins at a logged step found by a rule on the run's curves (docs/measures.md):
- memorization: training accuracy on the trained labels reaches the threshold;
- circuit formation: at or after memorization, the restricted loss falls below the excluded loss (the key
  frequencies alone fit every pair better than the network without them fits the pairs it trains on);
- cleanup: at or after circuit formation, the test loss falls to half its value when circuit formation began
  (what hurt the unseen pairs is going);
- generalization: test accuracy reaches the threshold.
A run that never meets a rule has no step for that stage (null), and counts as censored at its last step in
the survival curves (Kaplan-Meier), never as a guess. excluded_rise: how far the excluded loss rises while the
training set is fitted and the test set not yet, as the largest excluded loss from memorization until
generalization (or the end) over its value at memorization.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from grokjax.config.fields import STAGES

CLEANUP_FACTOR = 0.5  # cleanup: the test loss at most this share of its value when circuit formation began


def with_stages(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Add stage_memorization, stage_circuit_formation, stage_cleanup and stage_generalization (Int64, NA where never)
    to runs with their first steps at the threshold (`summarize.with_first_steps`) whose curves have the progress
    measures."""
    first = lambda rows: rows.groupby("run_id").step.min()  # noqa: E731 (each run's first step among rows)
    memorization = runs.set_index("run_id").step_train_acc_90.astype("float64")
    after = curves.run_id.map(memorization)
    circuit = first(curves[(curves.step >= after) & (curves.restricted_loss < curves.excluded_loss)])
    began = curves.run_id.map(circuit)
    at_start = curves[curves.step == began].set_index("run_id").test_loss
    cleanup = first(curves[(curves.step >= began) & (curves.test_loss <= CLEANUP_FACTOR * curves.run_id.map(at_start))])
    generalization = runs.set_index("run_id").step_test_acc_90
    for stage, steps in zip(STAGES, (memorization, circuit, cleanup, generalization)):
        runs[f"stage_{stage}"] = pd.array(runs.run_id.map(steps), dtype="Int64")
    until = curves.run_id.map(generalization.astype("float64")).fillna(np.inf)
    window = curves[(curves.step >= after) & (curves.step < until)]
    at_memorization = curves[curves.step == after].set_index("run_id").excluded_loss
    runs["excluded_rise"] = runs.run_id.map(window.groupby("run_id").excluded_loss.max() / at_memorization)
    return runs


def kaplan_meier(times: np.ndarray, reached: np.ndarray) -> pd.DataFrame:
    """The Kaplan-Meier estimate of the share of runs that have not yet reached a stage: S(t) = prod over event
    steps t_i <= t of (1 - d_i / n_i), d_i runs reaching it at t_i, n_i runs neither reached nor censored before.
    `times` are the steps of the stage, or the last step where it was not reached (censored). Rows: step,
    surviving, at_risk, from step 0 (S = 1) to the last time."""
    times, reached = np.asarray(times, float), np.asarray(reached, bool)
    rows, surviving = [(0.0, 1.0, len(times))], 1.0
    for t in np.unique(times):
        at_risk = int(np.sum(times >= t))
        events = int(np.sum((times == t) & reached))
        if events:
            surviving *= 1.0 - events / at_risk
        rows.append((t, surviving, at_risk))
    return pd.DataFrame(rows, columns=["step", "surviving", "at_risk"])


def survival(runs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Kaplan-Meier curves of every stage per group of runs (`by`, e.g. a phase diagram's cells): columns *by,
    stage, step, surviving, at_risk, runs, reached. A run censors at its last step (`steps`)."""
    frames = []
    for key, group in runs.groupby(by, sort=True) if by else [((), runs)]:
        key = key if isinstance(key, tuple) else (key,)
        for stage in STAGES:
            step = group[f"stage_{stage}"]
            curve = kaplan_meier(step.fillna(group.steps).to_numpy(float), step.notna().to_numpy())
            curve.insert(0, "stage", stage)
            for name, value in reversed(list(zip(by, key))):
                curve.insert(0, name, value)
            curve["runs"], curve["reached"] = len(group), int(step.notna().sum())
            frames.append(curve)
    return pd.concat(frames, ignore_index=True)
