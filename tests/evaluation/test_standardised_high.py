"""cls-high-z: the official high-level classifier inputs, standardised, under its own name (the verdicts' AUC high)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calo_ablate.config import ClassifierConfig, EvaluateConfig
from calo_ablate.data.calochallenge import read_showers
from calo_ablate.evaluation.evaluate import evaluate_samples, metric_kind

TINY = ClassifierConfig(hidden=16, num_hidden_layers=2, epochs=2, batch_size=50, trainings=1)


def test_standardised_high_level_classifier_is_its_own_metric(photon_dir: Path) -> None:
    energies, showers = read_showers(photon_dir / "synthetic" / "dataset_1_photons_2.hdf5", "1-photons")
    reference, generated = (energies[:200], showers[:200]), (energies[200:400], showers[200:400] * 1.15)
    settings = EvaluateConfig(n_events=200, classifier=TINY, classifiers=["cls-high", "cls-high-z"], fpd_kpd=False,
                              prdc=False)
    metrics = evaluate_samples(reference, generated, "1-photons", settings, seed=0, device="cpu")
    assert metrics["auc_high_z"] == metrics["cls-high-z/AUC"]
    assert metrics["auc_high"] == metrics["cls-high/AUC"]  # the official number keeps its definition
    assert metrics["auc_high_z"] != metrics["auc_high"]
    assert metric_kind("cls-high-z/AUC") == "own" and metric_kind("cls-high/AUC") == "official"
    # the same training as the official classifier with the option standardise_inputs on
    both = evaluate_samples(reference, generated, "1-photons",
                            settings.model_copy(update={"classifier": TINY.model_copy(
                                update={"standardise_inputs": True}), "classifiers": ["cls-high"]}),
                            seed=0, device="cpu")
    assert both["cls-high (standardised)/AUC"] == pytest.approx(metrics["auc_high_z"])
    assert np.isfinite(metrics["auc_high_z"])
