"""Which files a run uses: real files when present (validated), else the synthetic stand-in."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from calo_ablate.cli import main
from calo_ablate.data import calochallenge, source
from calo_ablate.data.calochallenge import count_events, write_showers
from calo_ablate.data.source import ensure_data
from calo_ablate.errors import DataError


def small_file(path: Path, n: int = 80, seed: int = 0, nan: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    energies = rng.choice(2.0 ** np.arange(8, 23), n)
    showers = rng.exponential(1.0, (n, 368)) * (rng.random((n, 368)) < 0.3)
    if nan:
        showers[4, 4] = np.nan
    write_showers(path, energies, showers)
    return path


def test_real_files_are_used_and_said_so(tmp_path: Path) -> None:
    train = small_file(tmp_path / "dataset_1_photons_1.hdf5", seed=1)
    evaluation = small_file(tmp_path / "dataset_1_photons_2.hdf5", seed=2)
    logs: list[str] = []
    files = ensure_data("1", tmp_path, log=logs.append)
    assert files.source == "real" and files.train == [train] and files.eval == [evaluation]
    assert files.checksums == {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in (train, evaluation)}
    text = "\n".join(logs)
    assert "using REAL CaloChallenge files" in text
    assert "DOES NOT MATCH the published md5 005d2adeda7db034b388112661265656" in text
    assert "80 showers, the published file has 121000" in text


def test_some_real_files_missing_is_an_error(tmp_path: Path) -> None:
    small_file(tmp_path / "dataset_1_photons_1.hdf5")
    with pytest.raises(DataError, match="but not dataset_1_photons_2.hdf5") as err:
        ensure_data("1-photons", tmp_path, log=lambda _: None)
    assert "calo-ablate data download --dataset 1-photons" in str(err.value)


def test_invalid_real_file_is_refused(tmp_path: Path) -> None:
    small_file(tmp_path / "dataset_1_photons_1.hdf5", nan=True)
    small_file(tmp_path / "dataset_1_photons_2.hdf5")
    with pytest.raises(DataError, match=r"dataset_1_photons_1\.hdf5: voxel energies that are NaN"):
        ensure_data("1", tmp_path, log=lambda _: None)


def test_existing_stand_in_is_used_without_rework(photon_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(photon_dir / "synthetic", data_dir / "synthetic",
                    ignore=shutil.ignore_patterns("*.meta.json"))   # a fresh copy: no cached checksum yet
    ensure_data("1", data_dir, log=lambda _: None)          # validates once, caches md5 and verdict

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("should not run")

    monkeypatch.setattr(source, "synthesise", boom)
    monkeypatch.setattr(calochallenge, "inspect_file", boom)
    monkeypatch.setattr(calochallenge.hashlib, "md5", boom)
    logs: list[str] = []
    files = ensure_data("1", data_dir, log=logs.append)
    assert files.source == "synthetic"
    assert [p.name for p in files.train + files.eval] == ["dataset_1_photons_1.hdf5", "dataset_1_photons_2.hdf5"]
    assert all(p.parent == data_dir / "synthetic" for p in files.train + files.eval)
    assert "SYNTHETIC stand-in, not Geant4" in "\n".join(logs)
    assert set(files.checksums) == {"dataset_1_photons_1.hdf5", "dataset_1_photons_2.hdf5"}


def test_stand_in_is_synthesised_only_if_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Path]] = []

    def fake(dataset: str, out_dir: Path, **kwargs: object) -> list[Path]:
        calls.append((dataset, Path(out_dir)))
        return [small_file(Path(out_dir) / f"dataset_1_photons_{i}.hdf5", seed=i) for i in (1, 2)]

    monkeypatch.setattr(source, "synthesise", fake)
    (tmp_path / "dataset_1_photons_1.hdf5.part").write_bytes(b"half a download")
    logs: list[str] = []
    first = ensure_data("1", tmp_path, log=logs.append)
    second = ensure_data("1", tmp_path, log=lambda _: None)
    assert calls == [("1-photons", tmp_path / "synthetic")]
    assert first.checksums == second.checksums and first.source == "synthetic"
    assert any("dataset_1_photons_1.hdf5.part" in line and "resumes" in line for line in logs)


def test_cli_synth_then_prepare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "synth", "--dataset", "1", "--data-dir", str(tmp_path), "--events", "40"]) == 0
    assert count_events(tmp_path / "synthetic" / "dataset_1_photons_1.hdf5") == 40
    assert "SYNTHETIC, not Geant4" in capsys.readouterr().out
    assert main(["data", "prepare", "--dataset", "1", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC stand-in" in out and "ready (synthetic)" in out and "dataset_1_photons_2.hdf5" in out
