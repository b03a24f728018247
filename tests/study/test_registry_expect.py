"""The registry's `expect:` field: validated like the other fields; the shipped registry carries the seed's findings."""

from __future__ import annotations

from pathlib import Path

import pytest

from calo_ablate.errors import ConfigError
from calo_ablate.study.registry import load_registry


def _registry(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ablations.yaml"
    path.write_text("ablations:\n  base: {title: Base}\n" + text)
    return path


@pytest.mark.parametrize(("entry", "expected"), [
    ("  a: {expect: {los: lower}}\n", ["ablation 'a' expect", "unknown aspect 'los'", "voxel_loss, layer_loss (the losses are its model family's)"]),
    ("  a: {expect: {loss: better}}\n", ["ablation 'a' expect", "loss: 'better' is not a direction", "lower, higher, same"]),
    ("  a: {expect: {quality: lower}}\n", ["quality: 'lower'", "better, worse, same"]),
    ("  a: {expect: [loss, lower]}\n", ["ablation 'a' expect", "expected a mapping of aspect to direction"]),
    ("  a: {expect: {}}\n", ["expected a mapping of aspect to direction"]),
])
def test_bad_expectations_name_entry_aspect_and_choices(tmp_path: Path, entry: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_registry(_registry(tmp_path, entry))
    for part in expected:
        assert part in str(err.value)


def test_the_base_takes_no_expectation(tmp_path: Path) -> None:
    path = tmp_path / "ablations.yaml"
    path.write_text("ablations:\n  base: {title: Base, expect: {loss: lower}}\n")
    with pytest.raises(ConfigError, match="the base is what every expectation compares with"):
        load_registry(path)


def test_expectations_are_read_in_order(tmp_path: Path) -> None:
    registry = load_registry(_registry(tmp_path, "  a: {set: {train.lr: 1.0e-3}, expect: {loss: lower, gen_time: same}}\n"))
    assert registry.get("a").expect == {"loss": "lower", "gen_time": "same"}
    assert registry.get("base").expect == {}


def test_shipped_registry_carries_the_seed_studys_findings() -> None:
    registry = load_registry()
    assert registry.get("higher_lr").expect == {"loss": "lower", "voxel_loss": "lower", "layer_loss": "lower"}
    assert registry.get("fewer_steps").expect == {"loss": "same", "gen_time": "lower"}
    assert registry.get("no_unet_sampling").expect["n_params"] == "lower"
    assert all(a.expect for a in registry.ablations if a.name != "base")
