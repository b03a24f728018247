"""One atomic writer: a reader sees the old file or the whole new one; failed writes leave nothing."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from calo_ablate.atomic import TEMP_PATTERN, atomic_write, namespace_tag, temp_path, temp_writer
from calo_ablate.data.calochallenge import ShowerWriter


def test_the_target_keeps_its_old_content_until_the_write_finishes(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    target.write_text("old")
    with atomic_write(target) as handle:
        handle.write("new, part 1;")
        assert target.read_text() == "old"
        handle.write(" part 2")
        assert target.read_text() == "old"
    assert target.read_text() == "new, part 1; part 2"
    assert list(tmp_path.glob(TEMP_PATTERN)) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "table.csv"
    target.parent.mkdir()
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_write(target) as handle:
        handle.write("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert list(target.parent.glob(TEMP_PATTERN)) == []


def test_binary_writes_and_new_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "arrays.npz"
    with atomic_write(target, binary=True) as handle:
        np.savez(handle, x=np.arange(3))
    assert np.load(target)["x"].tolist() == [0, 1, 2]


def test_the_temporary_name_says_which_writer_made_it(tmp_path: Path) -> None:
    temp = temp_path(tmp_path / "clock.json", pid=4321)
    assert temp.parent == tmp_path and temp.name.startswith(".clock.json.")
    assert temp.match(TEMP_PATTERN)
    assert temp_writer(temp) == (namespace_tag(), 4321)
    assert temp_writer(tmp_path / ".clock.json.abc.tmp") is None
    assert temp_writer(tmp_path / "clock.json") is None


def test_a_shower_file_appears_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "showers.hdf5"
    with pytest.raises(ValueError, match="stop"), ShowerWriter(target, n_voxels=4) as writer:
        writer.append(np.ones(2), np.ones((2, 4)))
        raise ValueError("stop")
    assert not target.exists() and list(tmp_path.glob(TEMP_PATTERN)) == []
    with ShowerWriter(target, n_voxels=4) as writer:
        writer.append(np.ones(2), np.ones((2, 4)))
        assert not target.exists()
    with h5py.File(target) as f:
        assert f["showers"].shape == (2, 4)
