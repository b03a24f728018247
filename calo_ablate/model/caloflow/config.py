"""CaloFlowConfig: every knob of one CaloFlow model (flow-I and flow-II teacher) with the published defaults.

Published: Krause, Pang and Shih's CaloFlow for the CaloChallenge (Ian-Pang/caloflow-for-calochallenge,
run_gamma_2023.py / run_piplus_2023.py), dataset 1 only. Energies are in units of 100 GeV (1 unit = 1e5
MeV) wherever a field says "units". Fields left None are particle dependent; `resolved(dataset)` fills
them with the published value of photons or pions (PARTICLE_DEFAULTS) and refuses datasets 2 and 3.
It is CaloFlow's section `model` of the config tree (model.family: caloflow); it reads none of the
optional shared keys (no train.lr: each flow's schedule carries its rates; no sample.steps: a flow
samples in one pass; no train.early_stopping_patience: the best validation checkpoint is kept).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from calo_ablate.config import ModelSection
from calo_ablate.errors import ConfigError

__all__ = ["DATASET_PARTICLES", "ENERGY_UNIT_MEV", "PARTICLE_DEFAULTS", "CaloFlowConfig", "FlowConfig",
           "ScheduleConfig", "StudentConfig", "caloflow_dataset", "particle_of"]

ENERGY_UNIT_MEV = 1e5  # the published "normalization to 100 GeV"
DATASET_PARTICLES = {"1-photons": "photons", "1-pions": "pions"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ScheduleConfig(_Section):
    """The learning rate of one flow's Adam, stepped once per optimizer step."""

    kind: Literal["one_cycle", "cyclic", "constant"] | None = Field(
        None, description="one_cycle: torch's OneCycleLR (three-phase, cosine, momentum cycling); cyclic: "
                          "CyclicLR triangular2 (the photon teacher's); constant: max_lr throughout; "
                          "None: the published one of the particle")
    max_lr: float | None = Field(None, gt=0.0, description="peak (one_cycle, cyclic) or constant learning rate; "
                                                            "None: 1e-3, the photon teacher's cyclic 2e-3")
    pct_start: float | None = Field(None, gt=0.0, lt=0.5, description="one_cycle: fraction of the steps rising "
                                                                      "(three-phase: as many falling); None: 0.4, "
                                                                      "the pion teacher's 0.45")
    div_factor: float = Field(25.0, gt=1.0, description="one_cycle: initial lr = max_lr / div_factor")
    final_div_factor: float = Field(1e4, gt=1.0, description="one_cycle: final lr = initial lr / final_div_factor")
    momentum_range: tuple[float, float] = Field(
        (0.85, 0.95), description="one_cycle: Adam's beta1 cycles between these (low at the peak lr)")
    base_lr: float = Field(5e-5, gt=0.0, description="cyclic: the lowest learning rate")
    step_size_up: int = Field(850, ge=1, description="cyclic: optimizer steps from base_lr to the peak "
                                                     "(and as many back); the peak halves every cycle")


class FlowConfig(_Section):
    """One masked autoregressive flow (MADE blocks with rational-quadratic splines)."""

    blocks: int = Field(ge=1, description="MADE blocks (autoregressive transforms)")
    hidden_features: int | None = Field(None, ge=1, description="width of every hidden layer of a MADE; "
                                                                "None: the published width of the particle")
    hidden_layers: int = Field(ge=1, description="hidden layers per MADE (nflows' num_blocks + 1)")
    dropout: float = Field(ge=0.0, lt=1.0, description="dropout after every hidden layer but the first "
                                                       "(nflows' MADE blocks); 0 disables it")
    noise: float | None = Field(None, ge=0.0, description="uniform noise U[0, noise) added to every voxel, "
                                                          "fresh each step, in units of 100 GeV; None: "
                                                          "the particle's published level")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)


class Flow1Config(FlowConfig):
    """Flow-I with its published defaults (so that one key of it can be set alone: model.flow1.noise)."""

    blocks: int = Field(6, ge=1, description="MADE blocks of flow-I")
    hidden_features: int | None = Field(64, ge=1, description="width of every hidden layer of a flow-I MADE")
    hidden_layers: int = Field(3, ge=1, description="hidden layers per flow-I MADE (nflows' num_blocks + 1)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout in flow-I's MADEs; 0 disables it")


class Flow2Config(FlowConfig):
    """Flow-II (the teacher MAF) with its published defaults (the width is the particle's)."""

    blocks: int = Field(8, ge=1, description="MADE blocks of flow-II")
    hidden_layers: int = Field(2, ge=1, description="hidden layers per flow-II MADE (nflows' num_blocks + 1)")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="dropout after every hidden layer of a flow-II MADE "
                                                            "but the first")
    noise: float | None = Field(1e-8, ge=0.0, description="uniform noise U[0, noise) on every voxel for flow-II, "
                                                          "fresh each step, in units of 100 GeV")


class StudentConfig(_Section):
    """The inverse-autoregressive student of flow-II, distilled from the teacher (CaloFlow II's
    probability density distillation): one network pass per block to sample."""

    enabled: bool = Field(False, description="train and sample the student (a row derived from the teacher "
                                             "with from:); false: the teacher MAF is the model")
    blocks: int = Field(8, ge=1, description="MADE blocks of the student IAF")
    hidden_features: int | None = Field(None, ge=1, description="width of every hidden layer of a student MADE; "
                                                                "None: 736 photons, 500 pions (published)")
    hidden_layers: int = Field(2, ge=1, description="hidden layers per student MADE (nflows' num_blocks + 1)")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="dropout as in flow-II's MADEs")
    beta: float = Field(0.5, ge=0.0, le=1.0, description="loss = (1 - beta) z-loss + beta x-loss")
    z_width: float = Field(1.0, gt=0.0, description="standard deviation of the z-loss's latent draws")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="the student's Adam schedule; "
                                     "None fields: one-cycle, max 1e-3, pct 0.4")


class CaloFlowConfig(ModelSection):
    """Flow-I (layer energies) and flow-II (per-layer normalised voxels) of one CaloFlow teacher."""

    family: Literal["caloflow"] = Field("caloflow", description="selects CaloFlow (dataset 1 only)")
    reads: ClassVar[frozenset[str]] = frozenset()
    # what the negative log-likelihoods measure: the unit space, the logit, the flow-II condition and the
    # noise added to the data (its level sets the density of the near-empty voxels)
    loss_defining: ClassVar[tuple[str, ...]] = ("rescale_u0", "u0_max", "logit_alpha", "layer_log_offset",
                                                "flow1.noise", "flow2.noise", "student.enabled",
                                                "student.beta")

    flow1: Flow1Config = Field(default_factory=Flow1Config, description="flow-I, the layer-energy flow")
    flow2: Flow2Config = Field(default_factory=Flow2Config, description="flow-II, the voxel flow (teacher MAF)")
    student: StudentConfig = Field(default_factory=StudentConfig, description="flow-II's distilled IAF student")
    transform: Literal["spline", "affine"] = Field(
        "spline", description="spline: monotonic rational-quadratic splines with linear tails; affine: "
                              "monotonic affine transforms (a plain MAF)")
    spline_bins: int = Field(8, ge=2, description="bins K of every spline")
    tail_bound: float = Field(14.0, gt=0.0, description="the splines act on [-B, B] (logit units); identity "
                                                        "outside")
    min_slope: float = Field(1e-6, gt=0.0, lt=1.0, description="zuko's soft bound on the splines' derivatives "
                                                               "(and bin sizes); nflows' minima in the "
                                                               "published code are 1e-6")
    flow2_permutation: Literal["within_layer", "none"] = Field(
        "within_layer", description="within_layer: between flow-II's blocks, reverse (even) or random (odd) "
                                    "order inside every calorimeter layer, never across; none: one order")
    rescale_u0: bool = Field(True, description="u_0 = E_tot / (u0_max E_inc); false: u0_max = 1, the "
                                               "original CaloFlow's E_tot / E_inc")
    u0_max: float | None = Field(None, gt=0.0, description="the maximum of E_tot / E_inc: 2.42 photons, 6.93 "
                                                           "pions (None: the particle's)")
    logit_alpha: float = Field(1e-6, gt=0.0, lt=0.5, description="u -> logit(alpha + (1 - 2 alpha) u)")
    layer_log_offset: float = Field(1e-8, gt=0.0, description="flow-II condition log10(E_k + offset) - 1, "
                                                              "E_k in units (training and sampling)")
    sample_clip_mev: float = Field(1e6, gt=0.0, description="generated voxels clamped to [0, this] MeV")
    sample_threshold_mev: float = Field(0.01, ge=0.0, description="generated voxels below this are set to 0 (MeV)")
    dtype: Literal["float32", "float64"] = Field(
        "float32", description="the flows' precision in training and sampling (published: float64; "
                               "see the CaloFlow page of the docs for what float32 changes)")

    @property
    def u0_scale(self) -> float:
        """The divisor of E_tot / E_inc in u_0 (1 when the rescaling is off)."""
        if not self.rescale_u0:
            return 1.0
        if self.u0_max is None:
            msg = "caloflow.u0_max is unresolved: call CaloFlowConfig.resolved(dataset) first"
            raise ValueError(msg)
        return self.u0_max

    def resolved(self, dataset: str) -> CaloFlowConfig:
        """A copy with every None replaced by the published value for `dataset`'s particle."""
        particle = particle_of(dataset)
        values = self.model_dump()
        for dotted, value in PARTICLE_DEFAULTS[particle].items():
            *parents, leaf = dotted.split(".")
            node = values
            for part in parents:
                node = node[part]
            if node[leaf] is None:
                node[leaf] = value
        return CaloFlowConfig.model_validate(values)

    @model_validator(mode="after")
    def _cyclic_peak(self) -> CaloFlowConfig:
        for name in ("flow1", "flow2"):
            s = getattr(self, name).schedule
            if s.kind == "cyclic" and s.max_lr is not None and s.max_lr <= s.base_lr:
                msg = f"caloflow.{name}.schedule: cyclic max_lr={s.max_lr} must exceed base_lr={s.base_lr}"
                raise ValueError(msg)
        return self


# the published values that differ between the particles ([R] run_*_2023.py, data_*.py, README commands)
PARTICLE_DEFAULTS: dict[str, dict[str, Any]] = {
    "photons": {
        "u0_max": 2.42,
        "flow1.noise": 1e-8,
        "flow1.schedule.kind": "one_cycle", "flow1.schedule.max_lr": 1e-3, "flow1.schedule.pct_start": 0.4,
        "flow2.hidden_features": 378,
        "flow2.schedule.kind": "cyclic", "flow2.schedule.max_lr": 2e-3, "flow2.schedule.pct_start": 0.4,
        "student.hidden_features": 736,
        "student.schedule.kind": "one_cycle", "student.schedule.max_lr": 1e-3, "student.schedule.pct_start": 0.4,
    },
    "pions": {
        "u0_max": 6.93,
        "flow1.noise": 1e-9,
        "flow1.schedule.kind": "one_cycle", "flow1.schedule.max_lr": 1e-3, "flow1.schedule.pct_start": 0.4,
        "flow2.hidden_features": 533,
        "flow2.schedule.kind": "one_cycle", "flow2.schedule.max_lr": 1e-3, "flow2.schedule.pct_start": 0.45,
        "student.hidden_features": 500,
        "student.schedule.kind": "one_cycle", "student.schedule.max_lr": 1e-3, "student.schedule.pct_start": 0.4,
    },
}


def particle_of(dataset: str) -> str:
    """'photons' or 'pions' for dataset 1; ConfigError naming iCaloFlow for datasets 2 and 3."""
    return DATASET_PARTICLES[caloflow_dataset(dataset)]


def caloflow_dataset(dataset: str) -> str:
    """'1-photons' or '1-pions' ('1' = photons); ConfigError naming iCaloFlow for datasets 2 and 3."""
    name = {"1": "1-photons"}.get(str(dataset), str(dataset))
    if name in DATASET_PARTICLES:
        return name
    if name in ("2", "3"):
        msg = f"CaloFlow is built for dataset 1 (photons, pions) only, not dataset {name}: the flow model " \
              f"for datasets 2 and 3 is iCaloFlow (inductive CaloFlow), which calo-ablate does not build"
        raise ConfigError(msg)
    msg = f"unknown dataset {dataset!r} for CaloFlow: expected 1, 1-photons or 1-pions"
    raise ConfigError(msg)
