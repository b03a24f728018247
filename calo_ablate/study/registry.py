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
        compare: <other entry>                                    # the report also compares the two rows
                                                                  # seed by seed (in no train or eval key)
    margins:                                                      # optional: equivalence margins
      <aspect or metric>: <"x%" of the base's mean, or a number>  # over report/verdicts.DEFAULT_MARGINS

Every entry starts from the base entry's `set` (so a base override reaches every row), then the
`set` of each `with:` entry in order (recursively), then its own `set`. Everything is validated
before anything runs: each entry's fields by the pydantic model Entry (unknown fields, wrong types),
then the names it gives (unknown or duplicate names, `with:` and `from:` cycles, `compare:`), then its
config, resolved once here (unknown config keys with the nearest valid keys, wrong value types), each
as a ConfigError naming the file, the entry and the key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from calo_ablate.config import Config, canonical_dataset, experiments_dir, resolve_config, with_value
from calo_ablate.errors import ConfigError
from calo_ablate.model.families import family_class
from calo_ablate.report.verdicts import DEFAULT_MARGINS, parse_margin
from calo_ablate.runs.names import BASE, RESERVED_NAMES

TEACHER_KEY = "train.teacher"  # set from an entry's `from:` only
# aspect of a row -> the directions an expectation may name (compared with the base by the report)
_AMOUNT = ("lower", "higher", "same")
EXPECT_ASPECTS: dict[str, tuple[str, ...]] = {
    "loss": _AMOUNT, "n_params": _AMOUNT, "s_per_epoch": _AMOUNT, "gen_time": _AMOUNT,
    "quality": ("better", "worse", "same"),
}
# besides: any loss of the row's model family (its loss_names: voxel_loss, layer_loss for CaloScore v2)


class _Strict(BaseModel):
    """A registry section as written: no unknown fields, no coercion (a quoted '2' is not a number)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class Search(_Strict):
    """An Optuna search over one numeric config key inside an ablation (float or int range)."""

    param: str = Field(description="a dotted config key")
    low: float = Field(allow_inf_nan=False, description="a finite number, the range's lower end")
    high: float = Field(allow_inf_nan=False, description="a finite number, the range's upper end")
    log: bool = Field(False, description="true or false (a log-uniform range)")
    trials: int = Field(ge=1, description="a positive integer, the number of trainings")

    @model_validator(mode="after")
    def _ordered_range(self) -> Search:
        if self.low >= self.high:
            msg = f"expected numbers low < high, got low={self.low:g}, high={self.high:g}"
            raise ValueError(msg)
        if self.log and self.low <= 0:
            msg = f"a log range needs low > 0 (got low={self.low:g})"
            raise ValueError(msg)
        return self


class Entry(_Strict):
    """One entry of `ablations:` as written (the names it gives are checked against the registry later)."""

    title: str | None = Field(None, description="a string, the report row's title (default: the name)")
    why: str = Field("", description="a string, one line shown by `calo-ablate list` and the report")
    set_: dict[str, Any] = Field(default_factory=dict, alias="set",
                                 description="a mapping of dotted config keys to values")
    with_: list[str] = Field(default_factory=list, alias="with",
                             description="a list of ablation names, applied in order before `set`")
    from_: str | None = Field(None, alias="from", description="the name of one ablation, whose trained model "
                                                               "(per seed) this entry's training starts from")
    search: Search | None = Field(None, description="a mapping with param, low, high, log (optional), trials")
    expect: dict[str, str] = Field(default_factory=dict, min_length=1,
                                   description="a mapping of aspect to direction, e.g. "
                                               "{loss: lower, s_per_epoch: same}")
    compare: str | None = Field(None, description="the name of another ablation, which the report compares "
                                                  "with this one seed by seed")

    @field_validator("set_")
    @classmethod
    def _dotted_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        nested = [k for k, v in value.items() if isinstance(v, dict)]
        if nested:
            msg = f"takes dotted keys (e.g. model.voxel.block_depth: 6), not nested sections: {nested}"
            raise ValueError(msg)
        if TEACHER_KEY in value:
            msg = f"'{TEACHER_KEY}' is set by the entry's `from: <entry>`, not in 'set'"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _derived_trains_once(self) -> Entry:
        if self.from_ is not None and self.search is not None:
            msg = "a derived training ('from') cannot also search"
            raise ValueError(msg)
        return self


class Ablation(BaseModel):
    """One registry entry, resolved: `overrides` is the full dotted override set it applies."""

    model_config = ConfigDict(frozen=True)

    name: str
    title: str
    why: str
    overrides: dict[str, Any] = Field(default_factory=dict)
    search: Search | None = None
    expect: dict[str, str] = Field(default_factory=dict)
    compare: str | None = None  # the row the report compares with this one seed by seed; in no key

    @property
    def teacher(self) -> str | None:
        """The entry this one's training starts from (its `from:`, kept as train.teacher), or None."""
        return self.overrides.get(TEACHER_KEY)


@dataclass(frozen=True)
class Registry:
    path: Path
    ablations: list[Ablation]  # registry order, base first
    dataset: str  # what the entries were resolved against: the dataset, the profile, the --set options
    profile: str
    cli_set: tuple[str, ...] = ()
    margins: dict[str, float | str] = field(default_factory=dict)  # the `margins:` section (validated)
    # each entry's config, resolved once by load_registry (its seed: the files'); empty in a plan read back
    # from JSON, whose cells carry theirs
    configs: dict[str, Config] = field(default_factory=dict)

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
        order (unknown names raise). A `compare:` row is not brought along."""
        if not only:
            return self
        keep = {BASE}
        for name in only:
            keep.update([name, *self.teacher_chain(name)])
        return Registry(self.path, [a for a in self.ablations if a.name in keep], self.dataset, self.profile,
                        self.cli_set, self.margins, {n: c for n, c in self.configs.items() if n in keep})


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


def _check_name(path: Path, name: Any) -> None:
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        msg = f"{path}: ablation name {name!r} must be a string of letters, digits, '_' or '-'"
        raise ConfigError(msg)
    if name in RESERVED_NAMES:
        msg = (f"{path}: ablation name {name!r} is reserved (the noise floor's cells and samples use it); "
               "choose another name")
        raise ConfigError(msg)


def _field_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _field_at(loc: tuple[int | str, ...]) -> tuple[list[str], FieldInfo | None, type[BaseModel] | None]:
    """The keys of an error's `loc` that name fields of Entry (['search', 'low'] of ('search', 'low'), ['with']
    of ('with', 0)), the innermost of those fields, and the model reached (Search in 'search', else None)."""
    keys: list[str] = []
    info: FieldInfo | None = None
    current: type[BaseModel] | None = Entry
    for part in loc:
        fields = {i.alias or n: i for n, i in current.model_fields.items()} if current else {}
        if part not in fields:
            break
        keys.append(str(part))
        info = fields[str(part)]
        current = next((t for t in (info.annotation, *get_args(info.annotation))
                        if isinstance(t, type) and issubclass(t, BaseModel)), None)
    return keys, info, current


def _value_at(raw: Any, keys: list[str]) -> Any:
    for key in keys:
        raw = raw[key]
    return raw


def _entry_error(where: str, raw: Any, err: ValidationError) -> ConfigError:
    """pydantic's errors of one entry as a ConfigError: per key, what is wrong and what was expected."""
    problems: dict[str, list[str]] = {}  # key ('' for the entry as a whole) -> what is wrong there
    for error in err.errors():
        keys, info, model = _field_at(error["loc"])
        key = ".".join(keys)
        if error["type"] == "extra_forbidden" and model is not None:
            unknown = [str(e["loc"][-1]) for e in err.errors() if e["type"] == "extra_forbidden"
                       and _field_at(e["loc"])[0] == keys]
            text = f"unknown field(s) {', '.join(unknown)}; expected any of {', '.join(_field_names(model))}"
            if text not in problems.get(key, []):
                problems.setdefault(key, []).append(text)
        elif error["type"] == "missing":
            problems.setdefault(".".join(keys[:-1]), []).append(f"missing field '{keys[-1]}'")
        elif error["type"] == "value_error":
            problems.setdefault(key, []).append(str(error["ctx"]["error"]))
        elif info is None:
            problems.setdefault("", []).append(f"expected a mapping with fields {', '.join(_field_names(Entry))}, "
                                               f"got {type(raw).__name__}")
        else:
            problems.setdefault(key, []).append(f"expected {info.description}, got {_value_at(raw, keys)!r}")
    text = "; ".join(f"{key}: {'; '.join(texts)}" if key else "; ".join(texts) for key, texts in problems.items())
    # "ablation 's' search.low: ..." for a problem of a key, "ablation 'a': ..." for one of the whole entry
    return ConfigError(f"{where}: {text}" if "" in problems else f"{where} {text}")


def _parse_entry(path: Path, name: str, raw: Any) -> Entry:
    try:
        return Entry.model_validate(raw if raw is not None else {})
    except ValidationError as err:
        raise _entry_error(f"{path}: ablation '{name}'", raw, err) from None


def _check_names_given(path: Path, entries: dict[str, Entry]) -> None:
    """The names each entry gives (`with:`, `from:`, `compare:`) against the registry, and the base's fields."""
    known = ", ".join(sorted(entries))
    for name, entry in entries.items():
        where = f"{path}: ablation '{name}'"
        if name == BASE and (entry.with_ or entry.from_ or entry.search or entry.compare):
            msg = f"{where}: the base takes only title, why and set"
            raise ConfigError(msg)
        if name == BASE and entry.expect:
            msg = f"{where} expect: the base is what every expectation compares with; it takes none"
            raise ConfigError(msg)
        for other in entry.with_:
            if other not in entries:
                msg = f"{where}: 'with' names unknown ablation '{other}'; known: {known}"
                raise ConfigError(msg)
            if other == BASE:
                msg = f"{where}: 'with: [base]' is implicit; every entry starts from the base"
                raise ConfigError(msg)
        if entry.from_ is not None and entry.from_ not in entries:
            msg = f"{where}: 'from' names unknown ablation {entry.from_!r}; known: {known}"
            raise ConfigError(msg)
        if entry.from_ is not None and entries[entry.from_].search is not None:
            msg = f"{where}: 'from' names '{entry.from_}', a search, whose trainings are trials"
            raise ConfigError(msg)
        if entry.compare is not None:
            _check_compare(where, name, entry.compare, entries)


def _check_compare(where: str, name: str, other: str, entries: dict[str, Entry]) -> None:
    """`compare:` names another entry of this registry that is not a search."""
    if other in RESERVED_NAMES:
        msg = f"{where}: 'compare' names {other!r}, a reserved name (the noise floor's), not an entry"
        raise ConfigError(msg)
    if other == name:
        msg = f"{where}: 'compare' names the entry itself; name another row to compare it with seed by seed"
        raise ConfigError(msg)
    if other not in entries:
        msg = f"{where}: 'compare' names unknown ablation {other!r}; known: {', '.join(sorted(entries))}"
        raise ConfigError(msg)
    if entries[other].search is not None:
        msg = (f"{where}: 'compare' names '{other}', a search, whose cells are each the best of its trials, "
               "not one training per seed to pair with")
        raise ConfigError(msg)


def _check_teachers(path: Path, entries: dict[str, Entry]) -> None:
    """Refuse a `from:` chain that comes back to where it started (a -> b -> a)."""
    for start in entries:
        chain = [start]
        while (teacher := entries[chain[-1]].from_) is not None:
            chain.append(teacher)
            if chain[-1] in chain[:-1]:
                msg = f"{path}: ablation '{start}': 'from' cycle {' -> '.join(chain)}"
                raise ConfigError(msg)


def _own_overrides(name: str, entries: dict[str, Entry], stack: tuple[str, ...], path: Path) -> dict[str, Any]:
    """The entry's own override set after its `with:` entries (recursively), without the base."""
    if name in stack:
        cycle = " -> ".join([*stack[stack.index(name):], name])
        msg = f"{path}: ablation '{stack[0]}': 'with' cycle {cycle}"
        raise ConfigError(msg)
    merged: dict[str, Any] = {}
    for other in entries[name].with_:
        merged.update(_own_overrides(other, entries, (*stack, name), path))
    merged.update(entries[name].set_)
    return merged


def _overrides(name: str, entries: dict[str, Entry], path: Path) -> dict[str, Any]:
    """The base's `set`, then the entry's `with:` entries and its own `set`; its `from:` as train.teacher."""
    overrides = {**entries[BASE].set_, **(_own_overrides(name, entries, (), path) if name != BASE else {})}
    if entries[name].from_ is not None:
        overrides[TEACHER_KEY] = entries[name].from_
    return overrides


def _resolve(where: str, overrides: dict[str, Any], dataset: str, profile: str, cli_set: Sequence[str]) -> Config:
    """The entry's config: its overrides on top of the dataset and profile files, then the --set options."""
    try:
        return resolve_config(dataset, profile, ablation_set=overrides, cli_set=list(cli_set))
    except ConfigError as err:
        text = str(err).replace("ablation set:", f"{where} set:", 1)
        raise ConfigError(text if text.startswith(where) else f"{where}: {text}") from None


def _check_search(where: str, config: Config, search: Search) -> None:
    """Both ends of the range, set on the entry's config, must be valid values of the searched key."""
    for value in (search.low, search.high):
        try:
            with_value(config, search.param, int(value) if value.is_integer() else value)
        except ConfigError as err:
            msg = f"{where} search over '{search.param}': {err}"
            raise ConfigError(msg) from None


def _check_expect(where: str, expect: dict[str, str], loss_names: tuple[str, ...]) -> None:
    """The entry's `expect:`: aspects of EXPECT_ASPECTS or losses of its model family (`loss_names`)."""
    for aspect, direction in expect.items():
        if aspect not in EXPECT_ASPECTS and aspect not in loss_names:
            valid = [*EXPECT_ASPECTS, *(n for n in loss_names if n not in EXPECT_ASPECTS)]
            msg = f"{where} expect: unknown aspect {aspect!r}; expected any of {', '.join(valid)} (the losses " \
                  f"are its model family's)"
            raise ConfigError(msg)
        directions = EXPECT_ASPECTS.get(aspect, _AMOUNT)
        if direction not in directions:
            msg = f"{where} expect: {aspect}: {direction!r} is not a direction; expected one of {', '.join(directions)}"
            raise ConfigError(msg)


def load_registry(path: Path | str | None = None, *, dataset: str = "1", profile: str = "quick",
                  cli_set: Sequence[str] = ()) -> Registry:
    """Read and validate every entry and resolve its config once (against `dataset`, `profile` and the
    --set options `cli_set`); raises ConfigError on the first problem."""
    path = Path(path) if path else default_registry_path()
    dataset = canonical_dataset(dataset)
    raw_entries, raw_margins = _load_yaml(path)
    margins = _check_margins(path, raw_margins)
    for name in raw_entries:
        _check_name(path, name)
    if BASE not in raw_entries:
        msg = f"{path}: the registry needs an entry named '{BASE}' (the reference row)"
        raise ConfigError(msg)
    entries = {name: _parse_entry(path, name, raw) for name, raw in raw_entries.items()}
    _check_names_given(path, entries)
    _check_teachers(path, entries)
    ablations, configs = [], {}
    for name in [BASE, *[n for n in entries if n != BASE]]:
        entry, where = entries[name], f"{path}: ablation '{name}'"
        overrides = _overrides(name, entries, path)
        configs[name] = _resolve(where, overrides, dataset, profile, cli_set)
        if entry.search is not None:
            _check_search(where, configs[name], entry.search)
        _check_expect(where, entry.expect, family_class(configs[name].model.family).loss_names)
        title = name if entry.title is None else entry.title
        ablations.append(Ablation(name=name, title=title, why=entry.why, overrides=overrides, search=entry.search,
                                  expect=entry.expect, compare=entry.compare))
    return Registry(path, ablations, dataset, profile, tuple(cli_set), margins, configs)


def search_is_int(config: Config, search: Search) -> bool:
    """Whether the searched config field holds an integer (then the search suggests integers)."""
    current: Any = config.model_dump()
    for part in search.param.split("."):
        current = current[part]
    return isinstance(current, int) and not isinstance(current, bool)
