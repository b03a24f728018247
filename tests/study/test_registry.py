"""Registry validation (every kind of error, before anything runs) and the plan's shared trainings."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from calo_ablate.cli import main
from calo_ablate.commands import ui as ui_command
from calo_ablate.config import resolve_config
from calo_ablate.errors import ConfigError
from calo_ablate.study import registry as registry_module
from calo_ablate.study.plan import make_plan
from calo_ablate.study.registry import load_registry

CHECKSUMS = {"dataset_1_photons_1.hdf5": "a" * 32, "dataset_1_photons_2.hdf5": "b" * 32}


def _registry(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ablations.yaml"
    path.write_text("ablations:\n" + text)
    return path


@pytest.mark.parametrize(("entries", "expected"), [
    ("  base: {title: Base}\n  typo: {set: {train.lrr: 1.0e-3}}\n",
     ["ablation 'typo'", "unknown config key 'train.lrr'", "train.lr"]),
    ("  base: {title: Base}\n  badtype: {set: {model.voxel.block_depth: many}}\n",
     ["ablation 'badtype'", "model.voxel.block_depth", "valid integer"]),
    ("  base: {title: Base}\n  twice: {set: {train.lr: 1.0e-3}}\n  twice: {set: {train.lr: 2.0e-3}}\n",
     ["duplicate key 'twice'"]),
    ("  base: {title: Base}\n  a: {with: [b]}\n  b: {with: [a]}\n", ["ablation 'a'", "'with' cycle a -> b -> a"]),
    ("  base: {title: Base}\n  a: {with: [nope]}\n", ["ablation 'a'", "unknown ablation 'nope'"]),
    ("  base: {title: Base}\n  a: {sett: {train.lr: 1.0e-3}}\n", ["ablation 'a'", "unknown field(s) sett"]),
    ("  a: {set: {train.lr: 1.0e-3}}\n", ["needs an entry named 'base'"]),
    ("  base: {title: Base}\n  s: {search: {param: train.lr, low: 1.0e-3, high: 1.0e-4, trials: 2}}\n",
     ["ablation 's' search", "low < high"]),
    ("  base: {title: Base}\n  s: {search: {param: train.lrate, low: 1.0e-4, high: 1.0e-3, trials: 2}}\n",
     ["ablation 's' search", "unknown config key 'train.lrate'"]),
    ("  base: {title: Base}\n  nested: {set: {model: {voxel: {block_depth: 6}}}}\n", ["dotted keys"]),
    ("  base: {title: Base}\n  a: {from: b}\n  b: {from: a}\n", ["ablation 'a'", "'from' cycle a -> b -> a"]),
    ("  base: {title: Base}\n  a: {from: b}\n  b: {from: c}\n  c: {from: b}\n",
     ["ablation 'a'", "'from' cycle a -> b -> c -> b"]),
    ("  base: {title: Base}\n  a: {from: a}\n", ["ablation 'a'", "'from' cycle a -> a"]),
    ("  base: {title: Base}\n  reference: {set: {train.lr: 1.0e-3}}\n",
     ["ablation name 'reference' is reserved", "noise floor"]),
    ("  base: {title: Base}\n  a: {from: nope}\n", ["ablation 'a'", "'from' names unknown ablation 'nope'"]),
    ("  base: {from: a}\n  a: {title: A}\n", ["ablation 'base'", "the base takes only title, why and set"]),
    ("  base: {title: Base}\n  a: {from: [base]}\n", ["ablation 'a' from: expected the name of one ablation", "got ['base']"]),
    ("  base: {title: Base}\n  a: {set: {train.teacher: base}}\n",
     ["ablation 'a'", "'train.teacher' is set by the entry's `from: <entry>`"]),
    ("  base: {title: Base}\n  s: {search: {param: train.lr, low: 1.0e-4, high: 1.0e-3, trials: 2}}\n  a: {from: s}\n",
     ["ablation 'a'", "'from' names 's', a search"]),
])
def test_registry_errors_name_the_file_entry_and_problem(tmp_path: Path, entries: str, expected: list[str]) -> None:
    path = _registry(tmp_path, entries)
    with pytest.raises(ConfigError) as err:
        load_registry(path, dataset="1", profile="smoke")
    message = str(err.value)
    assert str(path) in message
    for part in expected:
        assert part in message


def test_with_combines_entries_in_order_then_own_set(tmp_path: Path) -> None:
    path = _registry(tmp_path, "  base: {set: {train.batch_size: 64}}\n  a: {set: {train.lr: 1.0e-3}}\n"
                               "  b: {set: {train.lr: 2.0e-3, model.voxel.block_depth: 6}}\n"
                               "  ab: {with: [a, b], set: {model.voxel.block_depth: 5}}\n")
    registry = load_registry(path, dataset="1", profile="smoke")
    assert registry.names() == ["base", "a", "b", "ab"]
    assert registry.get("ab").overrides == {"train.batch_size": 64, "train.lr": 2.0e-3, "model.voxel.block_depth": 5}
    assert registry.select(["b"]).names() == ["base", "b"]
    with pytest.raises(ConfigError, match="no ablation named 'c'"):
        registry.select(["c"])


def test_shipped_registry_has_the_seed_study_rows() -> None:
    registry = load_registry(dataset="1", profile="quick")
    assert [a.title for a in registry.ablations] == [
        "Base", "Removed U-Net sampling layers", "Increased U-Net residual layers",
        "Increased number of ResNet convolutional layers", "Increased learning rate", "Fewer time steps",
        "Decrease noise"]
    assert all(a.why for a in registry.ablations)


def test_plan_shares_the_base_training_and_marks_noise_changes() -> None:
    registry = load_registry(dataset="1", profile="quick")
    plan = make_plan(registry, seeds=2, checksums=CHECKSUMS)
    assert len(plan.cells) == 14
    for seed in (0, 1):
        base, fewer = plan.cell(f"base/s{seed}"), plan.cell(f"fewer_steps/s{seed}")
        assert fewer.train_key == base.train_key and fewer.eval_key != base.eval_key
        assert plan.training_owner(fewer) is base
        assert fewer.config.sample.effective_steps == base.config.sample.steps // 8
        assert plan.cell(f"no_unet_sampling/s{seed}").train_key != base.train_key
        assert not plan.loss_comparable(plan.cell(f"less_noise/s{seed}"))
        assert plan.loss_comparable(plan.cell(f"higher_lr/s{seed}"))
    assert plan.cell("base/s0").train_key != plan.cell("base/s1").train_key
    units = plan.units()
    assert len(units) == 12  # 14 cells, two of which reuse the base's training
    shared = next(u for u in units if u.key == plan.cell("base/s0").train_key)
    assert [c.name for c in shared.cells] == ["base/s0", "fewer_steps/s0"]


def test_each_entry_is_resolved_once_and_its_cells_are_its_config_with_their_seeds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(registry_module, "resolve_config", lambda *a, **k: calls.append(a) or resolve_config(*a, **k))
    cli_set = ["train.batch_size=32"]
    registry = load_registry(dataset="1", profile="smoke", cli_set=cli_set)
    plan = make_plan(registry, seeds={"base": 3, "higher_lr": 2}, checksums=CHECKSUMS)
    assert len(calls) == len(registry.ablations)  # not per cell, per search bound or for the base again
    assert plan.seeds == 3 and len(plan.cells) == 3 + 2 + 3 * (len(registry.ablations) - 2)
    for cell in plan.cells:
        assert cell.config == resolve_config("1", "smoke", cell.ablation.overrides, cli_set, cell.seed)


def test_list_prints_the_resolved_difference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--profile", "quick"]) == 0
    out = capsys.readouterr().out
    assert "model.voxel.widths: [32, 64, 96, 128] -> [128]" in out
    assert "model.diffusion.noise_scale: 1.0 -> 0.5" in out
    steps = resolve_config("1", "quick").sample.steps
    assert f"sampling steps: {steps} -> {round(steps / 8)}" in out


def test_list_stops_on_a_typo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _registry(tmp_path, "  base: {title: Base}\n  typo: {set: {model.voxel.widht: [128]}}\n")
    assert main(["list", "--registry", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'model.voxel.widht' is not a key of model family 'caloscore_v2'" in err and "model.voxel.widths" in err


def test_ui_serves_the_newest_study_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for age, name in ((100, "old"), (0, "new")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "mlflow.db").write_text("")
        os.utime(tmp_path / name / "mlflow.db", (time.time() - age, time.time() - age))
    calls = []
    monkeypatch.setattr(ui_command, "serve", lambda command: calls.append(command) or 0)
    assert main(["ui", "--results-dir", str(tmp_path), "--port", "5001"]) == 0
    assert calls[0][1:] == ["ui", "--backend-store-uri", f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}",
                            "--host", "127.0.0.1", "--port", "5001"]
    assert main(["ui", "--results-dir", str(tmp_path / "none")]) == 2
