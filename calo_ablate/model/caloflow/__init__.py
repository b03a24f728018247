"""CaloFlow (Krause, Pang and Shih; the CaloChallenge version): flow-I for the layer energies, flow-II
(a masked autoregressive teacher) for the per-layer normalised voxels, dataset 1 only."""

from calo_ablate.model.caloflow.config import CaloFlowConfig, caloflow_dataset, particle_of
from calo_ablate.model.caloflow.module import LOSS_NAMES, CaloFlowModule
from calo_ablate.model.caloflow.preprocess import CaloFlowPreprocessor, caloflow_preprocessing

__all__ = ["LOSS_NAMES", "CaloFlowConfig", "CaloFlowModule", "CaloFlowPreprocessor", "caloflow_dataset",
           "caloflow_preprocessing", "particle_of"]
