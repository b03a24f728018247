"""CaloDiffusionConfig: every size and switch of the CaloDiffusion family, with the published defaults.

The defaults of the class are those of dataset 1 photons; `published_config(dataset)` gives each
dataset's published settings (Amram and Pedro 2023, configs of OzAmram/CaloDiffusionPaper):

| | ds1 photons / pions | ds2 | ds3 |
|---|---|---|---|
| widths | 16, 16, 16, 32 | 16, 16, 16, 32 | 32, 32, 32, 32 |
| phi channel | on | off | off |
| GLaM | learned | fixed (the grid is regular: identity) | fixed (identity) |
| objective | noise_pred | noise_pred | hybrid_weight |
| learning rate | 4e-4 | 4e-4 | 1e-4 |
| sample offset | 2 | 2 | 0 |

Published batch sizes (a training setting, not part of this section): PUBLISHED_BATCH_SIZE.
The class itself lives in calo_ablate/config.py, as the section `model.calodiffusion` of the config tree.
"""

from __future__ import annotations

from calo_ablate.config import CaloDiffusionConfig, canonical_dataset

__all__ = ["PUBLISHED_BATCH_SIZE", "CaloDiffusionConfig", "published_config"]

PUBLISHED_BATCH_SIZE = {"1-photons": 128, "1-pions": 128, "2": 128, "3": 64}


def published_config(dataset: str) -> CaloDiffusionConfig:
    """The published settings of `dataset` ('1', '1-photons', '1-pions', '2', '3')."""
    dataset = canonical_dataset(dataset)
    if dataset in ("1-photons", "1-pions"):
        return CaloDiffusionConfig()
    if dataset == "2":
        return CaloDiffusionConfig(phi_channel=False, glam="fixed")
    return CaloDiffusionConfig(widths=[32, 32, 32, 32], phi_channel=False, glam="fixed",
                               objective="hybrid_weight", lr=1e-4, sample_offset=0)
