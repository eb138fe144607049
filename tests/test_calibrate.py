"""Temperature scaling recovers a known temperature and lowers calibration error."""
import numpy as np
import pytest

from ferkit.evaluation.calibrate import fit_temperature, rescale
from ferkit.evaluation.metrics import expected_calibration_error


def test_recovers_the_temperature_that_generated_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 7))
    true_p = np.exp(logits / 2.0)
    true_p /= true_p.sum(1, keepdims=True)
    y = np.array([rng.choice(7, p=p) for p in true_p])
    overconfident = np.exp(logits - logits.max(1, keepdims=True))
    overconfident /= overconfident.sum(1, keepdims=True)  # the model's probabilities at T = 1
    t = fit_temperature(overconfident, y)
    assert t == pytest.approx(2.0, rel=0.1)
    fixed = rescale(overconfident, 1.0, t)
    assert expected_calibration_error(y, fixed) < expected_calibration_error(y, overconfident) / 2
    assert np.array_equal(fixed.argmax(1), overconfident.argmax(1))  # accuracy is untouched
