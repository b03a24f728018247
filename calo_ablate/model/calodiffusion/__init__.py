"""CaloDiffusion (Amram and Pedro 2023): GLaM, cylindrical conditional U-Net, cosine DDPM."""

from calo_ablate.model.calodiffusion.config import PUBLISHED_BATCH_SIZE, CaloDiffusionConfig
from calo_ablate.model.calodiffusion.module import CaloDiffusionModule
from calo_ablate.model.calodiffusion.preprocess import CaloDiffusionPreprocessor

__all__ = ["PUBLISHED_BATCH_SIZE", "CaloDiffusionConfig", "CaloDiffusionModule", "CaloDiffusionPreprocessor"]
