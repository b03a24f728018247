"""Shared by the CaloDiffusion tests: a dataset's published settings as the tool resolves them."""

from __future__ import annotations

import calo_ablate.model.families  # noqa: F401  (registers the family sections)
from calo_ablate.config import resolve_config
from calo_ablate.model.calodiffusion.config import CaloDiffusionConfig


def published_config(dataset: str) -> CaloDiffusionConfig:
    """The `model` section of CaloDiffusion on `dataset`: experiments/datasets/<dataset>.yaml's
    families.calodiffusion block (the published settings, Amram and Pedro 2023) over the class defaults."""
    model = resolve_config(dataset, "full", cli_set=["model.family=calodiffusion"]).model
    assert isinstance(model, CaloDiffusionConfig)
    return model
