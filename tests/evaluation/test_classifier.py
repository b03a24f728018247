"""The classifier metric: chance level for one distribution, AUC 1 for disjoint ones, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from calo_ablate.config import ClassifierConfig
from calo_ablate.errors import DataError
from calo_ablate.evaluation.classifier import _mlp, classifier_scores, high_level_inputs, low_level_inputs

TINY = ClassifierConfig(hidden=32, num_hidden_layers=2, epochs=4, lr=2e-3, batch_size=100, trainings=2)


def test_network_matches_the_official_shape() -> None:
    official = _mlp(368 + 1, ClassifierConfig())  # hidden 2048, 3 hidden layers
    linears = [m for m in official if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(369, 2048), (2048, 2048), (2048, 2048), (2048, 1)]
    assert all(isinstance(m, (torch.nn.Linear, torch.nn.LeakyReLU)) for m in official)  # no dropout


def test_same_distribution_scores_chance() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(800, 6)), rng.normal(size=(800, 6))
    scores = classifier_scores(a.astype(np.float32), b.astype(np.float32), TINY, seed=0, device="cpu")
    assert abs(scores["auc"] - 0.5) < 0.08
    assert scores["jsd"] < 0.1
    assert scores["auc_std"] >= 0.0


def test_disjoint_distributions_score_one() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(500, 6)), rng.normal(size=(500, 6)) + 6.0
    scores = classifier_scores(a.astype(np.float32), b.astype(np.float32), TINY, seed=0, device="cpu")
    assert scores["auc"] > 0.99
    assert scores["jsd"] > 0.9  # calibrated probabilities near 0 and 1: BCE near 0


def test_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(200, 4)).astype(np.float32), (rng.normal(size=(200, 4)) + 0.3).astype(np.float32)
    one = classifier_scores(a, b, TINY, seed=5, device="cpu")
    assert classifier_scores(a, b, TINY, seed=5, device="cpu") == one


def test_inputs_follow_the_official_recipe() -> None:
    energies = np.array([100.0, 1000.0])
    showers = np.array([[10.0, 40.0], [0.0, 500.0]])
    np.testing.assert_allclose(low_level_inputs(energies, showers), [[2.0, 0.1, 0.4], [3.0, 0.0, 0.5]], rtol=1e-6)
    features = {"e_layer_0": np.array([50.0, 0.0]), "centre_eta_1": np.array([-3.0, 4.0])}
    high = high_level_inputs(energies, features, ["e_layer_0", "centre_eta_1"])
    np.testing.assert_allclose(high, [[2.0, math.log10(50.0), -3.0], [3.0, -8.0, 4.0]], rtol=1e-6)


def test_too_few_showers_is_an_error() -> None:
    with pytest.raises(DataError, match="at least 10"):
        classifier_scores(np.zeros((5, 2), np.float32), np.zeros((50, 2), np.float32), TINY)
