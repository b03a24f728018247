"""calo-ablate: ablation studies of score-based diffusion models for calorimeter showers."""

__version__ = "0.1.0"
