"""Shared pieces of the CaloFlow tests: a tiny config and synthetic showers in the data layer's units."""

from __future__ import annotations

import numpy as np
import pytest

from calo_ablate.config import flatten
from calo_ablate.data.synthetic import incident_energies, simulate
from calo_ablate.geometry import load_geometry
from calo_ablate.model.caloflow.config import CaloFlowConfig
from calo_ablate.model.caloflow.preprocess import CaloFlowPreprocessor

TINY = {"flow1": {"blocks": 2, "hidden_features": 16, "hidden_layers": 2, "dropout": 0.0,
                  "schedule": {"kind": "constant", "max_lr": 1e-3}},
        "flow2": {"blocks": 2, "hidden_features": 24, "hidden_layers": 2, "dropout": 0.05,
                  "schedule": {"kind": "constant", "max_lr": 1e-3}}}


def tiny_sets() -> list[str]:
    """--set options of a tiny CaloFlow (model.family=caloflow and TINY's keys)."""
    return ["model.family=caloflow", *(f"model.{k}={v}" for k, v in flatten(TINY).items())]


def tiny_config(**changes: object) -> CaloFlowConfig:
    return CaloFlowConfig.model_validate(TINY | changes)




@pytest.fixture(autouse=True)
def _on_one_thread(one_thread: None) -> None:
    """Every CaloFlow test on one thread (the fixture of tests/conftest.py)."""


def synthetic(dataset: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(incident energies (n,) MeV, showers (n, V) MeV) of the synthetic stand-in."""
    rng = np.random.default_rng(seed)
    energies = incident_energies(dataset, n, rng)
    return energies, simulate(dataset, energies, rng)


def features(dataset: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The data layer's CaloFlow features (E_inc (n, 1), showers (n, V)) in units of 100 GeV."""
    energies, showers = synthetic(dataset, n, seed)
    pre = CaloFlowPreprocessor(load_geometry(dataset), CaloFlowConfig().resolved(dataset))
    return pre.transform(energies, showers)
