"""evaluate_samples, the reference noise floor and `calo-ablate evaluate` end to end on synthetic files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from calo_ablate.cli import main as cli_main
from calo_ablate.config import ClassifierConfig, EvaluateConfig
from calo_ablate.data.calochallenge import read_showers, write_showers
from calo_ablate.errors import DataError
from calo_ablate.evaluation.evaluate import (
    ALIASES,
    equal_sizes,
    evaluate_samples,
    metric_kind,
    reference_noise_floor,
)

TINY = EvaluateConfig(classifier=ClassifierConfig(hidden=16, num_hidden_layers=2, epochs=2, batch_size=100,
                                                  trainings=1))


@pytest.fixture(scope="module")
def eval_sample(photon_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return read_showers(photon_dir / "synthetic" / "dataset_1_photons_2.hdf5", "1-photons")


@pytest.fixture(scope="module")
def halves(eval_sample) -> dict[str, float]:
    e, s = eval_sample
    return evaluate_samples((e[:300], s[:300]), (e[300:], s[300:]), "1", TINY, seed=3)


def test_evaluate_samples_gives_every_metric_group(halves) -> None:
    official = [k for k in halves if metric_kind(k) == "official"]
    assert len([k for k in official if k.startswith("hist-chi/")]) == 30
    for group in ("cls-low", "cls-low-normed", "cls-high"):
        assert {f"{group}/AUC", f"{group}/AUC std", f"{group}/JSD", f"{group}/JSD std"} <= set(official)
    assert {"fpd_kpd/FPD (x10^3)", "fpd_kpd/KPD (x10^3) error", "prdc/precision", "prdc/coverage"} <= set(official)
    assert not any(k.startswith("cls-resnet") for k in halves)  # not defined for dataset 1
    assert {f"seconds/{g}" for g in ("hist-chi", "fpd_kpd", "prdc", "cls-low")} <= set(halves)
    computed = {alias: key for alias, key in ALIASES.items() if key in halves}  # cls-high-z: not asked for here
    assert set(ALIASES) - set(computed) == {"auc_high_z"} and "auc_high_z" not in halves
    assert all(halves[alias] == halves[key] for alias, key in computed.items())
    assert metric_kind("sep_e_ratio") == "alias" and metric_kind("sep_mean") == "own"
    assert all(isinstance(v, float) for v in halves.values())


def test_evaluate_samples_is_deterministic_and_the_options_add_own_names(eval_sample, halves) -> None:
    e, s = eval_sample
    again = evaluate_samples((e[:300], s[:300]), (e[300:], s[300:]), "1", TINY, seed=3)
    assert {k: v for k, v in again.items() if not k.startswith("seconds/")} == \
        {k: v for k, v in halves.items() if not k.startswith("seconds/")}
    options = TINY.model_copy(update={"own_fpd_kpd": True, "prdc": False, "classifiers": ["cls-high"],
                                      "classifier": TINY.classifier.model_copy(update={"standardise_inputs": True})})
    own = evaluate_samples((e[:300], s[:300]), (e[300:], s[300:]), "1", options, seed=3)
    assert metric_kind("fpd_kpd without replacement/FPD (x10^3)") == "own"
    assert own["fpd_kpd without replacement/FPD (x10^3)"] != own["fpd_kpd/FPD (x10^3)"]
    assert "cls-high (standardised)/AUC" in own and "cls-high/AUC" not in own and "auc_high" not in own
    assert metric_kind("cls-high (standardised)/AUC") == "own"


def test_float32_and_float64_files_give_the_same_numbers(eval_sample) -> None:
    e, s = eval_sample
    settings = TINY.model_copy(update={"classifiers": ["cls-low"], "prdc": False})
    s64 = s.astype(np.float32).astype(np.float64)
    one = evaluate_samples((e[:300], s[:300].astype(np.float32)), (e[300:], s[300:].astype(np.float32)), "1", settings)
    two = evaluate_samples((e[:300], s64[:300]), (e[300:], s64[300:]), "1", settings)
    for key in ("hist-chi/Etot / Einc", "hist-chi/E layer 2", "fpd_kpd/FPD (x10^3)", "cls-low/AUC"):
        assert one[key] == pytest.approx(two[key], rel=1e-9, abs=1e-12), key


def test_noise_floor_compares_two_disjoint_halves(eval_sample) -> None:
    settings = TINY.model_copy(update={"classifiers": [], "prdc": False, "fpd_kpd": False})
    floor = reference_noise_floor(eval_sample, "1-photons", settings, seed=0)
    assert floor["sep_e_ratio"] < 0.2 and floor["sep_mean"] < 0.5
    assert not any(k.startswith(("fpd", "kpd", "prdc", "cls-")) for k in floor)  # switched off


def test_mismatched_shapes_are_reported(eval_sample) -> None:
    e, s = eval_sample
    with pytest.raises(DataError, match="generated sample"):
        evaluate_samples((e, s), (e[:20], s[:20, :100]), "1", TINY)


def test_equal_sizes_subsamples_the_larger_deterministically() -> None:
    a = (np.arange(10.0), np.arange(20.0).reshape(10, 2))
    b = (np.arange(4.0), np.zeros((4, 2)))
    (a1, b1), (a2, _) = equal_sizes(a, b), equal_sizes(a, b)
    assert len(a1[0]) == 4 and len(b1[0]) == 4
    np.testing.assert_array_equal(a1[0], a2[0])
    np.testing.assert_array_equal(a1[1][:, 0], 2 * a1[0])  # rows stay paired with their energies


@pytest.mark.slow
def test_cli_scores_halves_alike_and_a_scaled_copy_different(eval_sample, tmp_path: Path, capsys) -> None:
    e, s = eval_sample
    write_showers(tmp_path / "ref.hdf5", e[:300], s[:300])
    write_showers(tmp_path / "gen.hdf5", e[300:], s[300:])
    write_showers(tmp_path / "scaled.hdf5", e[300:], 1.15 * s[300:])
    common = ["evaluate", "--reference", str(tmp_path / "ref.hdf5"), "--dataset", "1-photons", "--profile", "smoke"]
    assert cli_main([*common, "--generated", str(tmp_path / "gen.hdf5"), "--out", str(tmp_path / "alike")]) == 0
    assert cli_main([*common, "--generated", str(tmp_path / "scaled.hdf5"), "--out", str(tmp_path / "scaled")]) == 0
    printed = capsys.readouterr().out
    assert "[hist-chi] (official," in printed and "Etot / Einc at E = 256.0:" in printed
    assert "[cls-low] (official," in printed and "official proportions" in printed
    alike = json.loads((tmp_path / "alike" / "metrics.json").read_text())
    scaled = json.loads((tmp_path / "scaled" / "metrics.json").read_text())
    assert alike["aliases"]["sep_e_ratio"] == "hist-chi/Etot / Einc"
    assert alike["official"]["hist-chi/Etot / Einc"] < 0.2 and scaled["official"]["hist-chi/Etot / Einc"] > 0.5
    assert scaled["official"]["cls-low/AUC"] > alike["official"]["cls-low/AUC"]
    assert scaled["official"]["hist-chi/EC Phi layer 1"] < 0.1  # the scale leaves the shape alone
    assert "sep_mean" in scaled["own"] and scaled["own"]["sep_mean"] > alike["own"]["sep_mean"]
    png = (tmp_path / "alike" / "histograms.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000


def test_cli_reports_a_wrong_dataset(eval_sample, tmp_path: Path, capsys) -> None:
    e, s = eval_sample
    write_showers(tmp_path / "ref.hdf5", e[:50], s[:50])
    code = cli_main(["evaluate", "--reference", str(tmp_path / "ref.hdf5"), "--generated",
                     str(tmp_path / "ref.hdf5"), "--dataset", "2"])
    assert code == 2
    assert "calo-ablate: error:" in capsys.readouterr().err
