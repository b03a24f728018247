"""Shared fixtures: small synthetic data made by the tests, the smoke profile, no network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from calo_ablate.data.synthetic import synthesise
from calo_ablate.model import families  # noqa: F401  (registers the built-in families' config sections)


@pytest.fixture(scope="session")
def photon_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder holding a small synthetic dataset-1-photon pair (600 showers each) under synthetic/."""
    data_dir = tmp_path_factory.mktemp("data")
    synthesise("1-photons", data_dir / "synthetic", events=600, seed=0, progress=False)
    return data_dir


@pytest.fixture
def one_thread():
    """torch on one thread for the test: small matrices and convolutions run faster on one thread than on
    several competing ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
