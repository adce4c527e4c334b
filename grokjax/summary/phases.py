"""Phases of the paper's Appendix C, Table 2, from a run's final and best metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd

from grokjax.config.fields import PHASES  # noqa: F401 (re-exported: the phases, in the paper's order)
from grokjax.config.sweep_file import PhaseConfig

TOLERANCE = 1e-9


def classify(
    train_acc: np.ndarray,
    test_acc: np.ndarray,
    corruption_fraction: np.ndarray,
    max_test_acc: np.ndarray,
    config: PhaseConfig = PhaseConfig(),
) -> np.ndarray:
    """Phase name per run (object array; None where there is no test set to judge).

    test >= t, train >= t: coexistence; test >= t, offset - xi <= train < t: partial
    inversion; test >= t, train < offset - xi: full inversion; test < t, train >= t:
    memorization; both < t: forgetting if test had reached t at a logged step,
    else confusion. t = config.threshold (0.9), offset = config.inversion_offset (1.05).
    """
    train_acc, test_acc = np.asarray(train_acc, float), np.asarray(test_acc, float)
    # Thresholds are inclusive up to float noise: 1.05 - 0.35 is 0.7000000000000001.
    t = config.threshold - TOLERANCE
    inverted_below = config.inversion_offset - np.asarray(corruption_fraction, float) - TOLERANCE
    generalizes, memorizes = test_acc >= t, train_acc >= t
    generalized_once = np.asarray(max_test_acc, float) >= t
    conditions = [
        generalizes & memorizes,
        generalizes & (train_acc >= inverted_below),
        generalizes,
        memorizes,
        generalized_once,
    ]
    phase = np.select(conditions, PHASES[:5], default=PHASES[5]).astype(object)
    phase[np.isnan(test_acc)] = None
    return phase


def majority_phase(phases: pd.Series) -> str | None:
    """Most common phase among runs of one cell (seeds); ties go to the earlier phase in PHASES."""
    counts = phases.dropna().value_counts()
    if counts.empty:
        return None
    best = counts.max()
    return next(p for p in PHASES if counts.get(p, 0) == best)


DYNAMICS = ("comprehension", "grokking", "memorization", "confusion")


def dynamics(step_train: pd.Series, step_test: pd.Series, steps: pd.Series, delay: float) -> np.ndarray:
    """How a run learned, from the first logged steps at which train and test accuracy reached 90%.

    grokking: test reached it more than delay * steps after train did (generalization long
    after memorization); comprehension: test reached it sooner than that, or without train
    ever reaching it (inversion: the corrupted labels were never fitted); memorization:
    train only; confusion: neither.
    """
    train_at = pd.to_numeric(step_train, errors="coerce").to_numpy(dtype=float)
    test_at = pd.to_numeric(step_test, errors="coerce").to_numpy(dtype=float)
    lag = test_at - train_at
    late = lag > delay * np.asarray(steps, dtype=float)
    conditions = [~np.isnan(test_at) & late, ~np.isnan(test_at), ~np.isnan(train_at)]
    return np.select(conditions, ["grokking", "comprehension", "memorization"], default="confusion").astype(object)
