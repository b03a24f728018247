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
Its section of the config tree is `model` when model.family is calodiffusion.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from calo_ablate.config import ModelSection, canonical_dataset

__all__ = ["PUBLISHED_BATCH_SIZE", "PUBLISHED_LR", "CaloDiffusionConfig", "published_config"]

PUBLISHED_BATCH_SIZE = {"1-photons": 128, "1-pions": 128, "2": 128, "3": 64}
PUBLISHED_LR = {"1-photons": 4e-4, "1-pions": 4e-4, "2": 4e-4, "3": 1e-4}  # train.lr


class CaloDiffusionConfig(ModelSection):
    """model.* of CaloDiffusion (defaults: dataset 1 photons); its learning rate is train.lr, its sampling
    steps sample.steps."""

    family: Literal["calodiffusion"] = Field("calodiffusion", description="selects CaloDiffusion")

    reads: ClassVar[frozenset[str]] = frozenset({"train.lr", "sample.steps", "sample.steps_factor"})
    loss_defining: ClassVar[tuple[str, ...]] = ("objective", "diffusion_steps", "glam", "voxel_mean", "voxel_std")
    # ---- U-Net sizes ------------------------------------------------------------------------------
    widths: list[int] = Field(
        default_factory=lambda: [16, 16, 16, 32], min_length=2,
        description="LAYER_SIZE_UNET: input conv width, then one level per further entry "
                    "(4 entries = 3 resolution levels, 2 downsamplings)")
    embed_hidden: int = Field(32, ge=1, description="hidden width of the time and energy MLPs")
    embed_dim: int = Field(64, ge=1, description="output of each MLP; the condition vector is twice this")
    attention_heads: int = Field(1, ge=1, description="heads of the linear attention")
    attention_head_dim: int = Field(32, ge=1, description="width of each attention head")
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
    objective: Literal["noise_pred", "hybrid_weight"] = Field(
        "noise_pred", description="noise_pred: the network estimates the noise; hybrid_weight: a weighted "
                                  "data estimate (the reference's dataset 3)")
    diffusion_steps: int = Field(400, ge=2, description="T of the cosine schedule used in training")
    sample_offset: int = Field(2, ge=0, description="the k noisiest sampling steps skipped")
    # ---- optimisation ---------------------------------------------------------------------------
    lr_plateau_factor: float = Field(0.1, gt=0.0, lt=1.0, description="ReduceLROnPlateau on the training loss")
    lr_plateau_patience: int = Field(15, ge=0, description="epochs without improvement before a reduction")
    early_stopping_patience: int | None = Field(
        20, ge=1, description="stop after this many consecutive epochs with val/loss >= train/loss; None: never")

    @model_validator(mode="after")
    def _consistent(self) -> CaloDiffusionConfig:
        bad = [w for w in self.widths if w < 1 or w % self.norm_groups]
        if bad:
            msg = f"model.widths {self.widths}: every width must be a positive multiple of " \
                  f"norm_groups={self.norm_groups}, not {bad}"
            raise ValueError(msg)
        if (self.voxel_mean is None) != (self.voxel_std is None):
            msg = "model.voxel_mean and voxel_std: give both or neither (None = the reference table)"
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
                               objective="hybrid_weight", sample_offset=0)
