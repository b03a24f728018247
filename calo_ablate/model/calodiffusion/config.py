"""CaloDiffusionConfig: every size and switch of the CaloDiffusion family, with the published defaults.

The defaults of the class are those of dataset 1 photons; `published_config(dataset)` gives each
dataset's published settings (Amram and Pedro 2023, configs of OzAmram/CaloDiffusionPaper):

| | ds1 photons / pions | ds2 | ds3 |
|---|---|---|---|
| widths | 16, 16, 16, 32 | 16, 16, 16, 32 | 32, 32, 32, 32 |
| phi channel | on | off | off |
| GLaM | learned | fixed (the grid is regular: identity) | fixed (identity) |
| objective | noise_pred | noise_pred | hybrid_weight |
| learning rate | 4e-4 | 4e-4 | 1e-4 |
| sample offset | 2 | 2 | 0 |

Published batch sizes (a training setting, not part of this section): PUBLISHED_BATCH_SIZE.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from calo_ablate.config import canonical_dataset

__all__ = ["PUBLISHED_BATCH_SIZE", "CaloDiffusionConfig", "published_config"]

PUBLISHED_BATCH_SIZE = {"1-photons": 128, "1-pions": 128, "2": 128, "3": 64}


class CaloDiffusionConfig(BaseModel):
    """Sizes and switches of one CaloDiffusion model; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # ---- U-Net sizes ------------------------------------------------------------------------------
    widths: list[int] = Field(
        default_factory=lambda: [16, 16, 16, 32], min_length=2,
        description="LAYER_SIZE_UNET: input conv width, then one level per further entry "
                    "(4 entries = 3 resolution levels, 2 downsamplings)")
    embed_hidden: int = Field(32, ge=1, description="hidden width of the time and energy MLPs")
    embed_dim: int = Field(64, ge=1, description="output of each MLP; the condition vector is twice this")
    attention_heads: int = Field(1, ge=1)
    attention_head_dim: int = Field(32, ge=1)
    norm_groups: int = Field(8, ge=1, description="GroupNorm groups of every Block; divides every width")
    # ---- switches (the natural ablations) ----------------------------------------------------------
    block_attention: bool = Field(True, description="linear attention after every down and up level")
    mid_attention: bool = Field(True, description="linear attention at the bottleneck")
    cylindrical: bool = Field(True, description="circular padding in alpha; false: zero padding (Conv3d)")
    rz_channels: bool = Field(True, description="R and Z coordinate input channels")
    phi_channel: bool = Field(True, description="phi coordinate input channel")
    glam: Literal["learned", "fixed"] = Field(
        "learned", description="learned: GLaM trained with the U-Net; fixed: the bin-overlap map applied "
                               "in preprocessing and its pseudo-inverse at the end (identity when regular)")
    glam_init_noise: float = Field(1e-5, ge=0.0, description="std of the noise added to the learned maps at init")
    voxel_mean: float | None = Field(None, description="global logit mean; None = the reference table")
    voxel_std: float | None = Field(None, gt=0.0, description="global logit std; None = the reference table")
    # ---- diffusion ------------------------------------------------------------------------------
    objective: Literal["noise_pred", "hybrid_weight"] = "noise_pred"
    diffusion_steps: int = Field(400, ge=2, description="T of the cosine schedule used in training")
    sample_steps: int = Field(400, ge=1, description="schedule rebuilt at this many steps for sampling")
    sample_offset: int = Field(2, ge=0, description="the k noisiest sampling steps skipped")
    # ---- optimisation ---------------------------------------------------------------------------
    lr: float = Field(4e-4, gt=0.0, description="Adam learning rate")
    lr_plateau_factor: float = Field(0.1, gt=0.0, lt=1.0, description="ReduceLROnPlateau on the training loss")
    lr_plateau_patience: int = Field(15, ge=0, description="epochs without improvement before a reduction")
    early_stopping_patience: int | None = Field(
        20, ge=1, description="stop after this many consecutive epochs with val/loss >= train/loss; None: never")

    @model_validator(mode="after")
    def _consistent(self) -> CaloDiffusionConfig:
        bad = [w for w in self.widths if w < 1 or w % self.norm_groups]
        if bad:
            msg = f"calodiffusion.widths {self.widths}: every width must be a positive multiple of " \
                  f"norm_groups={self.norm_groups}, not {bad}"
            raise ValueError(msg)
        if self.sample_offset >= self.sample_steps:
            msg = f"calodiffusion.sample_offset={self.sample_offset} must be below sample_steps={self.sample_steps}"
            raise ValueError(msg)
        if (self.voxel_mean is None) != (self.voxel_std is None):
            msg = "calodiffusion.voxel_mean and voxel_std: give both or neither (None = the reference table)"
            raise ValueError(msg)
        return self


def published_config(dataset: str) -> CaloDiffusionConfig:
    """The published settings of `dataset` ('1', '1-photons', '1-pions', '2', '3')."""
    dataset = canonical_dataset(dataset)
    if dataset in ("1-photons", "1-pions"):
        return CaloDiffusionConfig()
    if dataset == "2":
        return CaloDiffusionConfig(phi_channel=False, glam="fixed")
    return CaloDiffusionConfig(widths=[32, 32, 32, 32], phi_channel=False, glam="fixed",
                               objective="hybrid_weight", lr=1e-4, sample_offset=0)
