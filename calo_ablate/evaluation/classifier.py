"""The CaloChallenge classifier metric: an MLP told to separate reference from generated showers.

Procedure (the official one, settings from `evaluate.classifier`):
- inputs: low-level [log10 E_inc, voxels / E_inc] or high-level [log10 E_inc, log10(E_layer + 1e-8 MeV),
  centres and widths in eta and phi (mm)], standardised with the training split's mean and std
  (the official script scales by hand instead: voxels x 100, lengths / 100; standardising makes
  that unnecessary);
- each sample split 60/20/20 into train / test / validation, label 1 = reference, 0 = generated;
- MLP input -> hidden, (num_hidden_layers - 1) x hidden -> hidden, -> 1 logit, LeakyReLU, no dropout
  (full profile: hidden 2048, 3 layers = the official network); BCE with logits, Adam;
- after each epoch the test-split accuracy; the best epoch's weights are kept (training stops early
  at accuracy 1);
- isotonic regression fitted on the test split's probabilities calibrates them (clipped to
  [1e-6, 1 - 1e-6]); on the validation split: AUC of the calibrated probabilities (never rounded)
  and JSD = (ln 2 - BCE) / ln 2.
Several trainings with seeds seed, seed + 1, ... (each its own split and initialisation) give the
mean and the sample standard deviation.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score
from torch import nn

from calo_ablate.config import ClassifierConfig
from calo_ablate.errors import DataError

__all__ = ["classifier_scores", "high_level_inputs", "low_level_inputs", "train_once"]

SPLIT = (0.6, 0.2, 0.2)  # train, test (best epoch + calibration), validation (reported scores)
PROB_CLIP = 1e-6


def low_level_inputs(energies_mev: np.ndarray, showers_mev: np.ndarray) -> np.ndarray:
    """(N, 1 + V) float32: log10 E_inc [MeV] and voxel energies / E_inc (thresholded showers)."""
    energies = np.asarray(energies_mev, dtype=np.float32).reshape(-1, 1)
    return np.concatenate([np.log10(energies), showers_mev / energies], axis=1).astype(np.float32)


def high_level_inputs(energies_mev: np.ndarray, features: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """(N, 1 + F) float32: log10 E_inc, then the named features, energies as log10(E + 1e-8 MeV)."""
    columns = [np.log10(np.asarray(energies_mev, dtype=np.float64))]
    for name in names:
        values = features[name]
        columns.append(np.log10(values + 1e-8) if name.startswith("e_") else values)
    return np.stack(columns, axis=1).astype(np.float32)


def _mlp(n_inputs: int, settings: ClassifierConfig) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(n_inputs, settings.hidden), nn.LeakyReLU()]
    for _ in range(settings.num_hidden_layers - 1):
        layers += [nn.Linear(settings.hidden, settings.hidden), nn.LeakyReLU()]
    layers.append(nn.Linear(settings.hidden, 1))
    return nn.Sequential(*layers)


def _split(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    n_train, n_test = int(n * SPLIT[0]), int(n * SPLIT[1])
    return [order[:n_train], order[n_train:n_train + n_test], order[n_train + n_test:]]


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, batch: int = 10000) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + batch]).reshape(-1) for i in range(0, len(x), batch)])


def train_once(
    reference: np.ndarray,
    generated: np.ndarray,
    settings: ClassifierConfig,
    seed: int,
    device: str | None = None,
) -> tuple[float, float]:
    """One training on (N_ref, D) and (N_gen, D) inputs: (validation AUC, validation JSD)."""
    rng = np.random.default_rng(seed)
    splits = list(zip(_split(len(reference), rng), _split(len(generated), rng), strict=True))
    parts = [np.concatenate([reference[r], generated[g]]) for r, g in splits]  # train, test, val
    labels = [np.concatenate([np.ones(len(r)), np.zeros(len(g))]) for r, g in splits]
    mean, std = parts[0].mean(axis=0), parts[0].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    x_train, x_test, x_val = (torch.as_tensor((p - mean) / std, dtype=torch.float32, device=device)
                              for p in parts)
    y_train, y_test = (torch.as_tensor(y, dtype=torch.float32, device=device) for y in labels[:2])

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _mlp(x_train.shape[1], settings).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
    loss_fn = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(seed)
    best_accuracy, best_state = -1.0, copy.deepcopy(model.state_dict())
    for _ in range(settings.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator).to(device)
        for start in range(0, len(order), settings.batch_size):
            idx = order[start:start + settings.batch_size]
            loss = loss_fn(model(x_train[idx]).reshape(-1), y_train[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        accuracy = ((_logits(model, x_test) > 0).float() == y_test).float().mean().item()
        if accuracy > best_accuracy:
            best_accuracy, best_state = accuracy, copy.deepcopy(model.state_dict())
        if accuracy == 1.0:
            break
    model.load_state_dict(best_state)

    p_test = torch.sigmoid(_logits(model, x_test)).cpu().numpy()
    p_val = torch.sigmoid(_logits(model, x_val)).cpu().numpy()
    calibrator = IsotonicRegression(y_min=PROB_CLIP, y_max=1 - PROB_CLIP, out_of_bounds="clip")
    calibrator.fit(p_test, labels[1])
    p_cal = np.clip(calibrator.predict(p_val), PROB_CLIP, 1 - PROB_CLIP)
    y = labels[2]
    auc = float(roc_auc_score(y, p_cal))
    bce = float(-np.mean(y * np.log(p_cal) + (1 - y) * np.log(1 - p_cal)))
    return auc, (math.log(2) - bce) / math.log(2)


def classifier_scores(
    reference: np.ndarray,
    generated: np.ndarray,
    settings: ClassifierConfig,
    seed: int = 0,
    device: str | None = None,
) -> dict[str, float]:
    """{"auc", "auc_std", "jsd", "jsd_std"} over settings.trainings trainings (std 0 for one)."""
    for name, sample in (("reference", reference), ("generated", generated)):
        if len(sample) < 10:
            msg = f"classifier: the {name} sample has {len(sample)} showers, expected at least 10"
            raise DataError(msg)
    results = np.array([train_once(reference, generated, settings, seed + i, device)
                        for i in range(settings.trainings)])  # (trainings, 2)
    ddof = 1 if len(results) > 1 else 0
    mean, std = results.mean(axis=0), results.std(axis=0, ddof=ddof)
    return {"auc": float(mean[0]), "auc_std": float(std[0]), "jsd": float(mean[1]), "jsd_std": float(std[1])}
