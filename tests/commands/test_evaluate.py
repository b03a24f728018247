"""evaluate_samples, the reference noise floor and `calo-ablate evaluate` end to end on synthetic files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from calo_ablate.cli import main as cli_main
from calo_ablate.commands.evaluate import equal_sizes
from calo_ablate.config import ClassifierConfig, EvaluateConfig
from calo_ablate.data.calochallenge import read_showers, write_showers
from calo_ablate.errors import DataError
from calo_ablate.evaluation.evaluate import evaluate_samples, reference_noise_floor
from calo_ablate.evaluation.features import feature_names
from calo_ablate.geometry import load_geometry

TINY = EvaluateConfig(classifier=ClassifierConfig(hidden=16, num_hidden_layers=2, epochs=2, batch_size=100,
                                                  trainings=1))


@pytest.fixture(scope="module")
def eval_sample(photon_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return read_showers(photon_dir / "synthetic" / "dataset_1_photons_2.hdf5", "1-photons")


def test_evaluate_samples_gives_every_metric_and_is_deterministic(eval_sample) -> None:
    e, s = eval_sample
    first = evaluate_samples((e[:300], s[:300]), (e[300:], s[300:]), "1", TINY, seed=3)
    expected = {"auc_low", "auc_low_std", "auc_high", "auc_high_std", "jsd_low", "jsd_low_std", "jsd_high",
                "jsd_high_std", "sep_e_ratio", "sep_mean", "fpd", "fpd_err", "kpd", "kpd_err"}
    expected |= {f"sep_{name}" for name in feature_names(load_geometry("1"))}
    assert set(first) == expected
    assert all(isinstance(v, float) for v in first.values())
    assert evaluate_samples((e[:300], s[:300]), (e[300:], s[300:]), "1", TINY, seed=3) == first


def test_noise_floor_compares_two_disjoint_halves(eval_sample) -> None:
    floor = reference_noise_floor(eval_sample, "1-photons", TINY, seed=0)
    assert floor["sep_e_ratio"] < 0.2 and floor["sep_mean"] < 0.2


def test_mismatched_shapes_are_reported(eval_sample) -> None:
    e, s = eval_sample
    with pytest.raises(DataError, match="generated sample"):
        evaluate_samples((e, s), (e[:20], s[:20, :100]), "1", TINY)


def test_equal_sizes_subsamples_the_larger_deterministically() -> None:
    a = (np.arange(10.0), np.arange(20.0).reshape(10, 2))
    b = (np.arange(4.0), np.zeros((4, 2)))
    (a1, b1), (a2, _) = equal_sizes(a, b), equal_sizes(a, b)
    assert len(a1[0]) == 4 and b1[0] is b[0]
    np.testing.assert_array_equal(a1[0], a2[0])
    np.testing.assert_array_equal(a1[1][:, 0], 2 * a1[0])  # rows stay paired with their energies


def test_cli_scores_halves_alike_and_a_scaled_copy_different(eval_sample, tmp_path: Path, capsys) -> None:
    e, s = eval_sample
    write_showers(tmp_path / "ref.hdf5", e[:300], s[:300])
    write_showers(tmp_path / "gen.hdf5", e[300:], s[300:])
    write_showers(tmp_path / "scaled.hdf5", e[300:], 1.15 * s[300:])
    common = ["evaluate", "--reference", str(tmp_path / "ref.hdf5"), "--dataset", "1-photons", "--profile", "smoke"]
    assert cli_main([*common, "--generated", str(tmp_path / "gen.hdf5"), "--out", str(tmp_path / "alike")]) == 0
    assert cli_main([*common, "--generated", str(tmp_path / "scaled.hdf5"), "--out", str(tmp_path / "scaled")]) == 0
    printed = capsys.readouterr().out
    assert "classifier AUC, low-level" in printed and "300 showers of each" in printed
    alike = json.loads((tmp_path / "alike" / "metrics.json").read_text())
    scaled = json.loads((tmp_path / "scaled" / "metrics.json").read_text())
    assert alike["sep_e_ratio"] < 0.2 and scaled["sep_e_ratio"] > 0.5
    assert scaled["sep_mean"] > alike["sep_mean"]
    assert scaled["auc_low"] > alike["auc_low"]
    assert scaled["sep_centre_phi_1"] < 0.1  # the scale leaves the shape alone
    png = (tmp_path / "alike" / "histograms.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000


def test_cli_reports_a_wrong_dataset(eval_sample, tmp_path: Path, capsys) -> None:
    e, s = eval_sample
    write_showers(tmp_path / "ref.hdf5", e[:50], s[:50])
    code = cli_main(["evaluate", "--reference", str(tmp_path / "ref.hdf5"), "--generated",
                     str(tmp_path / "ref.hdf5"), "--dataset", "2"])
    assert code == 2
    assert "calo-ablate: error:" in capsys.readouterr().err
