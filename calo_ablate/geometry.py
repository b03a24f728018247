"""CaloChallenge binning XML -> Geometry: layers, radial edges, alpha bins and voxel coordinates.

Flat voxel order (official): layer outermost, then alpha bin, then r bin innermost. Layers with
r_edges="0" hold no voxels and are dropped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from calo_ablate.config import canonical_dataset
from calo_ablate.errors import DataError

__all__ = ["BINNING_FILES", "Geometry", "Layer", "load_geometry", "parse_binning_xml"]

BINNING_FILES = {
    "1-photons": "binning_dataset_1_photons.xml",
    "1-pions": "binning_dataset_1_pions.xml",
    "2": "binning_dataset_2.xml",
    "3": "binning_dataset_3.xml",
}


@dataclass(frozen=True, eq=False)
class Layer:
    """One non-empty calorimeter layer."""

    layer_id: int            # id in the XML (dataset 1 photons: 0, 1, 2, 3, 12)
    r_edges_mm: np.ndarray   # (n_r + 1,)
    n_alpha: int
    voxel_slice: slice       # where its voxels sit in the flat vector

    @property
    def n_r(self) -> int:
        return len(self.r_edges_mm) - 1

    @property
    def n_voxels(self) -> int:
        return self.n_r * self.n_alpha

    @property
    def r_mid_mm(self) -> np.ndarray:
        return 0.5 * (self.r_edges_mm[1:] + self.r_edges_mm[:-1])

    @property
    def alpha_centres_rad(self) -> np.ndarray:
        """Bin centres evenly spaced over [-pi, pi]; 0 for a layer with a single alpha bin."""
        if self.n_alpha == 1:
            return np.zeros(1)
        width = 2 * np.pi / self.n_alpha
        return -np.pi + width * (np.arange(self.n_alpha) + 0.5)


@dataclass(frozen=True, eq=False)
class Geometry:
    """All non-empty layers of one dataset, with per-voxel coordinates in flat order."""

    name: str
    particle: str
    layers: tuple[Layer, ...]

    @property
    def n_voxels(self) -> int:
        return sum(layer.n_voxels for layer in self.layers)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def _per_voxel(self, values_of_layer) -> np.ndarray:
        return np.concatenate([values_of_layer(i, layer) for i, layer in enumerate(self.layers)])

    @property
    def voxel_layer(self) -> np.ndarray:
        """Index (0..n_layers-1) of each voxel's layer, shape (n_voxels,)."""
        return self._per_voxel(lambda i, layer: np.full(layer.n_voxels, i))

    @property
    def voxel_r_mid_mm(self) -> np.ndarray:
        return self._per_voxel(lambda i, layer: np.tile(layer.r_mid_mm, layer.n_alpha))

    @property
    def voxel_alpha_rad(self) -> np.ndarray:
        return self._per_voxel(lambda i, layer: np.repeat(layer.alpha_centres_rad, layer.n_r))

    @property
    def voxel_eta_mm(self) -> np.ndarray:
        """Eta-like coordinate r_mid * cos(alpha), in mm."""
        return self.voxel_r_mid_mm * np.cos(self.voxel_alpha_rad)

    @property
    def voxel_phi_mm(self) -> np.ndarray:
        """Phi-like coordinate r_mid * sin(alpha), in mm."""
        return self.voxel_r_mid_mm * np.sin(self.voxel_alpha_rad)

    def layer_energies(self, showers: np.ndarray) -> np.ndarray:
        """(N, n_voxels) -> (N, n_layers): the energy summed in each layer, same units."""
        return np.stack([showers[:, layer.voxel_slice].sum(axis=1) for layer in self.layers], axis=1)


def parse_binning_xml(path: str | Path, name: str | None = None) -> Geometry:
    """Parse an official CaloChallenge binning file."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as err:
        msg = f"{path}: not a readable binning XML file ({err})"
        raise DataError(msg) from err
    bins = root.findall("Bin")
    if len(bins) != 1:
        msg = f"{path}: expected exactly one <Bin> element, found {len(bins)}"
        raise DataError(msg)
    particle = bins[0].get("name", "")
    layers = []
    start = 0
    for element in bins[0].findall("Layer"):
        try:
            edges = np.array([float(x) for x in element.get("r_edges", "").split(",")])
            n_alpha = int(element.get("n_bin_alpha", "1"))
            layer_id = int(element.get("id", ""))
        except ValueError as err:
            msg = f"{path}: layer {element.attrib} has a malformed r_edges, n_bin_alpha or id ({err})"
            raise DataError(msg) from err
        if len(edges) < 2:
            continue  # r_edges="0": an empty layer
        if np.any(np.diff(edges) <= 0) or n_alpha < 1:
            msg = f"{path}: layer {layer_id} needs increasing r_edges and n_bin_alpha >= 1"
            raise DataError(msg)
        n_voxels = (len(edges) - 1) * n_alpha
        layers.append(Layer(layer_id, edges, n_alpha, slice(start, start + n_voxels)))
        start += n_voxels
    if not layers:
        msg = f"{path}: no non-empty layer"
        raise DataError(msg)
    return Geometry(name=name or path.stem, particle=particle, layers=tuple(layers))


@cache
def load_geometry(dataset: str) -> Geometry:
    """The geometry of a dataset ('1', '1-photons', '1-pions', '2', '3') from the shipped XML."""
    dataset = canonical_dataset(dataset)
    ref = resources.files("calo_ablate") / "geometries" / BINNING_FILES[dataset]
    with resources.as_file(ref) as path:
        return parse_binning_xml(path, name=dataset)
