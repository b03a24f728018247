"""A minimal user model family, plugged in as model.family=tests.study.user_family:GaussianFamily.

Per voxel, a Gaussian in log(1 + e / E_inc) whose mean and log-std are linear in the condition
log10(E_inc / 1 GeV), fitted by the Gaussian negative log-likelihood; one-step sampling. Its width of
the hidden layer comes from the free-form model.options.hidden.
"""

from __future__ import annotations

from collections.abc import Mapping

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from calo_ablate.data.preprocessing import Preprocessing
from calo_ablate.geometry import load_geometry
from calo_ablate.model.interface import ModelFamily


class LogShowers:
    """Features (log10 E_inc / GeV, log1p(e / E_inc) standardised with statistics fitted on training showers)."""

    def __init__(self, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> None:
        self.mean, self.std = mean, std

    def fit(self, energies_mev: np.ndarray, showers_mev: np.ndarray) -> None:
        x = np.log1p(showers_mev / energies_mev[:, None])
        self.mean, self.std = x.mean(axis=0), x.std(axis=0) + 1e-6

    def condition(self, energies_mev: np.ndarray) -> np.ndarray:
        return np.log10(np.asarray(energies_mev).reshape(-1, 1) / 1000.0).astype(np.float32)

    def transform(self, energies_mev: np.ndarray, showers_mev: np.ndarray) -> tuple[np.ndarray, ...]:
        x = np.log1p(showers_mev / energies_mev[:, None])
        return self.condition(energies_mev), ((x - self.mean) / self.std).astype(np.float32)

    def inverse(self, energies_mev: np.ndarray, *sampled: np.ndarray) -> np.ndarray:
        x = sampled[0] * self.std + self.mean
        return np.clip(np.expm1(x), 0.0, None) * np.asarray(energies_mev).reshape(-1, 1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "std": self.std}


class GaussianModule(pl.LightningModule):
    def __init__(self, n_voxels: int, hidden: int, lr: float) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, 2 * n_voxels))

    def losses(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        cond, x = batch
        mean, log_std = self.net(cond).chunk(2, dim=1)
        nll = (0.5 * ((x - mean) / log_std.exp()) ** 2 + log_std).mean()
        return nll, ((x - mean) ** 2).mean()

    def _log(self, stage: str, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        loss, mse = self.losses(batch)
        for name, value in (("loss", loss), ("mse", mse)):
            self.log(f"{stage}/{name}", value, on_step=False, on_epoch=True, batch_size=len(batch[0]))
        return loss

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        return self._log("train", batch)

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self._log("val", batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class GaussianFamily(ModelFamily):
    title = "Per-voxel Gaussian"
    loss_names = ("loss", "mse")

    def preprocessing(self) -> Preprocessing:
        def restore(arrays: Mapping[str, np.ndarray], source: str) -> LogShowers:
            return LogShowers(arrays["mean"], arrays["std"])

        return Preprocessing(family="gaussian", settings={}, new=LogShowers, restore=restore)

    def module(self) -> GaussianModule:
        n_voxels = load_geometry(self.config.data.dataset).n_voxels
        return GaussianModule(n_voxels, int(self.config.model.options.get("hidden", 16)), self.config.train.lr)

    @torch.no_grad()
    def sample(self, module: GaussianModule, cond: torch.Tensor, *, steps: int, batch_size: int, seed: int,
               progress: bool, precision: str | None = None) -> tuple[torch.Tensor, ...]:
        mean, log_std = module.net(cond.to(module.device)).chunk(2, dim=1)
        noise = torch.randn(mean.shape, generator=torch.Generator(device=module.device).manual_seed(seed),
                            device=module.device)
        return (mean + log_std.exp() * noise,)


class UnnamedTotal(GaussianFamily):
    """Refused: the first loss must be the total, named 'loss'."""

    loss_names = ("nll", "mse")
