"""PRDC on the official inputs (log10 of the voxels, empty voxels at 0.1 MeV)."""

from __future__ import annotations

import numpy as np
import pytest

from calo_ablate.evaluation.prdc_metric import prdc_inputs, prdc_scores


def test_inputs_are_log10_with_empty_voxels_at_a_tenth_of_an_mev() -> None:
    np.testing.assert_allclose(prdc_inputs(np.array([[0.0, 1.0, 100.0]])), [[-1.0, 0.0, 2.0]])


def test_identical_samples_score_one_and_disjoint_ones_zero() -> None:
    rng = np.random.default_rng(0)
    showers = rng.exponential(5.0, (60, 8)) + 0.2
    same = prdc_scores(showers, showers.copy(), nearest_k=3)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = prdc_scores(showers, showers * 1e6, nearest_k=3)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_one_dimension_by_hand() -> None:
    # real 1, 10, 100 MeV -> log10 0, 1, 2; k = 1: each real radius is 1 (nearest other real)
    # fake 0 -> -1 (distance 1 to real 0: not strictly inside), 1000 -> 3 (likewise), 31.6 MeV -> 1.5
    real = np.array([[1.0], [10.0], [100.0]])
    fake = np.array([[0.0], [1000.0], [10 ** 1.5]])
    scores = prdc_scores(real, fake, nearest_k=1)
    assert scores["precision"] == pytest.approx(1 / 3)  # only 1.5 lies strictly inside a real radius
    assert scores["density"] == pytest.approx(2 / 3)  # 1.5 lies inside two real radii (1 and 2), / k / 3
    assert scores["coverage"] == pytest.approx(2 / 3)  # reals 1 and 2 have their nearest fake at 0.5
    # fake radii: 2.5 (-1), 1.5 (3), 1.5 (1.5): real 0 lies inside the first, reals 1 and 2 inside the last
    assert scores["recall"] == 1.0
