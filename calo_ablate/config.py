"""The typed configuration tree: YAML sources, dotted overrides, stages and the keys built from them.

Sources, later wins: experiments/datasets/<dataset>.yaml, experiments/profiles/<profile>.yaml, an
ablation's `set:` block, command-line `--set key=value`. Every field belongs to a stage:
- data: which file and how it is read and preprocessed,
- train: anything that changes the trained weights (model, diffusion, train, data),
- evaluate: sampling and evaluation settings,
- runtime: where it runs (trainer), which changes no result.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from calo_ablate.errors import ConfigError

DATASETS = ("1-photons", "1-pions", "2", "3")
DATASET_ALIASES = {"1": "1-photons", "1-photons": "1-photons", "1-pions": "1-pions", "2": "2", "3": "3"}
PROFILES = ("smoke", "quick", "full", "gpu")
FAMILIES = ("caloscore_v2", "calodiffusion")  # built-in model families (calo_ablate/model/family.py)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    dataset: Literal["1-photons", "1-pions", "2", "3"] = "1-photons"
    data_dir: str = "data"
    max_train_events: int | None = Field(None, ge=10, description="subset of the training file, None = all")
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    num_workers: int = Field(0, ge=0)
    max_deposit: float = Field(3.1, gt=0.0, description="MAXDEP: E_tot / E_inc upper bound for u_0")
    energy_min_gev: float = Field(0.256, gt=0.0, description="lower edge of the incident-energy condition")
    energy_max_gev: float = Field(4194.304, gt=0.0, description="upper edge of the incident-energy condition")
    voxel_cut_gev: float = Field(1e-7, ge=0.0, description="ECUT: generated voxels below it are zeroed")


class VoxelNetConfig(_Section):
    lift_channels: int = Field(16, ge=1)
    widths: list[int] = Field(default_factory=lambda: [32, 64, 96, 128], min_length=1)
    attention: list[bool] = Field(default_factory=lambda: [False, True, True, True], min_length=1)
    block_depth: int = Field(4, ge=1)
    kernel_size: int = Field(3, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _same_length(self) -> VoxelNetConfig:
        if len(self.widths) != len(self.attention):
            msg = f"model.voxel.widths has {len(self.widths)} entries but model.voxel.attention has " \
                  f"{len(self.attention)}: give one attention flag per width"
            raise ValueError(msg)
        return self


class LayerNetConfig(_Section):
    mlp_dim: int = Field(128, ge=1)
    num_layer: int = Field(3, ge=2, description="residual blocks = num_layer - 1")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    dropout_in_training: bool = Field(
        False, description="apply the dropout in training; false = as the published code runs it (never)")


class CaloDiffusionConfig(_Section):
    """Sizes and switches of one CaloDiffusion model (model.calodiffusion; defaults: dataset 1 photons,
    see calo_ablate/model/calodiffusion/config.py); unknown keys are refused."""

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


class ModelConfig(_Section):
    embed_dim: int = Field(64, ge=1)
    num_frequencies: int = Field(32, ge=2)
    init: Literal["keras", "pytorch"] = Field(
        "keras", description="keras: glorot-uniform kernels, zero biases (published); pytorch: torch's defaults")
    voxel: VoxelNetConfig = Field(default_factory=VoxelNetConfig)
    layer: LayerNetConfig = Field(default_factory=LayerNetConfig)
    family: str = Field(
        "caloscore_v2", description="the base model: caloscore_v2, calodiffusion, or 'package.module:ClassName' "
                                    "of a user's ModelFamily subclass (calo_ablate/model/family.py)")
    calodiffusion: CaloDiffusionConfig = Field(default_factory=CaloDiffusionConfig)
    options: dict[str, Any] = Field(default_factory=dict, description="free-form settings of a user's family")

    @model_validator(mode="after")
    def _family(self) -> ModelConfig:
        if self.family not in FAMILIES and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", self.family):
            msg = f"model.family {self.family!r}: expected one of {', '.join(FAMILIES)} or a dotted import path " \
                  f"'package.module:ClassName' of a ModelFamily subclass"
            raise ValueError(msg)
        defaults = CaloDiffusionConfig()
        for name, shared in (("lr", "train.lr"), ("sample_steps", "sample.steps")):
            if getattr(self.calodiffusion, name) != getattr(defaults, name):
                msg = f"model.calodiffusion.{name}: set {shared} instead (shared by every model family)"
                raise ValueError(msg)
        return self


class DiffusionConfig(_Section):
    logsnr_min: float = -20.0
    logsnr_max: float = 20.0
    noise_scale: float = Field(1.0, gt=0.0, description="<1 shifts the log-SNR schedule up: less noise at every t")


# the published run's optimizer steps: 300 epochs x ceil(96,800 training showers / batch 128)
PUBLISHED_LR_HORIZON_STEPS = 300 * 757


class TrainConfig(_Section):
    seed: int = 0
    lr: float = Field(3e-4, gt=0.0)
    batch_size: int = Field(128, ge=1)
    max_epochs: int = Field(300, ge=1)
    early_stopping_patience: int | None = Field(30, ge=1, description="None disables early stopping")
    grad_clip: float = Field(1.0, gt=0.0)
    lr_horizon_steps: int | None = Field(
        PUBLISHED_LR_HORIZON_STEPS, ge=1,
        description="steps over which the cosine LR decays to 0 (the published run's); None = this run's own steps")
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0)
    ema_start: Literal["warmup", "published"] = Field(
        "warmup", description="warmup: copy of the initial weights, warm-up decay; published: fresh random "
                              "weights, plain decay")
    precision: Literal["32-true", "bf16-mixed"] = "32-true"


class SampleConfig(_Section):
    steps: int = Field(512, ge=1)
    steps_factor: float = Field(1.0, gt=0.0, le=1.0, description="fraction of `steps` actually used")
    batch_size: int = Field(100, ge=1)
    precision: Literal["32-true", "bf16-mixed"] = Field(
        "32-true", description="bf16-mixed: bf16 autocast of the nets while sampling (the DDIM update stays fp32)")

    @property
    def effective_steps(self) -> int:
        return max(1, round(self.steps * self.steps_factor))


class ClassifierConfig(_Section):
    hidden: int = Field(2048, ge=1)
    num_hidden_layers: int = Field(3, ge=1)
    epochs: int = Field(50, ge=1)
    lr: float = Field(2e-4, gt=0.0)
    batch_size: int = Field(1000, ge=1)
    trainings: int = Field(10, ge=1)
    standardise_inputs: bool = Field(False, description="own option: scale inputs by the training split's "
                                     "mean and std (metric names get ' (standardised)')")
    resnet_channels: int = Field(8, ge=1, description="channels of the cls-resnet CNN")


# cls-high-z (own): the cls-high inputs standardised by the training split (the verdicts' AUC high)
ClassifierMode = Literal["cls-low", "cls-low-normed", "cls-high", "cls-high-z", "cls-resnet"]


class EvaluateConfig(_Section):
    enabled: bool = True
    n_events: int = Field(10000, ge=10, description="generated showers = reference showers per cell")
    threshold_mev: float | None = Field(None, ge=0.0, description="readout threshold, None = dataset's")
    timing_batch_sizes: list[int] = Field(default_factory=lambda: [1, 100, 10000])
    timing_repeats: int = Field(3, ge=1, description="timed calls per batch size; the median is kept")
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    classifiers: list[ClassifierMode] = Field(
        default_factory=lambda: ["cls-low", "cls-low-normed", "cls-high", "cls-resnet"],
        description="classifier metrics to train (cls-resnet only for datasets 2 and 3)")
    fpd_kpd: bool = Field(True, description="the official FPD and KPD (minutes on CPU for datasets 2 and 3)")
    prdc: bool = Field(True, description="precision, recall, density, coverage (N x N distances in memory)")
    prdc_k: int = Field(5, ge=1, description="nearest neighbours of PRDC")
    own_fpd_kpd: bool = Field(False, description="also FPD/KPD drawn without replacement (own variant)")
    noise_floor_samples: int = Field(1, ge=1, description="reference-vs-reference evaluations on independent "
                                     "draws: the noise floor is their mean, its spread their std")


class TrainerConfig(_Section):
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    num_nodes: int = Field(1, ge=1)
    threads: int | None = Field(None, ge=1, description="torch CPU threads, None = torch's default")


class Config(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = Field(default_factory=DiffusionConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)


# Fields that say where or how fast a run goes, never what it computes: outside every hashed stage, so
# moving the data folder or changing the loader's worker count keeps every train and eval key.
FREE_FORM_PREFIX = "model.options."  # a user family's own keys: any name below it is accepted

RUNTIME_KEYS = frozenset({"data.data_dir", "data.num_workers"})

STAGE_OF_SECTION = {
    "data": "data",
    "model": "train",
    "diffusion": "train",
    "train": "train",
    "sample": "evaluate",
    "evaluate": "evaluate",
    "trainer": "runtime",
}


def experiments_dir() -> Path:
    """The folder with ablations.yaml, datasets/ and profiles/ (CALO_ABLATE_EXPERIMENTS overrides)."""
    env = os.environ.get("CALO_ABLATE_EXPERIMENTS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "experiments"


def canonical_dataset(name: str) -> str:
    """'1' -> '1-photons'; raises ConfigError listing the valid names."""
    try:
        return DATASET_ALIASES[str(name)]
    except KeyError:
        msg = f"unknown dataset {name!r}: expected one of {', '.join(DATASET_ALIASES)}"
        raise ConfigError(msg) from None


def valid_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """All dotted leaf keys of the config tree, e.g. 'model.voxel.widths'."""
    keys = []
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            keys.extend(valid_keys(sub, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _check_key(key: str, where: str) -> None:
    keys = valid_keys()
    if key in keys or key.startswith(FREE_FORM_PREFIX):
        return
    sections = {k.rsplit(".", 1)[0] for k in keys if "." in k}
    if key in sections:
        msg = f"{where}: '{key}' is a section, set one of its keys (e.g. {key}.{valid_keys_of(key)[0]})"
        raise ConfigError(msg)
    near = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
    hint = f"; nearest valid keys: {', '.join(near)}" if near else f"; valid sections: {', '.join(sorted(sections))}"
    msg = f"{where}: unknown config key '{key}'{hint}"
    raise ConfigError(msg)


def valid_keys_of(section: str) -> list[str]:
    return [k[len(section) + 1:] for k in valid_keys() if k.startswith(section + ".")]


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set tree['a']['b']['c'] = value for key 'a.b.c', creating sections on the way."""
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    flat: dict[str, Any] = {}
    for name, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def parse_set_option(text: str) -> tuple[str, Any]:
    """'train.lr=1e-3' -> ('train.lr', 0.001); the value is read as YAML."""
    if "=" not in text:
        msg = f"--set {text!r}: expected key=value, e.g. --set train.lr=1e-3"
        raise ConfigError(msg)
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        msg = f"--set {text!r}: the value {raw!r} is not valid YAML ({err})"
        raise ConfigError(msg) from err
    return key.strip(), value


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        msg = f"config file not found: {path}"
        raise ConfigError(msg)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        msg = f"{path}: not valid YAML ({err})"
        raise ConfigError(msg) from err
    if not isinstance(data, dict):
        msg = f"{path}: expected a mapping of config sections at the top level"
        raise ConfigError(msg)
    return data


def build_config(layers: list[tuple[str, dict[str, Any]]]) -> Config:
    """Merge flat {dotted key: value} layers (each with a name for messages) into a validated Config."""
    tree: dict[str, Any] = {}
    for where, flat in layers:
        for key, value in flat.items():
            _check_key(key, where)
            set_dotted(tree, key, value)
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            path = ".".join(str(p) for p in e["loc"])
            problems.append(f"'{path}': {e['msg']} (got {e.get('input')!r})")
        msg = "invalid config value: " + "; ".join(problems)
        raise ConfigError(msg) from None


def resolve_config(
    dataset: str,
    profile: str = "quick",
    ablation_set: dict[str, Any] | None = None,
    cli_set: list[str] | None = None,
    seed: int | None = None,
) -> Config:
    """The config of one run: dataset file, profile file, ablation `set:`, then `--set` options."""
    dataset = canonical_dataset(dataset)
    if profile not in PROFILES:
        msg = f"unknown profile {profile!r}: expected one of {', '.join(PROFILES)}"
        raise ConfigError(msg)
    root = experiments_dir()
    dataset_path = root / "datasets" / f"{dataset}.yaml"
    profile_path = root / "profiles" / f"{profile}.yaml"
    layers = [
        (str(dataset_path), flatten(_read_yaml(dataset_path))),
        (str(profile_path), flatten(_read_yaml(profile_path))),
    ]
    if ablation_set:
        layers.append(("ablation set", dict(ablation_set)))
    if cli_set:
        layers.append(("--set", dict(parse_set_option(s) for s in cli_set)))
    if seed is not None:
        layers.append(("--seed", {"train.seed": seed}))
    config = build_config(layers)
    if config.data.dataset != dataset:
        msg = f"{dataset_path}: sets data.dataset={config.data.dataset!r}, expected {dataset!r}"
        raise ConfigError(msg)
    return config


def stage_values(config: Config, stages: tuple[str, ...]) -> dict[str, Any]:
    """The flat {key: value} of every field whose section belongs to one of `stages` (RUNTIME_KEYS left out)."""
    dumped = config.model_dump(mode="json")
    flat = flatten({s: v for s, v in dumped.items() if STAGE_OF_SECTION[s] in stages})
    return {k: v for k, v in sorted(flat.items()) if k not in RUNTIME_KEYS}


def digest(payload: dict[str, Any]) -> str:
    """16 hex digits of SHA-256 over the payload as sorted JSON: the form of every cache and run key."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def train_key(config: Config, data_checksums: dict[str, str]) -> str:
    """Hash of the data checksums and every data- and train-stage value: equal keys, equal weights."""
    return digest({"checksums": data_checksums, "values": stage_values(config, ("data", "train"))})


def eval_key(config: Config, data_checksums: dict[str, str]) -> str:
    """The train key plus every evaluation-stage value."""
    return digest({"train": train_key(config, data_checksums), "values": stage_values(config, ("evaluate",))})


def with_value(config: Config, key: str, value: Any) -> Config:
    """A copy of `config` with one dotted key set to `value`, validated (ConfigError on a bad key or value)."""
    return build_config([("config", flatten(config.model_dump(mode="json"))), (f"set {key}", {key: value})])


def diff_from(config: Config, base: Config) -> dict[str, tuple[Any, Any]]:
    """{key: (base value, value)} for every leaf that differs from `base` (None where one side lacks a
    free-form model.options key)."""
    mine, theirs = flatten(config.model_dump(mode="json")), flatten(base.model_dump(mode="json"))
    keys = [*mine, *(k for k in theirs if k not in mine)]
    return {k: (theirs.get(k), mine.get(k)) for k in keys if theirs.get(k) != mine.get(k)}
