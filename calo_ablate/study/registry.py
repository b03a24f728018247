"""The ablation registry (experiments/ablations.yaml): named override sets relative to the base.

Format:

    ablations:
      base:            {title: Base, why: ...}                    # required, first row of the report
      <name>:
        title: <row title>                                        # default: the name
        why: <one line shown by `calo-ablate list` and the report>
        with: [<other entry>, ...]                                # applied in order, before `set`
        from: <other entry>                                       # a derived training: starts, per seed, from
                                                                  # that entry's trained model (train.teacher)
        set: {<dotted config key>: <value>, ...}                  # the modification itself
        search: {param: <dotted key>, low: <x>, high: <y>, log: <bool>, trials: <n>}
        expect: {<aspect>: <direction>, ...}                      # what the report checks (EXPECT_ASPECTS)
    margins:                                                      # optional: equivalence margins
      <aspect or metric>: <"x%" of the base's mean, or a number>  # over report/verdicts.DEFAULT_MARGINS

Every entry starts from the base entry's `set` (so a base override reaches every row), then the
`set` of each `with:` entry in order (recursively), then its own `set`. Everything is validated
before anything runs: unknown fields, unknown or duplicate names, `with:` cycles, unknown config keys
(with the nearest valid keys) and wrong value types, each as a ConfigError naming file and entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from calo_ablate.config import Config, experiments_dir, resolve_config
from calo_ablate.errors import ConfigError
from calo_ablate.model.families import family_class
from calo_ablate.report.verdicts import DEFAULT_MARGINS, parse_margin
from calo_ablate.runs import record
from calo_ablate.runs.record import BASE

ENTRY_FIELDS = ("title", "why", "set", "with", "from", "search", "expect")
TEACHER_KEY = "train.teacher"  # set from an entry's `from:` only
SEARCH_FIELDS = ("param", "low", "high", "log", "trials")
# aspect of a row -> the directions an expectation may name (compared with the base by the report)
_AMOUNT = ("lower", "higher", "same")
EXPECT_ASPECTS: dict[str, tuple[str, ...]] = {
    "loss": _AMOUNT, "n_params": _AMOUNT, "s_per_epoch": _AMOUNT, "gen_time": _AMOUNT,
    "quality": ("better", "worse", "same"),
}
# besides: any loss of the row's model family (its loss_names: voxel_loss, layer_loss for CaloScore v2)


@dataclass(frozen=True)
class Search:
    """An Optuna search over one numeric config key inside an ablation (float or int range)."""

    param: str
    low: float
    high: float
    log: bool
    trials: int


@dataclass(frozen=True)
class Ablation:
    """One registry entry, resolved: `overrides` is the full dotted override set it applies."""

    name: str
    title: str
    why: str
    overrides: dict[str, Any] = field(default_factory=dict)
    search: Search | None = None
    expect: dict[str, str] = field(default_factory=dict)

    @property
    def teacher(self) -> str | None:
        """The entry this one's training starts from (its `from:`, kept as train.teacher), or None."""
        return self.overrides.get(TEACHER_KEY)


@dataclass(frozen=True)
class Registry:
    path: Path
    ablations: list[Ablation]  # registry order, base first
    margins: dict[str, float | str] = field(default_factory=dict)  # the `margins:` section (validated)

    def names(self) -> list[str]:
        return [a.name for a in self.ablations]

    def get(self, name: str) -> Ablation:
        for ablation in self.ablations:
            if ablation.name == name:
                return ablation
        msg = f"{self.path}: no ablation named '{name}'; known: {', '.join(self.names())}"
        raise ConfigError(msg)

    def teacher_chain(self, name: str) -> list[str]:
        """The entries `name` is derived from, nearest first: ['d8', 'base'] for d4 (from: d8, d8 from: base)."""
        chain: list[str] = []
        teacher = self.get(name).teacher
        while teacher is not None:
            chain.append(teacher)
            teacher = self.get(teacher).teacher
        return chain

    def select(self, only: list[str] | None) -> Registry:
        """The base plus the named entries and the entries they are derived from (`from:`), in registry
        order (unknown names raise)."""
        if not only:
            return self
        keep = {BASE}
        for name in only:
            keep.update([name, *self.teacher_chain(name)])
        return Registry(self.path, [a for a in self.ablations if a.name in keep], self.margins)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping with the same key twice (PyYAML silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                line = key_node.start_mark.line + 1
                msg = f"duplicate key '{key}' at line {line} (first at line {seen[key]})"
                raise yaml.constructor.ConstructorError(None, None, msg, key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def default_registry_path() -> Path:
    return experiments_dir() / "ablations.yaml"


def _load_yaml(path: Path) -> tuple[dict[str, Any], Any]:
    """(the `ablations` mapping, the raw `margins` section or None)."""
    if not path.is_file():
        msg = f"registry not found: {path}"
        raise ConfigError(msg)
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        msg = f"{path}: {err}"
        raise ConfigError(msg) from None
    if not isinstance(data, dict) or not set(data) <= {"ablations", "margins"} \
            or not isinstance(data.get("ablations"), dict):
        msg = (f"{path}: expected the top-level key 'ablations' holding a mapping of named entries "
               "(and optionally 'margins')")
        raise ConfigError(msg)
    return data["ablations"], data.get("margins")


def _check_margins(path: Path, raw: Any) -> dict[str, float | str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        msg = f"{path}: 'margins' must map an aspect to a margin, e.g. {{loss: 1%, auc_high: 0.02}}, got {raw!r}"
        raise ConfigError(msg)
    for key, value in raw.items():
        if key not in DEFAULT_MARGINS:
            msg = f"{path}: margins: unknown aspect {key!r}; expected any of {', '.join(DEFAULT_MARGINS)}"
            raise ConfigError(msg)
        try:
            parse_margin(value)
        except ValueError as err:
            msg = f"{path}: margins: {key}: {err}"
            raise ConfigError(msg) from None
    return {str(k): v for k, v in raw.items()}


def _check_entry(path: Path, name: Any, raw: Any, names: set[str]) -> None:
    where = f"{path}: ablation '{name}'"
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        msg = f"{path}: ablation name {name!r} must be a string of letters, digits, '_' or '-'"
        raise ConfigError(msg)
    if name in record.RESERVED_NAMES:
        msg = (f"{path}: ablation name {name!r} is reserved (the noise floor's cells and samples use it); "
               "choose another name")
        raise ConfigError(msg)
    if raw is None:
        return
    if not isinstance(raw, dict):
        msg = f"{where}: expected a mapping with fields {', '.join(ENTRY_FIELDS)}, got {type(raw).__name__}"
        raise ConfigError(msg)
    unknown = sorted(set(raw) - set(ENTRY_FIELDS))
    if unknown:
        msg = f"{where}: unknown field(s) {', '.join(map(str, unknown))}; expected any of {', '.join(ENTRY_FIELDS)}"
        raise ConfigError(msg)
    for text_field in ("title", "why"):
        if text_field in raw and not isinstance(raw[text_field], str):
            msg = f"{where}: '{text_field}' must be a string, got {raw[text_field]!r}"
            raise ConfigError(msg)
    if "set" in raw and not isinstance(raw["set"], dict):
        msg = f"{where}: 'set' must be a mapping of dotted config keys to values, got {raw['set']!r}"
        raise ConfigError(msg)
    if isinstance(raw.get("set"), dict):
        nested = [k for k, v in raw["set"].items() if isinstance(v, dict)]
        if nested:
            msg = f"{where}: 'set' takes dotted keys (e.g. model.voxel.block_depth: 6), not nested sections: {nested}"
            raise ConfigError(msg)
        if TEACHER_KEY in raw["set"]:
            msg = f"{where}: set: '{TEACHER_KEY}' is set by the entry's `from: <entry>`, not in 'set'"
            raise ConfigError(msg)
    if "with" in raw:
        with_ = raw["with"]
        if not isinstance(with_, list) or not all(isinstance(w, str) for w in with_):
            msg = f"{where}: 'with' must be a list of ablation names, got {with_!r}"
            raise ConfigError(msg)
        for other in with_:
            if other not in names:
                msg = f"{where}: 'with' names unknown ablation '{other}'; known: {', '.join(sorted(names))}"
                raise ConfigError(msg)
            if other == BASE:
                msg = f"{where}: 'with: [base]' is implicit; every entry starts from the base"
                raise ConfigError(msg)
    if "from" in raw and not isinstance(raw["from"], str):
        msg = f"{where}: 'from' must be the name of one ablation, got {raw['from']!r}"
        raise ConfigError(msg)
    if "from" in raw and "search" in raw:
        msg = f"{where}: a derived training ('from') cannot also search"
        raise ConfigError(msg)
    if "from" in raw and raw["from"] not in names:
        msg = f"{where}: 'from' names unknown ablation {raw['from']!r}; known: {', '.join(sorted(names))}"
        raise ConfigError(msg)
    if name == BASE and ("with" in raw or "search" in raw or "from" in raw):
        msg = f"{where}: the base takes only title, why and set"
        raise ConfigError(msg)


def _check_search(path: Path, name: str, raw: Any) -> Search:
    where = f"{path}: ablation '{name}' search"
    if not isinstance(raw, dict):
        msg = f"{where}: expected a mapping with {', '.join(SEARCH_FIELDS)}"
        raise ConfigError(msg)
    unknown = sorted(set(raw) - set(SEARCH_FIELDS))
    missing = sorted({"param", "low", "high", "trials"} - set(raw))
    if unknown or missing:
        msg = f"{where}: unknown field(s) {unknown}, missing {missing}; expected {', '.join(SEARCH_FIELDS)}"
        raise ConfigError(msg)
    low, high, trials, log = raw["low"], raw["high"], raw["trials"], raw.get("log", False)
    numeric = (int, float)
    if not isinstance(raw["param"], str):
        msg = f"{where}: 'param' must be a dotted config key, got {raw['param']!r}"
        raise ConfigError(msg)
    if not (isinstance(low, numeric) and isinstance(high, numeric)) or isinstance(low, bool) or low >= high:
        msg = f"{where}: expected numbers low < high, got low={low!r}, high={high!r}"
        raise ConfigError(msg)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        msg = f"{where}: 'trials' must be a positive integer, got {trials!r}"
        raise ConfigError(msg)
    if not isinstance(log, bool) or (log and low <= 0):
        msg = f"{where}: 'log' must be true or false, and a log range needs low > 0 (got log={log!r}, low={low})"
        raise ConfigError(msg)
    if not all(math.isfinite(x) for x in (low, high)):
        msg = f"{where}: low and high must be finite"
        raise ConfigError(msg)
    return Search(raw["param"], float(low), float(high), log, trials)


def _check_expect(path: Path, name: str, raw: Any, loss_names: tuple[str, ...]) -> dict[str, str]:
    """The entry's `expect:`: aspects of EXPECT_ASPECTS or losses of its model family (`loss_names`)."""
    where = f"{path}: ablation '{name}' expect"
    if name == BASE:
        msg = f"{where}: the base is what every expectation compares with; it takes none"
        raise ConfigError(msg)
    if not isinstance(raw, dict) or not raw:
        msg = f"{where}: expected a mapping of aspect to direction, e.g. {{loss: lower, s_per_epoch: same}}"
        raise ConfigError(msg)
    for aspect, direction in raw.items():
        if aspect not in EXPECT_ASPECTS and aspect not in loss_names:
            valid = [*EXPECT_ASPECTS, *(n for n in loss_names if n not in EXPECT_ASPECTS)]
            msg = f"{where}: unknown aspect {aspect!r}; expected any of {', '.join(valid)} (the losses are its " \
                  f"model family's)"
            raise ConfigError(msg)
        directions = EXPECT_ASPECTS.get(aspect, _AMOUNT)
        if direction not in directions:
            msg = f"{where}: {aspect}: {direction!r} is not a direction; expected one of {', '.join(directions)}"
            raise ConfigError(msg)
    return {str(k): str(v) for k, v in raw.items()}


def _overrides(name: str, entries: dict[str, dict[str, Any]], stack: tuple[str, ...], path: Path) -> dict[str, Any]:
    """The entry's own override set after its `with:` entries (recursively), without the base."""
    if name in stack:
        cycle = " -> ".join([*stack[stack.index(name):], name])
        msg = f"{path}: ablation '{stack[0]}': 'with' cycle {cycle}"
        raise ConfigError(msg)
    merged: dict[str, Any] = {}
    for other in entries[name].get("with", []):
        merged.update(_overrides(other, entries, (*stack, name), path))
    merged.update(entries[name].get("set") or {})
    return merged


def _check_teachers(path: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Refuse a `from:` chain that comes back to where it started (a -> b -> a)."""
    for start, entry in entries.items():
        teacher = entry.get("from")
        if teacher is not None and "search" in entries[teacher]:
            msg = f"{path}: ablation '{start}': 'from' names '{teacher}', a search, whose trainings are trials"
            raise ConfigError(msg)
        chain = [start]
        while "from" in entries[chain[-1]]:
            chain.append(entries[chain[-1]]["from"])
            if chain[-1] in chain[:-1]:
                msg = f"{path}: ablation '{start}': 'from' cycle {' -> '.join(chain)}"
                raise ConfigError(msg)


def _check_config(path: Path, name: str, overrides: dict[str, Any], dataset: str, profile: str) -> Config:
    """Validate the entry's overrides against the schema, on top of a real dataset + profile config."""
    try:
        return resolve_config(dataset, profile, ablation_set=overrides)
    except ConfigError as err:
        msg = str(err).replace("ablation set:", f"{path}: ablation '{name}' set:", 1)
        raise ConfigError(msg) from None


def load_registry(path: Path | str | None = None, *, dataset: str = "1", profile: str = "quick") -> Registry:
    """Read and validate every entry (against `dataset` + `profile`); raises ConfigError on the first problem."""
    path = Path(path) if path else default_registry_path()
    raw_entries, raw_margins = _load_yaml(path)
    margins = _check_margins(path, raw_margins)
    names = {str(n) for n in raw_entries}
    if BASE not in raw_entries:
        msg = f"{path}: the registry needs an entry named '{BASE}' (the reference row)"
        raise ConfigError(msg)
    entries: dict[str, dict[str, Any]] = {}
    for name, raw in raw_entries.items():
        _check_entry(path, name, raw, names)
        entries[name] = dict(raw or {})
    _check_teachers(path, entries)
    order = [BASE, *[n for n in entries if n != BASE]]
    base_set = dict(entries[BASE].get("set") or {})
    ablations = []
    for name in order:
        overrides = {**base_set, **(_overrides(name, entries, (), path) if name != BASE else {})}
        if "from" in entries[name]:
            overrides[TEACHER_KEY] = entries[name]["from"]
        try:
            config = _check_config(path, name, overrides, dataset, profile)
        except ConfigError as err:
            text = str(err)
            prefix = f"{path}: ablation '{name}'"
            raise ConfigError(text if text.startswith(prefix) else f"{prefix}: {text}") from None
        search = _check_search(path, name, entries[name]["search"]) if "search" in entries[name] else None
        if search is not None:
            for value in (search.low, search.high):
                probe = {**overrides, search.param: int(value) if value.is_integer() else value}
                try:
                    _check_config(path, name, probe, dataset, profile)
                except ConfigError as err:
                    msg = f"{path}: ablation '{name}' search over '{search.param}': {err}"
                    raise ConfigError(msg) from None
        entry = entries[name]
        loss_names = family_class(config.model.family).loss_names
        expect = _check_expect(path, name, entry["expect"], loss_names) if "expect" in entry else {}
        ablations.append(Ablation(name, entry.get("title", name), entry.get("why", ""), overrides, search, expect))
    return Registry(path, ablations, margins)


def search_is_int(config: Config, search: Search) -> bool:
    """Whether the searched config field holds an integer (then the search suggests integers)."""
    current: Any = config.model_dump()
    for part in search.param.split("."):
        current = current[part]
    return isinstance(current, int) and not isinstance(current, bool)

