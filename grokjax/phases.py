"""Phases of the paper's Appendix C, Table 2, from a run's final and best metrics."""

from __future__ import annotations

import numpy as np

from grokjax.config import PhaseConfig

PHASES = (
    "coexistence",
    "partial_inversion",
    "full_inversion",
    "memorization",
    "forgetting",
    "confusion",
)
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
