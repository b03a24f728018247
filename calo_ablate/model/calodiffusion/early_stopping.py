"""The reference's early stopping ('diff' mode): stop once validation has not beaten training for a while.

After every epoch with both losses logged: count += 1 when val/loss >= train/loss, else count = 0; stop
when count reaches `patience` (CaloDiffusion: 20 consecutive epochs).
"""

from __future__ import annotations

import lightning.pytorch as pl

__all__ = ["TrainValGapStopping"]


class TrainValGapStopping(pl.Callback):
    """Stops training after `patience` consecutive epochs with val/loss >= train/loss."""

    def __init__(self, patience: int = 20, train_key: str = "train/loss", val_key: str = "val/loss") -> None:
        self.patience, self.train_key, self.val_key = patience, train_key, val_key
        self.count = 0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if self.train_key not in metrics or self.val_key not in metrics:
            return
        self.count = self.count + 1 if float(metrics[self.val_key]) >= float(metrics[self.train_key]) else 0
        if self.count >= self.patience:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, int]:
        return {"count": self.count}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.count = state_dict["count"]
