"""CaloDiffusionConfig: every size and switch of the CaloDiffusion family, with the published defaults.

The defaults of the class are those of dataset 1 photons; each dataset's published settings are the
families.calodiffusion block of experiments/datasets/<dataset>.yaml (Amram and Pedro 2023, configs of
OzAmram/CaloDiffusionPaper):

| | ds1 photons / pions | ds2 | ds3 |
|---|---|---|---|
| widths | 16, 16, 16, 32 | 16, 16, 16, 32 | 32, 32, 32, 32 |
| phi channel | on | off | off |
| GLaM | learned | fixed (the grid is regular: identity) | fixed (identity) |
| objective | noise_pred | noise_pred | hybrid_weight |
| learning rate | 4e-4 | 4e-4 | 1e-4 |
| sample offset | 2 | 2 | 0 |

Published batch sizes (a training setting, not part of this section): PUBLISHED_BATCH_SIZE.
Its section of the config tree is `model` when model.family is calodiffusion. Two few-step options of
the authors' later code (off by default, so the base is the paper's model): `layer_diffusion.*`
(LayerDiffusion, layer_diffusion.py) and `consistency.*` (consistency distillation, consistency.py).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from calo_ablate.config import ModelSection, _Section

__all__ = ["CONSISTENCY_MAX_STEPS", "PUBLISHED_BATCH_SIZE", "PUBLISHED_LR", "CaloDiffusionConfig",
           "ConsistencyConfig", "LayerDiffusionConfig"]

PUBLISHED_BATCH_SIZE = {"1-photons": 128, "1-pions": 128, "2": 128, "3": 64}
PUBLISHED_LR = {"1-photons": 4e-4, "1-pions": 4e-4, "2": 4e-4, "3": 1e-4}  # train.lr
CONSISTENCY_MAX_STEPS = 5  # the consistency sampler's grid has five noise levels


class LayerDiffusionConfig(_Section):
    """model.layer_diffusion.*: LayerDiffusion (CaloDiffusion 2.0). A second diffusion model of the vector
    [total deposited energy, per-layer fractions] trained beside the voxel model (loss = voxel + layer);
    the voxel U-Net is conditioned on [energy, that vector]; at sampling the vector comes from the layer
    model and each layer of the voxel output is rescaled to its energy."""

    enabled: bool = Field(False, description="train and sample the layer model; false: the paper's model")
    hidden: int = Field(256, ge=1, description="width of the layer ResNet")
    blocks: int = Field(4, ge=1, description="residual dense blocks of the layer ResNet")
    energy_mean: float | None = Field(None, description="mean of E_dep / (MAXDEP E_inc); None: the reference")
    energy_std: float | None = Field(None, gt=0.0, description="its std; None: the reference table")
    fraction_mean: float | None = Field(None, description="mean of the logit layer fractions; None: the reference")
    fraction_std: float | None = Field(None, gt=0.0, description="their std; None: the reference table")

    @model_validator(mode="after")
    def _pairs(self) -> LayerDiffusionConfig:
        values = (self.energy_mean, self.energy_std, self.fraction_mean, self.fraction_std)
        if any(v is None for v in values) and any(v is not None for v in values):
            msg = "model.layer_diffusion.energy_mean, energy_std, fraction_mean, fraction_std: give all four " \
                  f"or none (None = the reference table), got {values}"
            raise ValueError(msg)
        return self


class ConsistencyConfig(_Section):
    """model.consistency.*: consistency distillation of a trained CaloDiffusion (the teacher, a registry
    entry's `from:`), sampled in sample.steps (1 to 5) evaluations."""

    enabled: bool = Field(False, description="distil train.teacher into a consistency model (needs train.teacher)")
    teacher_steps: int = Field(30, ge=2, description="N of the teacher's discretisation (CONSIS_NSTEPS: 30 ds1 "
                                                     "photons, 100 ds1 pions and ds2)")
    ema_decay: float = Field(0.95, ge=0.0, lt=1.0, description="decay of the target network's EMA")
    ema_start: int = Field(10, ge=0, description="update_after_step: the target copies the online net for "
                                                 "ema_start + 1 optimizer steps (+ 1 more with the warm-up)")
    ema_warmup: bool = Field(True, description="ema_pytorch's default warm-up after those steps: decay "
                                               "min(ema_decay, 1 - (1 + k)^(-2/3)) at the k-th further update; "
                                               "false: ema_decay at once")


class CaloDiffusionConfig(ModelSection):
    """model.* of CaloDiffusion (defaults: dataset 1 photons); its learning rate is train.lr, its sampling
    steps sample.steps."""

    family: Literal["calodiffusion"] = Field("calodiffusion", description="selects CaloDiffusion")

    reads: ClassVar[frozenset[str]] = frozenset({"train.lr", "sample.steps", "sample.steps_factor"})
    loss_defining: ClassVar[tuple[str, ...]] = ("objective", "diffusion_steps", "glam", "voxel_mean", "voxel_std",
                                                "layer_diffusion.", "consistency.")
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
    # ---- few-step options (CaloDiffusion 2.0) ---------------------------------------------------------
    layer_diffusion: LayerDiffusionConfig = Field(default_factory=LayerDiffusionConfig)
    consistency: ConsistencyConfig = Field(default_factory=ConsistencyConfig)

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
        if self.layer_diffusion.enabled and self.consistency.enabled:
            msg = "model.layer_diffusion.enabled and model.consistency.enabled: consistency distillation of a " \
                  "LayerDiffusion teacher is not built; enable one of them"
            raise ValueError(msg)
        return self
