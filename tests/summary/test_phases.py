import numpy as np
import pandas as pd
import pytest

from grokjax.config.sweep_file import PhaseConfig
from grokjax.summary.phases import classify, dynamics

# (train_acc, test_acc, xi, max_test_acc) -> phase, following Appendix C, Table 2.
CASES = [
    (1.00, 1.00, 0.35, 1.00, "coexistence"),
    (0.90, 0.90, 0.35, 0.90, "coexistence"),  # thresholds are inclusive
    (0.80, 0.99, 0.35, 0.99, "partial_inversion"),  # 1.05 - 0.35 = 0.70 <= 0.80 < 0.9
    (0.70, 0.99, 0.35, 0.99, "partial_inversion"),
    (0.66, 0.99, 0.35, 0.99, "full_inversion"),  # 0.66 < 0.70
    (0.89, 0.95, 0.10, 0.95, "full_inversion"),  # 1.05 - 0.1 = 0.95 > 0.9: no partial band
    (0.99, 0.20, 0.35, 0.30, "memorization"),
    (0.30, 0.05, 0.35, 0.98, "forgetting"),  # had generalized at an earlier logged step
    (0.30, 0.05, 0.35, 0.50, "confusion"),
    (0.30, 0.89, 0.35, 0.89, "confusion"),
]


@pytest.mark.parametrize("train, test, xi, best, phase", CASES)
def test_table_2(train, test, xi, best, phase):
    assert classify([train], [test], [xi], [best])[0] == phase


def test_vectorized_and_parameters():
    train, test, xi, best, phases = (np.array(c) for c in zip(*CASES))
    np.testing.assert_array_equal(classify(train, test, xi, best), phases)
    # A stricter threshold turns a 0.9/0.9 run into confusion.
    assert classify([0.9], [0.9], [0.0], [0.9], PhaseConfig(threshold=0.95))[0] == "confusion"
    # A larger offset widens the partial-inversion band.
    assert classify([0.66], [0.99], [0.35], [0.99], PhaseConfig(inversion_offset=1.0))[0] == "partial_inversion"


def test_no_test_set_gives_no_phase():
    assert classify([1.0], [np.nan], [0.0], [np.nan])[0] is None


def test_dynamics_from_first_steps_at_90_percent():
    train = pd.Series([20, 20, pd.NA, 20, pd.NA, 100], dtype="Int64")
    test = pd.Series([200, 240, 300, pd.NA, pd.NA, 60], dtype="Int64")
    got = dynamics(train, test, pd.Series([2000] * 6), delay=0.1)  # 200 steps
    assert got.tolist() == ["comprehension", "grokking", "comprehension", "memorization", "confusion", "comprehension"]
