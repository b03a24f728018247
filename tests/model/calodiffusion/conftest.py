"""Shared by the CaloDiffusion tests: a dataset's published settings as the tool resolves them."""

from __future__ import annotations

import calo_ablate.model.families  # noqa: F401  (registers the family sections)
from calo_ablate.config import resolve_config
from calo_ablate.model.calodiffusion.config import CaloDiffusionConfig

# the model section of a tiny CaloDiffusion (seconds per test), for the LayerDiffusion and consistency tests
TINY = {"widths": [8, 8, 8], "embed_hidden": 8, "embed_dim": 8, "attention_head_dim": 8, "norm_groups": 4,
        "diffusion_steps": 20, "sample_offset": 1}


def published_config(dataset: str) -> CaloDiffusionConfig:
    """The `model` section of CaloDiffusion on `dataset`: experiments/datasets/<dataset>.yaml's
    families.calodiffusion block (the published settings, Amram and Pedro 2023) over the class defaults."""
    model = resolve_config(dataset, "full", cli_set=["model.family=calodiffusion"]).model
    assert isinstance(model, CaloDiffusionConfig)
    return model
