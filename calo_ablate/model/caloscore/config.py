"""CaloScore v2's config section `model` (model.family: caloscore_v2): both nets and the diffusion.

The defaults are the published dataset-1 model. `model.diffusion.*` is its noise schedule; the shared
keys it reads are listed in `CaloScoreConfig.reads`; `loss_defining` says which of its fields change
what its loss measures (the noise schedule sets the loss's scale; the preprocessing constants in data.*
set the regression targets).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from calo_ablate.config import FAMILY_READ_KEYS, ModelSection, _Section

__all__ = ["CaloScoreConfig", "DiffusionConfig", "DistillConfig", "LayerNetConfig", "VoxelNetConfig"]


class VoxelNetConfig(_Section):
    lift_channels: int = Field(16, ge=1, description="channels of the 1x1 lift before the U-Net")
    widths: list[int] = Field(default_factory=lambda: [32, 64, 96, 128], min_length=1,
                              description="U-Net width per level; one entry ([128]): no pooling, no upsampling")
    attention: list[bool] = Field(default_factory=lambda: [False, True, True, True], min_length=1,
                                  description="self-attention per level, one flag per width")
    block_depth: int = Field(4, ge=1, description="residual blocks per U-Net level and at the bottleneck")
    kernel_size: int = Field(3, ge=1, description="kernel size of the U-Net's convolutions")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before each residual block's second "
                                                           "convolution")

    @model_validator(mode="after")
    def _same_length(self) -> VoxelNetConfig:
        if len(self.widths) != len(self.attention):
            msg = f"model.voxel.widths has {len(self.widths)} entries but model.voxel.attention has " \
                  f"{len(self.attention)}: give one attention flag per width"
            raise ValueError(msg)
        return self


class LayerNetConfig(_Section):
    mlp_dim: int = Field(128, ge=1, description="D: width of the layer net's residual MLP")
    num_layer: int = Field(3, ge=2, description="residual blocks = num_layer - 1")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="the layer net's dropout (in training only with "
                                                           "dropout_in_training; never at sampling)")
    dropout_in_training: bool = Field(
        False, description="apply the dropout in training; false = as the published code runs it (never)")


class DistillConfig(_Section):
    """model.diffusion.distill.*: one progressive-distillation round (CaloScore v2, Salimans & Ho 2022).

    A round is one derived training (a registry entry `from:` its teacher's entry): a student of N = `steps`
    DDIM steps learns, per step, two DDIM half-steps of its teacher, i.e. the teacher's trajectory of 2N
    steps. N is a model key (not read from sample.*, which is not part of the train key) so that students of
    different N never share a trained model. When the student trains, it is checked (ConfigError) that
    its teacher samples in 2N steps (a distilled teacher: its own distill.steps = 2N; a base teacher:
    sample.steps x steps_factor = 2N) and that the student's own sample.steps x steps_factor is N.
    Rounds chain as entries `from:` the previous round, so every round is a row of its own.
    """

    enabled: bool = Field(False, description="distil train.teacher into a student of `steps` DDIM steps "
                                             "(needs train.teacher); false: the family's default fine-tuning")
    steps: int | None = Field(None, ge=1, description="N, the student's DDIM steps (its teacher's are 2N); "
                                                      "required when enabled, equal to sample.steps x steps_factor")
    student_init: Literal["teacher", "fresh"] = Field(
        "teacher", description="teacher: the student starts from the teacher's EMA weights (Salimans & Ho's "
                               "choice; a short study budget cannot retrain from scratch every round); fresh: "
                               "new weights, as the published CaloScore v2 code does (Keras clone_model)")

    @model_validator(mode="after")
    def _steps_when_enabled(self) -> DistillConfig:
        if self.enabled and self.steps is None:
            msg = "model.diffusion.distill.enabled is true but model.diffusion.distill.steps is not set: " \
                  "give the student's DDIM steps N (its teacher samples in 2N)"
            raise ValueError(msg)
        if not self.enabled and self.steps is not None:
            msg = f"model.diffusion.distill.steps={self.steps} is set but model.diffusion.distill.enabled is " \
                  "false: enable the distillation or drop the key"
            raise ValueError(msg)
        return self


class DiffusionConfig(_Section):
    logsnr_min: float = Field(-20.0, description="log-SNR at t = 1, the noise end of the cosine schedule")
    logsnr_max: float = Field(20.0, description="log-SNR at t = 0, the data end of the cosine schedule")
    noise_scale: float = Field(1.0, gt=0.0, description="<1 shifts the log-SNR schedule up: less noise at every t")
    distill: DistillConfig = Field(default_factory=DistillConfig)


class CaloScoreConfig(ModelSection):
    """model.* of CaloScore v2."""

    family: Literal["caloscore_v2"] = Field("caloscore_v2", description="selects CaloScore v2 (the default family)")
    embed_dim: int = Field(64, ge=1, description="E: width of the time and energy embeddings")
    num_frequencies: int = Field(32, ge=2, description="F: sinusoid frequencies of the time embedding")
    init: Literal["keras", "pytorch"] = Field(
        "keras", description="keras: glorot-uniform kernels, zero biases (published); pytorch: torch's defaults")
    voxel: VoxelNetConfig = Field(default_factory=VoxelNetConfig)
    layer: LayerNetConfig = Field(default_factory=LayerNetConfig)
    diffusion: DiffusionConfig = Field(default_factory=DiffusionConfig)

    reads: ClassVar[frozenset[str]] = FAMILY_READ_KEYS  # every shared key: lr, its schedule, EMA, steps, data.*
    loss_defining: ClassVar[tuple[str, ...]] = ("diffusion.", "data.max_deposit", "data.energy_min_gev",
                                                "data.energy_max_gev")
