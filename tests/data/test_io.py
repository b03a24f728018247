"""HDF5 I/O: official layout, float32/float64, streaming, validation messages, checksum cache, CLI."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

from calo_ablate.cli import main
from calo_ablate.data.calochallenge import (
    ShowerWriter,
    file_md5,
    inspect_file,
    iter_showers,
    read_showers,
    sidecar_path,
    validate_file,
    write_showers,
)
from calo_ablate.errors import DataError

DS1_ENERGIES = 2.0 ** np.arange(8, 23)   # MeV


def sample(n: int = 300, n_voxels: int = 368, seed: int = 0, dataset: str = "1") -> tuple[np.ndarray, np.ndarray]:
    """Energies (n,) MeV and sparse showers (n, n_voxels) MeV with E_tot / E_inc about 0.5."""
    rng = np.random.default_rng(seed)
    energies = rng.choice(DS1_ENERGIES, n) if dataset == "1" else np.exp(rng.uniform(np.log(1e3), np.log(1e6), n))
    showers = rng.exponential(1.0, (n, n_voxels)) * (rng.random((n, n_voxels)) < 0.3)
    showers *= 0.5 * energies[:, None] / np.maximum(showers.sum(axis=1, keepdims=True), 1e-9)
    return energies, showers


def write_raw(path: Path, energies: np.ndarray | None, showers: np.ndarray | None) -> Path:
    """A file written with h5py directly (any dtype, shape or content), gzip like the official files."""
    with h5py.File(path, "w") as f:
        if energies is not None:
            f.create_dataset("incident_energies", data=energies, compression="gzip")
        if showers is not None:
            f.create_dataset("showers", data=showers, compression="gzip")
    return path


def test_write_then_read_official_layout(tmp_path: Path) -> None:
    energies, showers = sample()
    path = tmp_path / "out.hdf5"
    write_showers(path, energies, showers)
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == ["incident_energies", "showers"]
        assert f["incident_energies"].shape == (300, 1) and f["showers"].shape == (300, 368)
        assert f["showers"].compression == "gzip" and f["showers"].dtype == np.float32
    e, s = read_showers(path, "1-photons")
    assert e.dtype == np.float32 and s.dtype == np.float32 and e.shape == (300,)
    np.testing.assert_array_equal(e, energies.astype(np.float32))
    np.testing.assert_array_equal(s, showers.astype(np.float32))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_reads_float64_and_flat_energies(tmp_path: Path) -> None:
    energies, showers = sample(n=50)
    path = write_raw(tmp_path / "f64.hdf5", energies, showers)   # energies (N,), float64
    e, s = read_showers(path, "1")
    assert e.dtype == np.float32 and s.dtype == np.float32
    np.testing.assert_allclose(s, showers, rtol=1e-6)
    e, _ = read_showers(write_raw(tmp_path / "f64b.hdf5", energies[:, None], showers), "1", max_events=7)
    np.testing.assert_allclose(e, energies[:7], rtol=1e-7)


def test_iter_showers_chunks_cover_the_file(tmp_path: Path) -> None:
    energies, showers = sample(n=300)
    path = tmp_path / "a.hdf5"
    with ShowerWriter(path, 368) as writer:       # written in three appends
        for part in np.array_split(np.arange(300), 3):
            writer.append(energies[part], showers[part])
    chunks = list(iter_showers(path, "1-photons", chunk_events=64))
    assert [len(e) for e, _ in chunks] == [64, 64, 64, 64, 44]
    np.testing.assert_array_equal(np.concatenate([s for _, s in chunks]), showers.astype(np.float32))


def test_iter_showers_stops_at_a_bad_chunk(tmp_path: Path) -> None:
    energies, showers = sample(n=200)
    showers[150, 3] = np.nan
    path = write_raw(tmp_path / "nan.hdf5", energies, showers)
    seen = 0
    with pytest.raises(DataError, match="first in event 150"):
        for e, _ in iter_showers(path, "1", chunk_events=100):
            seen += len(e)
    assert seen == 100


def test_writer_refuses_wrong_shape_and_leaves_nothing(tmp_path: Path) -> None:
    energies, showers = sample(n=10)
    path = tmp_path / "w.hdf5"
    with pytest.raises(DataError, match=r"expected \(10, 368\)"), ShowerWriter(path, 368) as writer:
        writer.append(energies, showers[:, :367])
    assert list(tmp_path.iterdir()) == []


def _case(tmp_path: Path, kind: str) -> tuple[Path, str, str]:
    """(file, dataset, phrase the single problem message must contain)."""
    e, s = sample(n=120)
    path = tmp_path / f"{kind}.hdf5"
    if kind == "missing":
        return write_raw(path, e[:, None], None), "1", "missing dataset 'showers'"
    if kind == "voxels":
        return write_raw(path, e[:, None], s[:, :367]), "1-photons", "367 voxels per shower, dataset 1-photons expects 368"
    if kind == "events":
        return write_raw(path, e[:, None], s[:119]), "1", "120 incident energies but 119 showers"
    if kind == "nan":
        s[5, 7], s[9, 0] = np.nan, np.inf
        return write_raw(path, e[:, None], s), "1", "voxel energies that are NaN or inf: 2 (first in event 5)"
    if kind == "inf_energy":
        e[11] = np.inf
        return write_raw(path, e[:, None], s), "1", "incident energies that are NaN or inf: 1 (first in event 11)"
    if kind == "negative":
        s[3, 3] = -0.25
        return write_raw(path, e[:, None], s), "1", "negative voxel energies: 1 (first in event 3, lowest -0.25 MeV)"
    if kind == "low":
        e[40] = 100.0
        return write_raw(path, e[:, None], s), "1", "below the dataset's range 256..4194304 MeV: 1 (first in event 40"
    if kind == "high":
        e2, s2 = sample(n=120, n_voxels=6480, dataset="2")
        e2[7] = 2.0e6
        return write_raw(path, e2[:, None], s2), "2", "above the dataset's range 1000..1000000 MeV: 1"
    if kind == "empty":
        return write_raw(path, np.zeros((0, 1)), np.zeros((0, 368))), "1", "the file holds no events"
    if kind == "int":
        return write_raw(path, e[:, None], s.astype(np.int32)), "1", "'showers' has dtype int32"
    if kind == "text":
        path.write_text("incident_energies,showers\n1,2\n")
        return path, "1", "not a readable HDF5 file"
    write_showers(path, e, s)   # truncated: the first half of a valid file
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path, "1", "not a readable HDF5 file"


@pytest.mark.parametrize("kind", ["missing", "voxels", "events", "nan", "inf_energy", "negative", "low", "high",
                                  "empty", "int", "text", "truncated"])
def test_each_problem_has_one_clear_message(tmp_path: Path, kind: str) -> None:
    path, dataset, phrase = _case(tmp_path, kind)
    inspection = inspect_file(path, dataset)
    assert inspection.summary is None
    assert len(inspection.problems) == 1, inspection.problems
    assert phrase in inspection.problems[0]
    assert inspection.problems[0].startswith(f"{path}: ")
    with pytest.raises(DataError) as err:
        read_showers(path, dataset)
    assert phrase in str(err.value)


def test_corrupt_data_inside_a_valid_header(tmp_path: Path) -> None:
    e, s = sample(n=300)
    path = tmp_path / "flipped.hdf5"
    write_showers(path, e, s)
    data = bytearray(path.read_bytes())
    for k in range(len(data) // 3, 2 * len(data) // 3, 7):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))
    problems = inspect_file(path, "1").problems
    assert len(problems) == 1 and "truncated or corrupt" in problems[0] and str(path) in problems[0]


def test_all_problems_are_listed(tmp_path: Path) -> None:
    e, s = sample(n=120)
    e[0], s[1, 1], s[2, 2] = 10.0, np.nan, -1.0
    path = write_raw(tmp_path / "many.hdf5", e[:, None], s[:, :367])
    problems = inspect_file(path, "1").problems
    assert len(problems) == 4
    assert any("367 voxels" in p for p in problems) and any("below the dataset's range" in p for p in problems)
    assert any("NaN" in p for p in problems) and any("negative voxel" in p for p in problems)


def test_energy_tolerance(tmp_path: Path) -> None:
    e, s = sample(n=60, n_voxels=6480, dataset="2")
    e[0], e[1] = 999.5, 1.0005e6      # 0.05 % outside 1 GeV .. 1 TeV: inside the tolerance
    assert inspect_file(write_raw(tmp_path / "edge.hdf5", e, s), "2").problems == []


def test_summary_numbers(tmp_path: Path) -> None:
    n = 40
    energies = np.full(n, 1024.0)
    energies[:10] = 65536.0
    showers = np.zeros((n, 368))
    showers[:, 8:168] = 1.0                    # layer 1 full, every other layer empty
    showers[:, 8:168] *= 0.5 * energies[:, None] / 160   # E_tot / E_inc = 0.5 exactly
    path = tmp_path / "known.hdf5"
    write_showers(path, energies, showers)
    summary = inspect_file(path, "1").summary
    assert summary.events == n and summary.energy_min_mev == 1024 and summary.energy_max_mev == 65536
    assert summary.distinct_energies == 2
    assert summary.layer_sparsity == {0: 1.0, 1: 0.0, 2: 1.0, 3: 1.0, 12: 1.0}
    assert summary.etot_over_einc_mean == pytest.approx(0.5, rel=1e-6)
    assert summary.etot_over_einc_std == pytest.approx(0.0, abs=1e-4)
    assert summary.md5 == hashlib.md5(path.read_bytes()).hexdigest()


def test_validation_streams_with_bounded_memory(tmp_path: Path) -> None:
    e, s = sample(n=5000)
    path = write_raw(tmp_path / "big.hdf5", e[:, None], s)      # float64: 14.7 MB of showers
    tracemalloc.start()
    try:
        problems = inspect_file(path, "1", read_budget_bytes=100 * 368 * 4).problems   # 100 events per chunk
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert problems == []
    assert peak < s.nbytes / 4, f"peak {peak} bytes for a file of {s.nbytes} bytes of showers"


def test_md5_is_cached_while_size_and_mtime_hold(tmp_path: Path) -> None:
    e, s = sample(n=20)
    path = tmp_path / "c.hdf5"
    write_showers(path, e, s)
    true_md5 = hashlib.md5(path.read_bytes()).hexdigest()
    assert file_md5(path) == true_md5 and sidecar_path(path).exists()
    meta = sidecar_path(path).read_text().replace(true_md5, "0" * 32)
    sidecar_path(path).write_text(meta)
    assert file_md5(path) == "0" * 32                 # read from the sidecar, not re-hashed
    assert file_md5(path, use_cache=False) == true_md5
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert file_md5(path) == true_md5                 # the file changed: the cache is stale


def test_validation_verdict_is_cached_and_invalidated(tmp_path: Path) -> None:
    e, s = sample(n=20)
    path = tmp_path / "v.hdf5"
    write_showers(path, e, s)
    assert validate_file(path, "1") == file_md5(path)
    s[0, 0] = np.nan
    write_showers(path, e, s)                          # replaced: new mtime, new content
    with pytest.raises(DataError, match="NaN"):
        validate_file(path, "1")


def test_cli_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    e, s = sample(n=30)
    good = tmp_path / "good.hdf5"
    write_showers(good, e, s)
    assert main(["data", "validate", str(good), "--dataset", "1-photons"]) == 0
    out = capsys.readouterr().out
    assert "events          30" in out and "md5" in out and "sparsity" in out and "E_tot/E_inc" in out
    s[0, 0], e[1] = -3.0, 1.0
    bad = write_raw(tmp_path / "bad.hdf5", e, s[:, :367])
    assert main(["data", "validate", str(bad), "--dataset", "1"]) == 1
    err = capsys.readouterr().err
    assert "3 problems" in err and "expects 368" in err and "negative voxel" in err and "Traceback" not in err
    assert main(["data", "validate", str(good), "--dataset", "7"]) == 2   # unknown dataset: one-line error
    assert "unknown dataset '7'" in capsys.readouterr().err
