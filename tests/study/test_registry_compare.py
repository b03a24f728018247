"""The registry's `compare:` field: validated against the registry, in no train or eval key, carried to
the parent run's rows tag; the few-step registry compares each distilled row with its naive row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calo_ablate.cli import main
from calo_ablate.config import experiments_dir
from calo_ablate.errors import ConfigError
from calo_ablate.study.plan import make_plan
from calo_ablate.study.registry import load_registry
from calo_ablate.study.runner import _rows_tag

CHECKSUMS = {"dataset_1_photons_1.hdf5": "a" * 32, "dataset_1_photons_2.hdf5": "b" * 32}
ROWS = """\
  naive: {title: Naive 2 steps, set: {sample.steps_factor: 0.25}}
  distilled:
    title: Distilled 2 steps
    from: base
    set: {model.diffusion.distill.enabled: true, model.diffusion.distill.steps: 2, sample.steps_factor: 0.25}
"""


def _registry(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ablations.yaml"
    path.write_text("ablations:\n  base: {title: Base}\n" + text)
    return path


@pytest.mark.parametrize(("entries", "expected"), [
    ("  a: {compare: nope}\n", ["ablation 'a'", "'compare' names unknown ablation 'nope'", "known: a, base"]),
    ("  a: {compare: a}\n", ["ablation 'a'", "'compare' names the entry itself"]),
    ("  a: {compare: reference}\n", ["ablation 'a'", "'compare' names 'reference', a reserved name"]),
    ("  s: {search: {param: train.lr, low: 1.0e-4, high: 1.0e-3, trials: 2}}\n  a: {compare: s}\n",
     ["ablation 'a'", "'compare' names 's', a search"]),
    ("  a: {compare: [base]}\n", ["ablation 'a' compare: expected the name of another ablation", "got ['base']"]),
])
def test_a_bad_compare_names_the_file_and_entry(tmp_path: Path, entries: str, expected: list[str]) -> None:
    path = _registry(tmp_path, entries)
    with pytest.raises(ConfigError) as err:
        load_registry(path, profile="smoke")
    assert str(path) in str(err.value)
    for part in expected:
        assert part in str(err.value)


def test_the_base_compares_with_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ablations.yaml"
    path.write_text("ablations:\n  base: {compare: a}\n  a: {title: A}\n")
    with pytest.raises(ConfigError, match="ablation 'base': the base takes only title, why and set"):
        load_registry(path, profile="smoke")


def test_compare_changes_no_train_or_eval_key(tmp_path: Path) -> None:
    plain = load_registry(_registry(tmp_path, ROWS), dataset="1", profile="smoke")
    compared = load_registry(_registry(tmp_path, ROWS.replace("from: base\n", "from: base\n    compare: naive\n")),
                             dataset="1", profile="smoke")
    assert compared.get("distilled").compare == "naive" and plain.get("distilled").compare is None
    before, after = (make_plan(r, seeds=2, checksums=CHECKSUMS) for r in (plain, compared))
    assert [(c.name, c.config, c.train_key, c.eval_key) for c in after.cells] == \
        [(c.name, c.config, c.train_key, c.eval_key) for c in before.cells]
    assert [u.key for u in after.units()] == [u.key for u in before.units()]


def test_the_rows_tag_carries_compare_only_where_set(tmp_path: Path) -> None:
    path = _registry(tmp_path, ROWS.replace("from: base\n", "from: base\n    compare: naive\n"))
    registry = load_registry(path, dataset="1", profile="smoke")
    assert json.loads(_rows_tag(registry)) == [
        {"name": "base", "title": "Base", "expect": {}},
        {"name": "naive", "title": "Naive 2 steps", "expect": {}},
        {"name": "distilled", "title": "Distilled 2 steps", "expect": {}, "compare": "naive"}]
    only = json.loads(_rows_tag(registry.select(["distilled"])))  # the compared row is not in the study
    assert [row.get("compare") for row in only] == [None, None]


def test_a_plan_read_back_keeps_compare(tmp_path: Path) -> None:
    registry = load_registry(_registry(tmp_path, ROWS.replace("from: base\n", "from: base\n    compare: naive\n")),
                             dataset="1", profile="smoke")
    plan = make_plan(registry, seeds=1, checksums=CHECKSUMS)
    again = type(plan).from_json(json.loads(json.dumps(plan.to_json())))
    assert again.registry.ablations == plan.registry.ablations
    assert again.cell("distilled/s0").ablation.compare == "naive"
    assert [(c.config, c.train_key) for c in again.cells] == [(c.config, c.train_key) for c in plan.cells]


def test_fewstep_compares_each_distilled_row_with_the_naive_row_of_its_steps(
        capsys: pytest.CaptureFixture[str]) -> None:
    path = experiments_dir() / "fewstep.yaml"
    registry = load_registry(path, dataset="1", profile="quick")
    compared = {a.name: a.compare for a in registry.ablations if a.compare is not None}
    assert compared == {f"distilled_{n}": f"naive_{n}" for n in (8, 4, 2, 1)}
    configs = registry.configs
    for student, naive in compared.items():
        assert configs[student].sample.effective_steps == configs[naive].sample.effective_steps
    assert main(["list", "--registry", str(path), "--profile", "quick"]) == 0
    assert "compare: naive_8" in capsys.readouterr().out
