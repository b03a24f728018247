"""Geometry: the official binning XMLs against hand-computed voxel counts, slices and coordinates."""

from __future__ import annotations

import itertools
import math
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from calo_ablate.errors import DataError
from calo_ablate.geometry import BINNING_FILES, load_geometry, parse_binning_xml

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "calochallenge"


@pytest.mark.parametrize(("dataset", "n_voxels", "layer_ids"), [
    ("1-photons", 368, [0, 1, 2, 3, 12]),
    ("1-pions", 533, [0, 1, 2, 3, 12, 13, 14]),
    ("2", 6480, list(range(45))),
    ("3", 40500, list(range(45))),
])
def test_shipped_xml_voxel_counts(dataset: str, n_voxels: int, layer_ids: list[int]) -> None:
    geometry = load_geometry(dataset)  # the package's own copy of the official XML
    assert geometry.n_voxels == n_voxels
    assert [layer.layer_id for layer in geometry.layers] == layer_ids
    # slices tile the flat vector in layer order
    assert geometry.layers[0].voxel_slice.start == 0
    for before, after in itertools.pairwise(geometry.layers):
        assert before.voxel_slice.stop == after.voxel_slice.start
    assert geometry.layers[-1].voxel_slice.stop == n_voxels
    for name in ("voxel_layer", "voxel_r_mid_mm", "voxel_alpha_rad", "voxel_eta_mm", "voxel_phi_mm"):
        assert getattr(geometry, name).shape == (n_voxels,)


@pytest.mark.skipif(not OFFICIAL.is_dir(), reason="the official XML files under ../shared are not here")
@pytest.mark.parametrize("dataset", list(BINNING_FILES))
def test_shipped_copies_equal_official_files(dataset: str) -> None:
    shipped = resources.files("calo_ablate") / "geometries" / BINNING_FILES[dataset]
    assert shipped.read_bytes() == (OFFICIAL / BINNING_FILES[dataset]).read_bytes()
    assert load_geometry(dataset).n_voxels == parse_binning_xml(OFFICIAL / BINNING_FILES[dataset]).n_voxels


def test_photon_layers_by_hand() -> None:
    g = load_geometry("1")  # alias of 1-photons
    assert g.name == "1-photons" and g.particle == "photon" and g.n_layers == 5
    assert [(layer.n_r, layer.n_alpha) for layer in g.layers] == [(8, 1), (16, 10), (19, 10), (5, 1), (5, 1)]
    assert [(s.start, s.stop) for s in (layer.voxel_slice for layer in g.layers)] == \
        [(0, 8), (8, 168), (168, 358), (358, 363), (363, 368)]
    np.testing.assert_allclose(g.layers[0].r_mid_mm, [2.5, 7.5, 20, 40, 75, 150, 300, 500])
    np.testing.assert_allclose(g.layers[4].r_mid_mm, [50, 150, 300, 700, 1500])
    # 10 alpha bins over [-pi, pi]: centres at -0.9 pi, -0.7 pi, ..., 0.9 pi; one bin: centre 0
    np.testing.assert_allclose(g.layers[1].alpha_centres_rad, np.pi * np.linspace(-0.9, 0.9, 10))
    np.testing.assert_allclose(g.layers[0].alpha_centres_rad, [0.0])
    np.testing.assert_array_equal(np.bincount(g.voxel_layer), [8, 160, 190, 5, 5])


@pytest.mark.parametrize(("dataset", "index", "r_mid", "alpha"), [
    ("1-photons", 3, 40.0, 0.0),                      # layer 0, r bin 3 (30..50 mm), single alpha bin
    ("1-photons", 8, 1.0, -0.9 * math.pi),            # layer 1, alpha 0, r 0 (0..2 mm)
    ("1-photons", 8 + 16 * 3 + 5, 11.0, -0.3 * math.pi),   # layer 1, alpha 3, r 5 (10..12 mm)
    ("1-photons", 168 + 19 * 9 + 18, 375.0, 0.9 * math.pi),  # layer 2, last alpha, last r (350..400)
    ("1-photons", 367, 1500.0, 0.0),                  # layer 12, last r bin (1000..2000 mm)
    ("1-pions", 8 + 100 + 100 + 5 + 15 * 2 + 14, 1500.0, -0.5 * math.pi),  # layer 12, alpha 2, last r
    ("2", 7 * 144 + 4 * 9 + 2, 11.625, -math.pi + math.pi / 8 * 4.5),   # layer 7, alpha 4, r 2
    ("3", 44 * 900 + 49 * 18 + 17, 40.6875, math.pi - math.pi / 50),    # last voxel
])
def test_voxel_coordinates_by_hand(dataset: str, index: int, r_mid: float, alpha: float) -> None:
    g = load_geometry(dataset)
    assert g.voxel_r_mid_mm[index] == pytest.approx(r_mid)
    assert g.voxel_alpha_rad[index] == pytest.approx(alpha, abs=1e-12)
    assert g.voxel_eta_mm[index] == pytest.approx(r_mid * math.cos(alpha), abs=1e-9)
    assert g.voxel_phi_mm[index] == pytest.approx(r_mid * math.sin(alpha), abs=1e-9)


def test_layer_energies_sum_each_slice() -> None:
    g = load_geometry("1-photons")
    showers = np.zeros((2, 368))
    showers[0, 0:8] = 1.0       # layer 0: 8 MeV
    showers[0, 363:368] = 2.0   # layer 12: 10 MeV
    showers[1, 168] = 7.0       # layer 2
    np.testing.assert_allclose(g.layer_energies(showers), [[8, 0, 0, 0, 10], [0, 0, 7, 0, 0]])


@pytest.mark.parametrize(("text", "phrase"), [
    ("<Bins><Bin name='x'><Layer id='0' r_edges='0,5", "not a readable binning XML"),
    ("<Bins><Bin name='x'><Layer id='0' r_edges='0,5,3' n_bin_alpha='1'/></Bin></Bins>", "increasing r_edges"),
    ("<Bins><Bin name='x'><Layer id='0' r_edges='0,a' n_bin_alpha='1'/></Bin></Bins>", "malformed"),
    ("<Bins><Bin name='x'><Layer id='0' r_edges='0' n_bin_alpha='1'/></Bin></Bins>", "no non-empty layer"),
    ("<Bins></Bins>", "exactly one <Bin>"),
])
def test_bad_xml_is_a_data_error(tmp_path: Path, text: str, phrase: str) -> None:
    path = tmp_path / "binning.xml"
    path.write_text(text)
    with pytest.raises(DataError, match=phrase) as err:
        parse_binning_xml(path)
    assert str(path) in str(err.value)
