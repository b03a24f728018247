"""The plan of a study: cells (ablation x seed), their resolved configs and keys, and the train units.

A cell's config comes from the dataset file, the profile file, the ablation's override set and the
command line's `--set` options, in that order, resolved once per entry by `load_registry`, and the
cell's seed set on a copy (`make_plan`). Workers receive the plan serialised with the study
(`Plan.to_json`/`from_json`), never YAML files or option strings to resolve again. Cells with equal train keys share one training
(a train unit): "fewer time steps" changes only sampling, so it reuses the base's model of the same
seed. A cell of an ablation with a `search:` block is its own unit (its trainings depend on the
sampled values).

A derived cell (its entry says `from:`, so train.teacher is set) starts from the trained model of its
teacher's cell of the same seed: its train key chains the teacher's, and its unit comes after the
teacher's in the queue (a worker that claims it first waits for the teacher's result.json).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calo_ablate.config import Config, diff_from, digest, eval_key, train_key
from calo_ablate.errors import ConfigError
from calo_ablate.model.families import family_class, load_family
from calo_ablate.study.registry import BASE, TEACHER_KEY, Ablation, Registry


@dataclass(frozen=True)
class Cell:
    """One (ablation, seed) cell of the study."""

    ablation: Ablation
    seed: int
    config: Config
    train_key: str
    eval_key: str

    @property
    def name(self) -> str:
        """'base/s0': unique within a study, used as the MLflow run name and in the study state."""
        return f"{self.ablation.name}/s{self.seed}"


@dataclass(frozen=True)
class Unit:
    """Cells that share one training (one queue entry): same train key, or one search cell."""

    key: str
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Plan:
    registry: Registry  # its dataset, profile and --set options are the plan's
    cells: tuple[Cell, ...]  # registry order, then seed

    @property
    def seeds(self) -> int:
        """The most seeds of any row (rows of `--seeds auto` may have fewer)."""
        return max(cell.seed for cell in self.cells) + 1

    def units(self) -> list[Unit]:
        """Train units in order of their first cell, each derived unit after its teachers' units."""
        groups: dict[str, list[Cell]] = {}
        for cell in sorted(self.cells, key=lambda c: len(self.teacher_chain(c))):  # stable: plan order per depth
            key = f"search-{cell.ablation.name}-s{cell.seed}" if cell.ablation.search else cell.train_key
            groups.setdefault(key, []).append(cell)
        return [Unit(key, tuple(cells)) for key, cells in groups.items()]

    def cell(self, name: str) -> Cell:
        for cell in self.cells:
            if cell.name == name:
                return cell
        msg = f"no cell named {name!r} in the plan"
        raise KeyError(msg)

    def base_cell(self, seed: int) -> Cell:
        return self.cell(f"{BASE}/s{seed}")

    def training_owner(self, cell: Cell) -> Cell:
        """The first cell in plan order with the same train key: the one whose run holds the training."""
        if cell.ablation.search:
            return cell
        return next(c for c in self.cells if c.train_key == cell.train_key and not c.ablation.search)

    def teacher_cell(self, cell: Cell) -> Cell | None:
        """The cell of the same seed whose trained model `cell` starts from (None: trained from scratch)."""
        teacher = cell.config.train.teacher
        return self.cell(f"{teacher}/s{cell.seed}") if teacher is not None else None

    def teacher_chain(self, cell: Cell) -> list[Cell]:
        """The teachers of `cell`, nearest first (its teacher, the teacher's teacher, ...)."""
        chain: list[Cell] = []
        teacher = self.teacher_cell(cell)
        while teacher is not None:
            chain.append(teacher)
            teacher = self.teacher_cell(teacher)
        return chain

    def loss_comparable(self, cell: Cell) -> bool:
        """False when the cell changes a loss-defining field of its family (the dataset, the family itself,
        the family's own: ModelFamily.loss_defining_keys) relative to the base of its seed."""
        changed = diff_from(cell.config, self.base_cell(cell.seed).config)
        defining = family_class(cell.config.model.family).loss_defining_keys()
        return not any(k == d or (d.endswith(".") and k.startswith(d)) for k in changed for d in defining)

    def config_hash(self) -> str:
        """Digest of every cell's config as this process's schema validates it: a worker whose code reads
        the serialised plan into other configs (new fields, other defaults) gets another hash."""
        return digest({cell.name: cell.config.model_dump(mode="json") for cell in self.cells})

    def to_json(self) -> dict[str, Any]:
        """The whole plan as JSON-able data: every cell's resolved config and keys."""
        registry = self.registry
        return {
            "dataset": registry.dataset, "profile": registry.profile, "cli_set": list(registry.cli_set),
            "registry_path": str(registry.path), "ablations": [a.model_dump(mode="json") for a in registry.ablations],
            "cells": [{"ablation": c.ablation.name, "seed": c.seed, "config": c.config.model_dump(mode="json"),
                       "train_key": c.train_key, "eval_key": c.eval_key} for c in self.cells],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        """The plan as `to_json` wrote it (configs validated against this version's schema)."""
        registry = Registry(Path(data["registry_path"]), [Ablation.model_validate(a) for a in data["ablations"]],
                            data["dataset"], data["profile"], tuple(data["cli_set"]))
        cells = tuple(Cell(registry.get(c["ablation"]), c["seed"], Config.model_validate(c["config"]),
                           c["train_key"], c["eval_key"]) for c in data["cells"])
        return cls(registry, cells)


def seeds_of(seeds: int | Mapping[str, int], ablation: str) -> int:
    """The seeds a row runs: one number for every row, or per row (`--seeds auto`; missing rows: the most)."""
    return seeds if isinstance(seeds, int) else seeds.get(ablation, max(seeds.values()))


def _with_seed(config: Config, seed: int) -> Config:
    seeded = config.model_copy(deep=True)
    seeded.train.seed = seed
    return seeded


def _seeded_configs(registry: Registry, seeds: int | Mapping[str, int]) -> list[tuple[Ablation, int, Config]]:
    """Every (ablation, seed) and its config, in registry order then seed: the entry's config as
    `load_registry` resolved it, with the seed set.

    seeds: the same number for every row, or a number per row (seeds 0..n-1 each). Every model family
    named is built here on its entry's config, so a wrong `model.family` or a dataset the family cannot
    model stops the study before it starts."""
    counts = {a.name: seeds_of(seeds, a.name) for a in registry.ablations}
    if min(counts.values()) < 1:
        msg = f"--seeds must be at least 1, got {min(counts.values())}"
        raise ConfigError(msg)
    for ablation in registry.ablations:
        try:
            load_family(registry.configs[ablation.name])
        except ConfigError as err:
            msg = f"ablation {ablation.name!r}: {err}"
            raise ConfigError(msg) from err
    return [(ablation, seed, _with_seed(registry.configs[ablation.name], seed))
            for ablation in registry.ablations for seed in range(counts[ablation.name])]


def make_plan(registry: Registry, *, seeds: int | Mapping[str, int], checksums: dict[str, str]) -> Plan:
    """Every cell's config and keys from the registry's resolved entries (`_seeded_configs`); `checksums`
    are the data files' MD5s (file name -> md5)."""
    seeded = _seeded_configs(registry, seeds)
    keys = chained_train_keys(seeded, checksums)
    cells = tuple(Cell(ablation, seed, config, keys[(ablation.name, seed)],
                       _chained_eval_key(config, checksums, keys[(ablation.name, seed)]))
                  for ablation, seed, config in seeded)
    return Plan(registry, cells)


def _chained_eval_key(config: Config, checksums: dict[str, str], chained_train_key: str) -> str:
    """The eval key; a derived cell's also chains its teacher's training (through its chained train key)."""
    own = eval_key(config, checksums)
    return own if config.train.teacher is None else digest({"eval": own, "train": chained_train_key})


def chained_train_keys(resolved: list[tuple[Ablation, int, Config]],
                       checksums: dict[str, str]) -> dict[tuple[str, int], str]:
    """(ablation, seed) -> train key; a derived cell's key digests its own with its teacher's (same seed),
    so that a changed teacher changes the student's key. Raises ConfigError on a train.teacher (from a
    registry `from:` or a `--set`) that names no row of the plan, a search row, a row without that seed,
    or comes back to itself."""
    configs = {(ablation.name, seed): config for ablation, seed, config in resolved}
    searches = {ablation.name for ablation, _, _ in resolved if ablation.search}
    keys: dict[tuple[str, int], str] = {}
    for ablation, seed, _ in resolved:
        chain = teacher_names(ablation.name, seed, configs, searches)
        key = ""
        for name in reversed(chain):  # the root first: each key chains the one below it
            own = train_key(configs[(name, seed)], checksums)
            key = own if not key else digest({"own": own, "teacher": key})
            keys.setdefault((name, seed), key)
    return keys


def teacher_names(name: str, seed: int, configs: Mapping[tuple[str, int], Config], searches: set[str]) -> list[str]:
    """[name, its teacher, the teacher's teacher, ...] by train.teacher; ConfigError naming the key and the
    chain when a teacher is not a row of the plan with that seed, is a search, or the chain cycles."""
    chain = [name]
    while (teacher := configs[(chain[-1], seed)].train.teacher) is not None:
        where = f"row {name!r} seed {seed}: {TEACHER_KEY}={teacher!r} (chain {' -> '.join([*chain, teacher])})"
        if teacher in chain:
            msg = f"{where}: a cycle; a row cannot be derived from itself"
            raise ConfigError(msg)
        if (teacher, seed) not in configs:
            rows = sorted({n for n, s in configs if s == seed})
            msg = f"{where}: names no row of the plan with that seed (rows: {', '.join(rows)}); a registry " \
                  f"entry sets it with `from: <entry>`"
            raise ConfigError(msg)
        if teacher in searches:
            msg = f"{where}: names a search row, whose trainings are trials"
            raise ConfigError(msg)
        chain.append(teacher)
    return chain


def describe_difference(ablation: Ablation, config: Config, base: Config) -> list[str]:
    """Lines 'key: base value -> value' for `calo-ablate list` (plus the search range); train.teacher is
    left out (`list` prints the `from:` chain)."""
    lines = [f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff_from(config, base).items() if k != TEACHER_KEY]
    if config.sample.effective_steps != base.sample.effective_steps:
        lines.append(f"sampling steps: {base.sample.effective_steps} -> {config.sample.effective_steps}")
    if ablation.search:
        s = ablation.search
        lines.append(f"{s.param}: searched over [{s.low:g}, {s.high:g}]{' (log)' if s.log else ''}, "
                     f"{s.trials} trials, best by validation loss")
    return lines

