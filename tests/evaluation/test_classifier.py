"""The classifier metric: official network and split, chance and disjoint limits, determinism, cls-resnet."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calo_ablate.config import ClassifierConfig
from calo_ablate.errors import ConfigError, DataError
from calo_ablate.evaluation.classifier import classifier_scores, dnn, split_counts
from calo_ablate.evaluation.resnet import ShowerResNet

TINY = ClassifierConfig(hidden=32, num_hidden_layers=2, epochs=4, lr=2e-3, batch_size=100, trainings=2)


def test_network_matches_the_official_shape() -> None:
    official = dnn(368 + 1, ClassifierConfig())  # hidden 2048, 3 hidden layers
    linears = [m for m in official if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(369, 2048), (2048, 2048), (2048, 2048), (2048, 1)]
    assert all(isinstance(m, (torch.nn.Linear, torch.nn.LeakyReLU)) for m in official)  # no dropout


def test_split_uses_official_counts_at_full_size_and_their_proportions_below() -> None:
    assert split_counts("1-photons", 121000) == (80000, 20000, True)
    assert split_counts("1-pions", 120230) == (80000, 20000, True)
    assert split_counts("2", 100000) == (60000, 20000, True)
    assert split_counts("1-photons", 20000) == (13223, 3305, False)  # 80/121 and 20/121 of 20,000
    assert split_counts("3", 10000) == (6000, 2000, False)
    with pytest.raises(DataError, match="too few"):
        split_counts("2", 3)


def test_same_distribution_scores_chance() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(800, 6)), rng.normal(size=(800, 6))
    scores = classifier_scores(a, b, TINY, "2", seed=0, device="cpu")
    assert abs(scores["AUC"] - 0.5) < 0.08
    assert scores["JSD"] < 0.1
    assert scores["AUC std"] >= 0.0


def test_disjoint_distributions_score_one() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(500, 6)), rng.normal(size=(500, 6)) + 6.0
    scores = classifier_scores(a, b, TINY, "1-photons", seed=0, device="cpu")
    assert scores["AUC"] > 0.99
    assert scores["JSD"] > 0.9  # calibrated probabilities near 0 and 1: BCE near 0


def test_deterministic_for_a_seed_and_float32_inputs_work() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 0.3
    one = classifier_scores(a, b, TINY, "2", seed=5, device="cpu")
    assert classifier_scores(a, b, TINY, "2", seed=5, device="cpu") == one
    # float32 inputs are cast to float64, as the official script's float64 files would be
    assert classifier_scores(a.astype(np.float32), b.astype(np.float32), TINY, "2", seed=5, device="cpu") == \
        pytest.approx(classifier_scores(a.astype(np.float32).astype(np.float64),
                                        b.astype(np.float32).astype(np.float64), TINY, "2", seed=5, device="cpu"))


def test_standardised_inputs_are_an_option_that_changes_the_numbers() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(300, 3)) * [1.0, 1e3, 1e-3], rng.normal(size=(300, 3)) * [1.0, 1e3, 1e-3] + 0.2
    plain = classifier_scores(a, b, TINY, "2", seed=0, device="cpu")
    scaled = classifier_scores(a, b, TINY.model_copy(update={"standardise_inputs": True}), "2", seed=0,
                               device="cpu")
    assert plain != scaled


def test_unequal_sizes_are_refused() -> None:
    with pytest.raises(DataError, match="same number of showers"):
        classifier_scores(np.zeros((50, 2)), np.zeros((60, 2)), TINY, "2")


def test_resnet_trains_on_a_tiny_dataset_2_input() -> None:
    rng = np.random.default_rng(4)
    rows = lambda shift: np.concatenate([np.full((20, 1), 4.0), rng.exponential(1e-3, (20, 6480)) + shift],
                                        axis=1).astype(np.float32)
    model = ShowerResNet("2", channels=2)
    assert model(torch.as_tensor(rows(0.0))).shape == (20, 1)
    settings = ClassifierConfig(epochs=1, batch_size=20, trainings=1, lr=1e-3)
    scores = classifier_scores(rows(0.0), rows(5e-3), settings, "2", build=lambda n: ShowerResNet("2", channels=2),
                               seed=0, device="cpu", dtype=torch.float32)
    assert 0.0 <= scores["AUC"] <= 1.0
    with pytest.raises(ConfigError, match="datasets 2 and 3"):
        ShowerResNet("1-photons")
