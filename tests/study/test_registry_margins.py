"""The registry's `margins:` section: equivalence margins per aspect, validated, reaching the verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from calo_ablate.errors import ConfigError
from calo_ablate.report.verdicts import DEFAULT_MARGINS, parse_margin
from calo_ablate.study.registry import load_registry


def _registry(tmp_path: Path, margins: str) -> Path:
    path = tmp_path / "ablations.yaml"
    path.write_text("ablations:\n  base: {title: Base}\n  a: {set: {train.lr: 1.0e-3}}\n" + margins)
    return path


def test_margins_are_read_and_kept_by_select(tmp_path: Path) -> None:
    registry = load_registry(_registry(tmp_path, "margins: {loss: 2%, auc_high: 0.03}\n"))
    assert registry.margins == {"loss": "2%", "auc_high": 0.03}
    assert registry.select(["a"]).margins == registry.margins
    assert load_registry(_registry(tmp_path, "")).margins == {}


@pytest.mark.parametrize(("margins", "expected"), [
    ("margins: {los: 1%}\n", ["margins: unknown aspect 'los'", "loss, voxel_loss"]),
    ("margins: {loss: -1%}\n", ["margins: loss: margin '-1%': must be positive"]),
    ("margins: {loss: small}\n", ["margins: loss: margin 'small': expected a percentage"]),
    ("margins: [loss]\n", ["'margins' must map an aspect to a margin"]),
    ("margin: {loss: 1%}\n", ["expected the top-level key 'ablations'", "optionally 'margins'"]),
])
def test_bad_margins_name_the_file_key_and_value(tmp_path: Path, margins: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_registry(_registry(tmp_path, margins))
    assert str(tmp_path / "ablations.yaml") in str(err.value)
    for part in expected:
        assert part in str(err.value)


def test_every_default_margin_parses() -> None:
    assert parse_margin("1%") == (0.01, True) and parse_margin(0.02) == (0.02, False)
    for spec in DEFAULT_MARGINS.values():
        assert parse_margin(spec)[0] > 0
