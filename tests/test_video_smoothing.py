"""Temporal smoothing: an exponential moving average per track that spans the same time whatever frames arrive."""
from __future__ import annotations

import numpy as np
import pytest

from ferkit.video.smoothing import EMASmoother, make_smoother, per_frame_weight

P1 = np.array([0.9, 0.1])
P2 = np.array([0.1, 0.9])


def test_the_first_frame_of_a_track_is_its_own_average():
    assert EMASmoother(0.3).update(1, P1, frame=0) == pytest.approx(P1)


def test_each_frame_moves_the_average_by_alpha():
    s = EMASmoother(0.3)
    s.update(1, P1, 0)
    assert s.update(1, P2, 1) == pytest.approx(0.3 * P2 + 0.7 * P1)
    assert s.update(1, P2, 2) == pytest.approx(0.3 * P2 + 0.7 * (0.3 * P2 + 0.7 * P1))


def test_a_frame_k_frames_later_weighs_what_k_steps_would_have_given_it():
    skipping, every = EMASmoother(0.3), EMASmoother(0.3)
    skipping.update(1, P1, 0)
    every.update(1, P1, 0)
    for f in (1, 2, 3):
        expected = every.update(1, P2, f)
    assert skipping.update(1, P2, 3) == pytest.approx(expected)
    assert expected == pytest.approx((1 - 0.7 ** 3) * P2 + 0.7 ** 3 * P1)


def test_tracks_are_averaged_separately_and_forgotten_on_request():
    s = EMASmoother(0.5)
    s.update(1, P1, 0)
    assert s.update(2, P2, 0) == pytest.approx(P2)  # track 1 does not leak into track 2
    s.forget([1])
    assert s.update(1, P2, 1) == pytest.approx(P2)  # a fresh start


def test_alpha_one_and_none_are_no_smoothing():
    for s in (EMASmoother(1.0), make_smoother(None)):
        s.update(1, P1, 0)
        assert s.update(1, P2, 1) == pytest.approx(P2)


def test_smoothed_probabilities_still_sum_to_one():
    s = EMASmoother(0.2)
    rng = np.random.default_rng(0)
    for f in range(20):
        p = rng.dirichlet(np.ones(7))
        assert s.update(1, p, f).sum() == pytest.approx(1.0)


def test_the_weight_is_per_thirtieth_of_a_second_whatever_the_frame_rate():
    assert per_frame_weight(0.3, 30) == pytest.approx(0.3)
    at60 = make_smoother(0.3, fps=60)
    at60.update(1, P1, 0)
    at60.update(1, P2, 1)
    at30 = make_smoother(0.3, fps=30)
    at30.update(1, P1, 0)
    # Two frames at 60 frames/s move the average as far as one at 30.
    assert at60.update(1, P2, 2) == pytest.approx(at30.update(1, P2, 1))
    assert make_smoother(0.3, fps=10).alpha == pytest.approx(1 - 0.7 ** 3)
    assert make_smoother(1.0, fps=60).alpha == 1.0


def test_make_smoother_takes_a_weight_or_an_object_and_refuses_bad_weights():
    assert make_smoother(0.4).alpha == 0.4
    custom = EMASmoother(0.9)
    assert make_smoother(custom) is custom
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="in \\(0, 1\\]"):
            EMASmoother(bad)
