"""The CaloChallenge classifier metric: a network told to separate reference from generated showers.

The official procedure (`train_and_evaluate_cls`, `ttv_split`, `calibrate_classifier`):
- label 1 = reference, 0 = generated; both samples of equal size;
- split per class, after a shuffle: fixed counts train / test / the rest as validation (80,000 /
  20,000 for dataset 1, 60,000 / 20,000 for datasets 2 and 3) when a sample has more showers than
  train + test; smaller samples (every study cell) keep the same proportions of the official
  full-size file (see `split_counts`);
- float64 network fed the prepared inputs as they are (inputs.py); DNN: input -> hidden, LeakyReLU,
  (num_hidden_layers - 1) x [hidden -> hidden, LeakyReLU], -> 1 logit (official: hidden 2048,
  3 layers, no dropout); cls-resnet: the small 3D CNN of resnet.py;
- BCE with logits, Adam (lr 2e-4), batches of 1000 reshuffled every epoch, at most 50 epochs; after
  each epoch the test-split accuracy (logit > 0); the weights of the first epoch with the strictly
  best accuracy are kept; training stops at accuracy 1;
- isotonic regression (increasing, clip, y in [1e-6, 1 - 1e-6]) fitted on the test split's
  probabilities calibrates the validation probabilities; AUC = roc_auc_score of those, JSD =
  (ln 2 - BCE) / ln 2.
Differences: the official script is unseeded; here training i uses seed + i for the split, the
initialisation and the batch order, so a given seed reproduces the numbers. Several trainings give
the mean and the ddof-0 standard deviation, as the published tables report 10 runs. With
`standardise_inputs` (own option) inputs are scaled by the training split's mean and std.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import torch
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score
from torch import nn

from calo_ablate.config import ClassifierConfig, canonical_dataset
from calo_ablate.errors import DataError

__all__ = ["OFFICIAL_SPLIT", "classifier_scores", "dnn", "split_counts", "train_once"]

# per class: (train, test, showers per class in the official evaluation files); validation = the rest
OFFICIAL_SPLIT = {"1-photons": (80000, 20000, 121000), "1-pions": (80000, 20000, 120230),
                  "2": (60000, 20000, 100000), "3": (60000, 20000, 100000)}
PROB_CLIP = 1e-6

ModelFactory = Callable[[int], nn.Module]  # number of input columns -> a fresh model giving 1 logit


def split_counts(dataset: str, n: int) -> tuple[int, int, bool]:
    """(train, test, official) showers per class; validation gets the rest of the n.

    official is True when n exceeds the official train + test counts, which are then used as they
    are; otherwise the counts are the official proportions of the full-size file, rounded down.
    """
    train, test, full = OFFICIAL_SPLIT[canonical_dataset(dataset)]
    if n > train + test:
        return train, test, True
    n_train, n_test = int(n * train / full), int(n * test / full)
    if min(n_train, n_test, n - n_train - n_test) < 1:
        msg = f"classifier: {n} showers per sample are too few to split into train, test and validation"
        raise DataError(msg)
    return n_train, n_test, False


def dnn(n_inputs: int, settings: ClassifierConfig) -> nn.Sequential:
    """The official fully connected network (LeakyReLU slope 0.01, no dropout)."""
    layers: list[nn.Module] = [nn.Linear(n_inputs, settings.hidden), nn.LeakyReLU()]
    for _ in range(settings.num_hidden_layers - 1):
        layers += [nn.Linear(settings.hidden, settings.hidden), nn.LeakyReLU()]
    layers.append(nn.Linear(settings.hidden, 1))
    return nn.Sequential(*layers)


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + batch]).reshape(-1) for i in range(0, len(x), batch)])


def _split_rows(n: int, n_train: int, n_test: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[:n_train], order[n_train:n_train + n_test], order[n_train + n_test:]]


def _fit(model: nn.Module, data: list[torch.Tensor], settings: ClassifierConfig, seed: int) -> None:
    """Train with the official epoch rule; the model ends with the best epoch's weights."""
    x_train, y_train, x_test, y_test = data
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
    loss_fn = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(seed)
    best_accuracy, best_state = -math.inf, copy.deepcopy(model.state_dict())
    for _ in range(settings.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator).to(x_train.device)
        for start in range(0, len(order), settings.batch_size):
            idx = order[start:start + settings.batch_size]
            loss = loss_fn(model(x_train[idx]).reshape(-1), y_train[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        accuracy = ((_logits(model, x_test) > 0).double() == y_test).double().mean().item()
        if accuracy > best_accuracy:
            best_accuracy, best_state = accuracy, copy.deepcopy(model.state_dict())
        if accuracy == 1.0:
            break
    model.load_state_dict(best_state)


def train_once(
    reference: np.ndarray,
    generated: np.ndarray,
    settings: ClassifierConfig,
    seed: int,
    dataset: str,
    build: ModelFactory,
    device: str | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[float, float]:
    """One training on equal-size (N, D) inputs: (validation AUC, validation JSD); network and inputs in
    `dtype` (official: float64)."""
    n_train, n_test, _ = split_counts(dataset, len(reference))
    rng = np.random.default_rng(seed)
    rows = list(zip(_split_rows(len(generated), n_train, n_test, rng),
                    _split_rows(len(reference), n_train, n_test, rng), strict=True))
    parts = [np.concatenate([generated[g], reference[r]]) for g, r in rows]  # train, test, validation
    labels = [np.concatenate([np.zeros(len(g)), np.ones(len(r))]) for g, r in rows]
    if settings.standardise_inputs:
        mean, std = parts[0].mean(axis=0), parts[0].std(axis=0)
        parts = [(p - mean) / np.where(std > 0, std, 1.0) for p in parts]
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    x_train, x_test, x_val = (torch.as_tensor(p, dtype=dtype, device=device) for p in parts)
    y_train, y_test = (torch.as_tensor(y, dtype=dtype, device=device) for y in labels[:2])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build(x_train.shape[1]).to(device=device, dtype=dtype)
    _fit(model, [x_train, y_train, x_test, y_test], settings, seed)

    p_test = torch.sigmoid(_logits(model, x_test)).double().cpu().numpy()
    p_val = torch.sigmoid(_logits(model, x_val)).double().cpu().numpy()
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
    dataset: str,
    build: ModelFactory | None = None,
    seed: int = 0,
    device: str | None = None,
    dtype: torch.dtype = torch.float64,
) -> dict[str, float]:
    """{"AUC", "AUC std", "JSD", "JSD std"}: mean and ddof-0 std over settings.trainings trainings.

    `build` makes the network from the number of input columns (default: the official DNN).
    """
    if len(reference) != len(generated):
        msg = (f"classifier: the reference ({len(reference)}) and generated ({len(generated)}) samples must "
               "have the same number of showers (the official split asserts it)")
        raise DataError(msg)
    build = build or (lambda n_inputs: dnn(n_inputs, settings))
    results = np.array([train_once(reference, generated, settings, seed + i, dataset, build, device, dtype)
                        for i in range(settings.trainings)])  # (trainings, 2)
    mean, std = results.mean(axis=0), results.std(axis=0)
    return {"AUC": float(mean[0]), "AUC std": float(std[0]), "JSD": float(mean[1]), "JSD std": float(std[1])}
