"""The multiclass metric on synthetic showers: a row like the reference scores above log(1/N) and above a
row that is clearly off; rows that are all alike score near log(1/N)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from calo_ablate.config import ClassifierConfig
from calo_ablate.data.synthetic import incident_energies, simulate
from calo_ablate.errors import DataError
from calo_ablate.evaluation.multiclass import _network, multiclass_scores, uniform_score

SETTINGS = ClassifierConfig(hidden=32, num_hidden_layers=2, epochs=8, lr=2e-3, batch_size=100, trainings=2)
N = 600


def _sample(seed: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    energies = incident_energies("1-photons", N, rng)
    return energies, scale * simulate("1-photons", energies, rng)


@pytest.mark.usefixtures("one_thread")
def test_a_row_like_the_reference_beats_uniform_and_a_scaled_row() -> None:
    samples = {"like": _sample(1), "scaled": _sample(2, scale=1.3)}
    result = multiclass_scores(samples, _sample(3), "1-photons", SETTINGS, seed=0, device="cpu")
    mean = result.mean()
    assert result.uniform == pytest.approx(math.log(1 / 2))
    assert mean["like"] > result.uniform + 0.2
    assert mean["like"] > mean["scaled"] + 1.0
    assert result.scores.shape == (2, 2) and all(v >= 0 for v in result.std().values())
    assert (result.seed, result.showers_per_class, result.reference_showers) == (0, N, N)


@pytest.mark.usefixtures("one_thread")
def test_rows_that_are_all_alike_score_near_uniform() -> None:
    samples = {name: _sample(seed) for name, seed in (("a", 11), ("b", 12), ("c", 13))}
    result = multiclass_scores(samples, _sample(14), "1-photons", SETTINGS, seed=0, device="cpu")
    assert result.uniform == pytest.approx(math.log(1 / 3))
    for value in result.mean().values():
        assert value == pytest.approx(result.uniform, abs=0.1)


def test_deterministic_for_a_seed_and_different_for_another() -> None:
    small = ClassifierConfig(hidden=16, num_hidden_layers=1, epochs=2, lr=2e-3, batch_size=100, trainings=1)
    samples = {"a": _sample(21), "b": _sample(22, scale=1.1)}
    first = multiclass_scores(samples, _sample(23), "1-photons", small, seed=4, device="cpu")
    again = multiclass_scores(samples, _sample(23), "1-photons", small, seed=4, device="cpu")
    other = multiclass_scores(samples, _sample(23), "1-photons", small, seed=5, device="cpu")
    assert np.array_equal(first.scores, again.scores)
    assert not np.array_equal(first.scores, other.scores)


def test_the_network_is_the_official_dnn_with_n_logits() -> None:
    net = _network(30, 7, ClassifierConfig(hidden=64, num_hidden_layers=2))
    linears = [(m.in_features, m.out_features) for m in net if isinstance(m, torch.nn.Linear)]
    assert linears == [(30, 64), (64, 64), (64, 7)]


def test_too_few_rows_or_showers_are_refused() -> None:
    with pytest.raises(DataError, match="1 row"):
        multiclass_scores({"a": _sample(1)}, _sample(2), "1-photons", SETTINGS)
    with pytest.raises(DataError, match="at least 2"):
        uniform_score(1)
    tiny = {"a": (_sample(1)[0][:3], _sample(1)[1][:3]), "b": _sample(2)}
    with pytest.raises(DataError, match="3 showers"):
        multiclass_scores(tiny, _sample(3), "1-photons", SETTINGS)
    with pytest.raises(DataError, match="cls-mid"):
        multiclass_scores({"a": _sample(1), "b": _sample(2)}, _sample(3), "1-photons", SETTINGS, inputs="cls-mid")
