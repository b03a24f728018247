"""The typed configuration tree: YAML sources, dotted overrides, stages and the keys built from them.

Sources, later wins: experiments/datasets/<dataset>.yaml, experiments/profiles/<profile>.yaml, an
ablation's `set:` block, command-line `--set key=value`. Every field belongs to a stage:
- data: which file and how it is read and preprocessed,
- train: anything that changes the trained weights (model, train, data),
- evaluate: sampling and evaluation settings,
- runtime: where it runs (trainer) and what the profile promises (study), which change no result.

`model` is the section of the selected model family, a union on `model.family`: each family's section
(a ModelSection) is registered by the family list, calo_ablate/model/families.py (this module is below
the model layer and imports no family), and declares the optional shared keys it reads (`reads`, out of
FAMILY_READ_KEYS); a family's keys hash its section and the shared keys it reads, nothing else.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator

from calo_ablate.errors import ConfigError

DATASET_ALIASES = {"1": "1-photons", "1-photons": "1-photons", "1-pions": "1-pions", "2": "2", "3": "3"}
PROFILES = ("smoke", "quick", "full", "gpu")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    dataset: Literal["1-photons", "1-pions", "2", "3"] = Field(
        "1-photons", description="the CaloChallenge dataset (the command line's --dataset; 1 = 1-photons)")
    data_dir: str = Field("data", description="folder of the real files; the stand-in goes to its synthetic/ "
                                              "(runtime: in no key)")
    max_train_events: int | None = Field(None, ge=10, description="subset of the training file, None = all")
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="part of the training subset held out for "
                                "validation (split by a fixed seed, never the run's)")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (runtime: in no key)")
    max_deposit: float = Field(3.1, gt=0.0, description="MAXDEP: E_tot / E_inc upper bound for u_0")
    energy_min_gev: float = Field(0.256, gt=0.0, description="lower edge of the incident-energy condition")
    energy_max_gev: float = Field(4194.304, gt=0.0, description="upper edge of the incident-energy condition")
    voxel_cut_gev: float = Field(1e-7, ge=0.0, description="ECUT: generated voxels below it are zeroed")


# the published run's optimizer steps: 300 epochs x ceil(96,800 training showers / batch 128)
PUBLISHED_LR_HORIZON_STEPS = 300 * 757


class TrainConfig(_Section):
    seed: int = Field(0, description="the seed: data order, initial weights, training and sampling noise")
    lr: float = Field(3e-4, gt=0.0, description="learning rate (CaloScore v2: x the number of processes, "
                                                "with its cosine decay)")
    batch_size: int = Field(128, ge=1, description="training showers per optimizer step")
    max_epochs: int = Field(300, ge=1, description="epochs to train (early stopping may end it sooner)")
    early_stopping_patience: int | None = Field(30, ge=1, description="None disables early stopping")
    grad_clip: float = Field(1.0, gt=0.0, description="per-tensor gradient clipping: g <- g c / max(|g|, c)")
    lr_horizon_steps: int | None = Field(
        PUBLISHED_LR_HORIZON_STEPS, ge=1,
        description="steps over which the cosine LR decays to 0 (the published run's); None = this run's own steps")
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0, description="decay of the weights' moving average "
                                                              "(the EMA weights generate the samples)")
    ema_start: Literal["warmup", "published"] = Field(
        "warmup", description="warmup: copy of the initial weights, warm-up decay; published: fresh random "
                              "weights, plain decay")
    precision: Literal["32-true", "bf16-mixed"] = Field(
        "32-true", description="bf16-mixed: bf16 autocast in training and validation (only where bf16 is native)")
    teacher: str | None = Field(
        None, description="the registry entry whose trained model (same seed) this training starts from, set by "
                          "the entry's `from:`; None: a training from scratch")


class SampleConfig(_Section):
    steps: int = Field(512, ge=1, description="sampling steps (network calls), before steps_factor")
    steps_factor: float = Field(1.0, gt=0.0, le=1.0, description="fraction of `steps` actually used")
    batch_size: int = Field(100, ge=1, description="showers generated per batch")
    precision: Literal["32-true", "bf16-mixed"] = Field(
        "32-true", description="bf16-mixed: bf16 autocast of the nets while sampling (the DDIM update stays fp32)")

    @property
    def effective_steps(self) -> int:
        return max(1, round(self.steps * self.steps_factor))


class ClassifierConfig(_Section):
    hidden: int = Field(2048, ge=1, description="width of every hidden layer (official: 2048)")
    num_hidden_layers: int = Field(3, ge=1, description="hidden layers (official: 3)")
    epochs: int = Field(50, ge=1, description="at most this many epochs per training (official: 50)")
    lr: float = Field(2e-4, gt=0.0, description="Adam learning rate (official: 2e-4)")
    batch_size: int = Field(1000, ge=1, description="batch size (official: 1000)")
    trainings: int = Field(10, ge=1, description="seeded trainings; AUC and JSD are their mean and ddof-0 std "
                                                 "(official: 10)")
    standardise_inputs: bool = Field(False, description="own option: scale inputs by the training split's "
                                     "mean and std (metric names get ' (standardised)')")
    resnet_channels: int = Field(8, ge=1, description="channels of the cls-resnet CNN")


# cls-high-z (own): the cls-high inputs standardised by the training split (the verdicts' AUC high)
ClassifierMode = Literal["cls-low", "cls-low-normed", "cls-high", "cls-high-z", "cls-resnet"]


_DEFAULT_CLASSIFIERS: tuple[ClassifierMode, ...] = ("cls-low", "cls-low-normed", "cls-high", "cls-resnet")


class EvaluateConfig(_Section):
    enabled: bool = Field(True, description="false: no sample-quality evaluation or generation timing")
    n_events: int = Field(10000, ge=10, description="generated showers = reference showers per cell")
    threshold_mev: float | None = Field(None, ge=0.0, description="readout threshold, None = dataset's")
    timing_batch_sizes: list[int] = Field(default_factory=lambda: [1, 100, 10000],
                                          description="batch sizes at which generation time per shower is "
                                                      "measured (larger than the sample: skipped)")
    timing_repeats: int = Field(3, ge=1, description="timed calls per batch size; the median is kept")
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    classifiers: list[ClassifierMode] = Field(
        default_factory=lambda: list(_DEFAULT_CLASSIFIERS),
        description="classifier metrics to train (cls-resnet only for datasets 2 and 3)")
    fpd_kpd: bool = Field(True, description="the official FPD and KPD (minutes on CPU for datasets 2 and 3)")
    prdc: bool = Field(True, description="precision, recall, density, coverage (N x N distances in memory)")
    prdc_k: int = Field(5, ge=1, description="nearest neighbours of PRDC")
    own_fpd_kpd: bool = Field(False, description="also FPD/KPD drawn without replacement (own variant)")
    noise_floor_samples: int = Field(1, ge=1, description="reference-vs-reference evaluations on independent "
                                     "draws: the noise floor is their mean, its spread their std")


class TrainerConfig(_Section):
    accelerator: str = Field("auto", description="Lightning's accelerator: auto (the GPU where one is visible), "
                                                 "cpu, gpu")
    devices: int | str = Field("auto", description="Lightning's devices per node")
    strategy: str = Field("auto", description="Lightning's strategy (ddp, ...)")
    num_nodes: int = Field(1, ge=1, description="Lightning's number of nodes")
    threads: int | None = Field(None, ge=1, description="torch CPU threads, None = torch's default")


class StudyConfig(_Section):
    promise_minutes: float | None = Field(
        None, gt=0.0, description="the profile's promise: the shipped 7-row study with 2 seeds and 2 workers in at "
                                  "most this many minutes of wall time on 2 CPU cores; `ablate` warns when this "
                                  "machine's estimate of the study asked for exceeds it (None: no promise; "
                                  "runtime: in no key)")


SHARED_SECTIONS = ("data", "train", "sample", "evaluate", "trainer", "study")
# Shared keys a family may or may not read (its section's `reads` says which): they enter its keys and may
# be set for it only when it reads them. Every other shared key is read for every family.
FAMILY_READ_KEYS = frozenset({
    "train.lr", "train.early_stopping_patience", "train.grad_clip", "train.lr_horizon_steps", "train.ema_decay",
    "train.ema_start", "sample.steps", "sample.steps_factor", "data.max_deposit", "data.energy_min_gev",
    "data.energy_max_gev", "data.voxel_cut_gev"})


# ---- model: one section per family, registered by the family list (calo_ablate/model/families.py) ----
class ModelSection(_Section):
    """Base of a model family's section `model`: `family` selects the section (a discriminated union).

    A subclass sets `family` to a Literal of its name and declares in `reads` the shared keys of the
    data, train and sample sections it reads beyond those every family reads (READ_BY_EVERY_FAMILY);
    `loss_defining` names its own fields (relative to `model.`, a trailing '.' for a whole sub-section)
    that change what the loss measures.
    """

    family: str
    reads: ClassVar[frozenset[str]] = frozenset()
    loss_defining: ClassVar[tuple[str, ...]] = ()


USER_FAMILY_PATTERN = r"[A-Za-z_][\w.]*:[A-Za-z_]\w*"  # 'package.module:ClassName' of a user's ModelFamily


class UserFamilySection(ModelSection):
    """The section of a user's family named by its dotted path: free-form `model.options.*`."""

    family: str = Field(pattern=USER_FAMILY_PATTERN, description="the dotted path of a ModelFamily subclass")
    options: dict[str, Any] = Field(default_factory=dict, description="free-form settings of a user's family")
    reads: ClassVar[frozenset[str]] = FAMILY_READ_KEYS  # unknown to the config: every shared key


_SECTIONS: dict[str, type[ModelSection]] = {}


def register_family_section(section: type[ModelSection]) -> None:
    """Make `section` the `model` section of the family named by its `family` default; the first
    registered is the default family. Called by the family list (calo_ablate/model/families.py)."""
    name = section.model_fields["family"].default
    unknown = sorted(section.reads - FAMILY_READ_KEYS)
    if not isinstance(name, str) or unknown:
        msg = f"{section.__name__}: needs a family name as the default of `family` and reads only keys of " \
              f"{sorted(FAMILY_READ_KEYS)} (not {unknown})"
        raise ConfigError(msg)
    _SECTIONS[name] = section


def family_names() -> list[str]:
    """The registered family names, the default first."""
    return list(_SECTIONS)


def default_family() -> str:
    if not _SECTIONS:
        msg = "no model family is registered: import calo_ablate.model.families before building a config"
        raise ConfigError(msg)
    return next(iter(_SECTIONS))


def section_of(family: str) -> type[ModelSection]:
    """The section class of a model.family value; ConfigError naming the value and the valid names."""
    if family in _SECTIONS:
        return _SECTIONS[family]
    if re.fullmatch(USER_FAMILY_PATTERN, family):
        return UserFamilySection
    default_family()
    msg = f"model.family {family!r}: expected one of {', '.join(_SECTIONS)} or a dotted import path " \
          f"'package.module:ClassName' of a ModelFamily subclass"
    raise ConfigError(msg)


def _default_model() -> ModelSection:
    return _SECTIONS[default_family()].model_validate({})  # a registered section defaults its `family`


class Config(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: SerializeAsAny[ModelSection] = Field(default_factory=_default_model)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    study: StudyConfig = Field(default_factory=StudyConfig)

    @field_validator("model", mode="before")
    @classmethod
    def _family_section(cls, value: Any) -> Any:
        """The section of the family named by value['family'] (the default family when absent)."""
        if isinstance(value, ModelSection):
            return value
        if not isinstance(value, dict):
            return value
        try:
            section = section_of(str(value.get("family", default_family())))
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return section.model_validate(value)


_SectionT = TypeVar("_SectionT", bound=ModelSection)


def model_section(config: Config, section: type[_SectionT]) -> _SectionT:
    """config.model as the section class a family's code expects; a ConfigError when the config is another
    family's (a bug: the family list builds each family's code from its own configs only)."""
    if not isinstance(config.model, section):
        msg = f"model.family={config.model.family!r}: {section.__name__} expected here, got " \
              f"{type(config.model).__name__}"
        raise ConfigError(msg)
    return config.model


# Fields that say where or how fast a run goes, never what it computes: outside every hashed stage, so
# moving the data folder or changing the loader's worker count keeps every train and eval key.
FREE_FORM_PREFIX = "model.options."  # a user family's own keys: any name below it is accepted

RUNTIME_KEYS = frozenset({"data.data_dir", "data.num_workers"})

STAGE_OF_SECTION = {
    "data": "data",
    "model": "train",
    "train": "train",
    "sample": "evaluate",
    "evaluate": "evaluate",
    "trainer": "runtime",
    "study": "runtime",
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


def _leaf_keys(model: type[BaseModel], prefix: str) -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            keys.extend(_leaf_keys(sub, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _shared_section(name: str) -> type[BaseModel]:
    """The model class of the shared section `name` of Config (one of SHARED_SECTIONS)."""
    section = Config.model_fields[name].annotation
    if not (isinstance(section, type) and issubclass(section, BaseModel)):
        raise TypeError(f"Config.{name}: expected a section model, got {section!r}")
    return section


def valid_keys(family: str | None = None) -> list[str]:
    """All dotted leaf keys of the config tree with `family`'s model section (the default family's when
    None), e.g. 'model.voxel.widths'."""
    shared = [k for name in SHARED_SECTIONS for k in _leaf_keys(_shared_section(name), f"{name}.")]
    return shared + _leaf_keys(section_of(family or default_family()), "model.")


def family_keys_text(family: str) -> str:
    """'its keys: model.a, ...; the shared keys it reads: train.lr, ...' for messages about `family`."""
    section = section_of(family)
    own = [k for k in _leaf_keys(section, "model.")] + ([f"{FREE_FORM_PREFIX}*"] if section is UserFamilySection else [])
    return f"its keys: {', '.join(own)}; the shared keys it reads (beyond those every family reads): " \
           f"{', '.join(sorted(section.reads)) or 'none'}"


def _check_key(key: str, where: str, family: str, explicit: bool) -> None:
    """Refuse a key that `family`'s config tree lacks; an `explicit` one (an ablation's set:, --set) also
    when it is a shared key the family does not read."""
    keys = valid_keys(family)
    section = section_of(family)
    if key in keys or (key.startswith(FREE_FORM_PREFIX) and section is UserFamilySection):
        if explicit and key in FAMILY_READ_KEYS and key not in section.reads:
            msg = (f"{where}: model family {family!r} does not read '{key}' (for the rows of one family only: "
                   f"families.<family>.{key}); {family_keys_text(family)}")
            raise ConfigError(msg)
        return
    sections = {k.rsplit(".", 1)[0] for k in keys if "." in k}
    if key in sections:
        msg = f"{where}: '{key}' is a section, set one of its keys (e.g. {key}.{valid_keys_of(key, family)[0]})"
        raise ConfigError(msg)
    near = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
    if key.startswith("model."):
        hint = f" (nearest: {', '.join(near)})" if near else ""
        msg = f"{where}: '{key}' is not a key of model family {family!r}{hint}; {family_keys_text(family)}"
        raise ConfigError(msg)
    hint = f"; nearest valid keys: {', '.join(near)}" if near else f"; valid sections: {', '.join(sorted(sections))}"
    msg = f"{where}: unknown config key '{key}'{hint}"
    raise ConfigError(msg)


def valid_keys_of(section: str, family: str | None = None) -> list[str]:
    return [k[len(section) + 1:] for k in valid_keys(family) if k.startswith(section + ".")]


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


def selected_family(layers: list[tuple[str, dict[str, Any]]]) -> str:
    """The model.family of these layers (the last that sets it wins), the default family when none does."""
    family = None
    for _, flat in layers:
        family = flat.get("model.family", family)
    return str(family) if family is not None else default_family()


def build_config(layers: list[tuple[str, dict[str, Any]]], *, shared_layers: int = 0) -> Config:
    """Merge flat {dotted key: value} layers (each with a name for messages) into a validated Config.

    The first `shared_layers` layers serve every family (dataset and profile files): a shared key there
    that the selected family does not read is kept out of its keys but not refused."""
    family = selected_family(layers)
    section_of(family)
    tree: dict[str, Any] = {}
    for i, (where, flat) in enumerate(layers):
        for key, value in flat.items():
            _check_key(key, where, family, explicit=i >= shared_layers)
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


FAMILY_SCOPE = "families."  # families.<name>.<key>: a key set only for rows of that model family


def _for_family(where: str, flat: dict[str, Any], family: str) -> dict[str, Any]:
    """The layer's keys for `family`: plain keys, and `families.<family>.<key>` as <key>; another
    family's `families.<name>.*` keys are left out (its name is checked)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if not key.startswith(FAMILY_SCOPE):
            out[key] = value
            continue
        rest = key[len(FAMILY_SCOPE):]
        name, _, inner = next(((f, ".", rest[len(f) + 1:]) for f in [*_SECTIONS, rest.split(".")[0]]
                               if rest.startswith(f + ".")), ("", "", ""))
        if not inner:
            msg = f"{where}: '{key}': expected families.<model family>.<key>, e.g. families.{default_family()}.train.lr"
            raise ConfigError(msg)
        section_of(name)
        if name == family:
            out[inner] = value
    return out


def _family_blocks(path: Path, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A file's `families:` block ({family: {section: ...}}): settings that apply only to that family."""
    blocks = data.pop("families", None) or {}
    if not isinstance(blocks, dict) or not all(isinstance(v, dict) for v in blocks.values()):
        msg = f"{path}: 'families' must map a model family's name to its config sections"
        raise ConfigError(msg)
    for name in blocks:
        section_of(str(name))
    return {str(k): flatten(v) for k, v in blocks.items()}


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
    files = []
    for path in (dataset_path, profile_path):
        data = _read_yaml(path)
        files.append((path, flatten({k: v for k, v in data.items() if k != "families"}), _family_blocks(path, data)))
    explicit = []
    if ablation_set:
        explicit.append(("ablation set", dict(ablation_set)))
    if cli_set:
        explicit.append(("--set", dict(parse_set_option(s) for s in cli_set)))
    if seed is not None:
        explicit.append(("--seed", {"train.seed": seed}))
    family = selected_family([(str(p), flat) for p, flat, _ in files] + explicit)
    explicit = [(where, _for_family(where, flat, family)) for where, flat in explicit]
    shared = []
    for path, flat, blocks in files:
        shared.append((str(path), flat))
        if family in blocks:
            shared.append((f"{path} (families.{family})", blocks[family]))
    config = build_config(shared + explicit, shared_layers=len(shared))
    if config.data.dataset != dataset:
        msg = f"{dataset_path}: sets data.dataset={config.data.dataset!r}, expected {dataset!r}"
        raise ConfigError(msg)
    return config


def read_values(config: Config) -> dict[str, Any]:
    """The flat {key: value} of every key the config's family reads: its own section and the shared keys
    (a shared key of FAMILY_READ_KEYS only when the family's section `reads` it)."""
    reads = type(config.model).reads
    return {k: v for k, v in sorted(flatten(config.model_dump(mode="json")).items())
            if k not in FAMILY_READ_KEYS or k in reads}


def stage_values(config: Config, stages: tuple[str, ...]) -> dict[str, Any]:
    """The flat {key: value} of every key the config's family reads whose section belongs to one of
    `stages` (RUNTIME_KEYS left out)."""
    return {k: v for k, v in read_values(config).items()
            if STAGE_OF_SECTION[k.split(".", 1)[0]] in stages and k not in RUNTIME_KEYS}


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
    return build_config([("config", flatten(config.model_dump(mode="json"))), (f"set {key}", {key: value})],
                        shared_layers=1)


def diff_from(config: Config, base: Config) -> dict[str, tuple[Any, Any]]:
    """{key: (base value, value)} for every leaf that differs from `base` (None where one side lacks a
    free-form model.options key)."""
    mine, theirs = flatten(config.model_dump(mode="json")), flatten(base.model_dump(mode="json"))
    keys = [*mine, *(k for k in theirs if k not in mine)]
    return {k: (theirs.get(k), mine.get(k)) for k in keys if theirs.get(k) != mine.get(k)}
