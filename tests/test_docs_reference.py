"""The docs' configuration reference (docs/hooks/config_reference.py): every config key has a description,
and a key without one is named in the error that stops `make docs`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

HOOK = Path(__file__).resolve().parents[1] / "docs" / "hooks" / "config_reference.py"


def _hook():
    spec = importlib.util.spec_from_file_location("config_reference", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_config_key_has_a_description() -> None:
    hook = _hook()
    text = hook.config_reference()  # raises MissingDescription naming the keys otherwise
    for key in ("data.dataset", "train.lr", "evaluate.classifier.hidden", "trainer.threads",
                "model.voxel.widths", "model.diffusion.noise_scale", "model.glam", "model.flow1.schedule.kind",
                "model.student.beta", "model.options"):
        assert f"| `{key}` |" in text
    from calo_ablate.config import valid_keys
    for family in ("caloscore_v2", "calodiffusion", "caloflow"):
        for key in valid_keys(family):
            assert f"| `{key}` |" in text, key


def test_a_key_without_description_is_named() -> None:
    hook = _hook()

    class Inner(BaseModel):
        described: int = Field(1, description="has one")
        bare: float = 0.5

    class Outer(BaseModel):
        inner: Inner = Field(default_factory=Inner)
        flag: bool = True

    rows = hook.walk(Outer, "section")
    assert hook.missing_descriptions(rows) == ["section.inner.bare", "section.flag"]
    with pytest.raises(hook.MissingDescription, match=r"section\.inner\.bare, section\.flag"):
        raise hook.MissingDescription(hook.missing_descriptions(rows))


def test_types_and_defaults_are_written_as_in_yaml() -> None:
    hook = _hook()
    from calo_ablate.config import EvaluateConfig

    rows = {key: (kind, default) for key, kind, default, _ in hook.walk(EvaluateConfig, "evaluate")}
    assert rows["evaluate.enabled"] == ("bool", "`true`")
    assert rows["evaluate.n_events"] == ("int, ≥ 10", "`10000`")
    assert rows["evaluate.threshold_mev"][0] == "float \\| None, ≥ 0.0"


def test_readme_and_contributing_links_resolve() -> None:
    """Every relative link of README.md and CONTRIBUTING.md names a file of the repository (mkdocs checks
    docs/ itself, `make docs`)."""
    import re

    root = HOOK.parents[2]
    for name in ("README.md", "CONTRIBUTING.md"):
        text = (root / name).read_text()
        targets = re.findall(r"\]\(([^)\s]+)\)", text)
        local = [t.split("#", 1)[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
        missing = [t for t in local if not (root / t).exists()]
        assert not missing, f"{name}: links to missing files: {missing}"
        if name == "README.md":
            assert len(local) >= 20
