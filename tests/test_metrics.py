"""Metrics against values computed by hand."""
import numpy as np
import pytest

from ferkit.evaluation.metrics import compute_metrics, expected_calibration_error

LABELS = ["a", "b", "c"]


def test_metrics_on_a_hand_checked_example():
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .8, .1], [.1, .6, .3], [.1, .2, .7], [.3, .3, .4]])
    m = compute_metrics(y, probs, LABELS)
    assert m["n"] == 6 and m["labels"] == LABELS
    assert m["accuracy"] == pytest.approx(5 / 6)
    # class a: P=1, R=.5, F1=2/3; class b: P=2/3, R=1, F1=.8; class c: P=R=F1=1
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 1) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 2]]
    assert 0.5 < m["macro_auc"] <= 1 and 0.5 < m["micro_auc"] <= 1


def test_auc_skips_a_class_absent_from_the_labels():
    y = np.array([0, 0, 1, 1])
    probs = np.array([[.9, .05, .05], [.8, .1, .1], [.1, .8, .1], [.2, .7, .1]])
    m = compute_metrics(y, probs, LABELS)
    assert m["macro_auc"] == pytest.approx(1.0)
    assert m["per_class"]["c"]["support"] == 0


def test_ece_is_zero_for_perfectly_calibrated_confidence_and_large_for_overconfidence():
    y = np.array([0, 1] * 50)
    probs = np.tile([[0.5, 0.5]], (100, 1))
    assert expected_calibration_error(y, probs) == pytest.approx(0.0, abs=1e-9)
    wrong = np.tile([[0.99, 0.01]], (100, 1))
    assert expected_calibration_error(y, wrong) == pytest.approx(0.49, abs=1e-6)
