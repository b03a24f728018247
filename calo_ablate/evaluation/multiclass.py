"""The multiclass metric: one classifier told which of N generators (the study's rows) made a shower.

Per training t (seed + t for the split, the initialisation and the batch order):
- every row's sample is one class; all classes are cut to the smallest size (a fixed random subset);
- inputs: an official classifier vector (inputs.py, after the readout threshold): `cls-low` (log10 E_inc
  and every voxel / E_inc) by default, or `cls-high`; standardised by the training split's mean and std
  (a small network barely learns from the official unstandardised ones, see cls-high-z). At study
  settings the voxel inputs learn a 30 % energy scale within a few epochs where the 30 high-level
  columns need tens (tests/evaluation/test_multiclass.py; docs/guide/quality-vs-speed.md);
- network: the official DNN of classifier.py with its last layer widened from 1 to N logits;
- per class a shuffle, then TRAIN_FRACTION train and the rest test; cross-entropy, Adam
  (settings.lr), batches of settings.batch_size reshuffled every epoch, settings.epochs epochs; the
  epoch with the lowest test cross-entropy is kept; one temperature T (logits / T) is fitted on the
  test split by minimising its cross-entropy (the multiclass analogue of the binary metric's
  isotonic calibration);
- the score of row i: the mean over the reference showers x of log p(i | x), the calibrated
  log-posterior. The reference showers are never trained on.
Higher (closer to 0) is better. A classifier that cannot tell the rows apart gives every row log(1/N);
a row closer to the reference than the others scores above it. The score depends on the pool of rows:
adding or removing a row moves every other row's value.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import nn

from calo_ablate.config import ClassifierConfig, canonical_dataset
from calo_ablate.errors import DataError
from calo_ablate.evaluation.classifier import dnn
from calo_ablate.evaluation.features import apply_threshold, compute_features, default_threshold_mev
from calo_ablate.evaluation.inputs import cls_high_inputs, cls_low_inputs
from calo_ablate.geometry import load_geometry

__all__ = ["INPUTS", "TRAIN_FRACTION", "MulticlassResult", "mean_log_posteriors", "multiclass_inputs",
           "multiclass_scores", "uniform_score"]

Sample = tuple[np.ndarray, np.ndarray]  # (incident energies (N,) MeV, showers (N, V) MeV)
INPUTS = ("cls-low", "cls-high")
TRAIN_FRACTION = 0.8  # the official classifier's train : test ratio (80,000 : 20,000)
LOG_T_BOUNDS = (-5.0, 5.0)  # the temperature is searched in [e^-5, e^5]


def uniform_score(n_classes: int) -> float:
    """log(1/N): the score of every row when the classifier cannot tell the rows apart."""
    if n_classes < 2:
        msg = f"multiclass: n_classes = {n_classes}, expected at least 2"
        raise DataError(msg)
    return -math.log(n_classes)


@dataclass(frozen=True)
class MulticlassResult:
    """Scores (trainings, N) of the rows, with what they were computed from."""

    rows: tuple[str, ...]
    scores: np.ndarray  # [training, row]: mean log p(row | x) over the reference showers
    seed: int
    inputs: str
    showers_per_class: int
    reference_showers: int

    @property
    def uniform(self) -> float:
        return uniform_score(len(self.rows))

    def mean(self) -> dict[str, float]:
        return dict(zip(self.rows, (float(v) for v in self.scores.mean(axis=0)), strict=True))

    def std(self) -> dict[str, float]:
        """Std over trainings (ddof 1; nan with one training)."""
        if len(self.scores) < 2:
            return dict.fromkeys(self.rows, math.nan)
        return dict(zip(self.rows, (float(v) for v in self.scores.std(axis=0, ddof=1)), strict=True))


def multiclass_inputs(sample: Sample, dataset: str, inputs: str = "cls-low",
                      threshold_mev: float | None = None) -> np.ndarray:
    """The classifier input vectors (float64) of one sample after the readout threshold."""
    if inputs not in INPUTS:
        msg = f"multiclass inputs {inputs!r}: expected one of {', '.join(INPUTS)}"
        raise DataError(msg)
    dataset = canonical_dataset(dataset)
    geometry = load_geometry(dataset)
    threshold = default_threshold_mev(dataset) if threshold_mev is None else threshold_mev
    energies, showers = np.asarray(sample[0], dtype=np.float64).reshape(-1), np.asarray(sample[1])
    if showers.shape != (len(energies), geometry.n_voxels):
        msg = (f"multiclass: showers of shape {showers.shape} with {len(energies)} incident energies, expected "
               f"({len(energies)}, {geometry.n_voxels}) for dataset {dataset}")
        raise DataError(msg)
    thresholded = apply_threshold(showers, threshold)
    if inputs == "cls-low":
        return cls_low_inputs(energies, thresholded)
    return cls_high_inputs(energies, compute_features(energies, thresholded, geometry, threshold), geometry)


def _network(n_inputs: int, n_classes: int, settings: ClassifierConfig) -> nn.Sequential:
    """The official DNN with N output logits."""
    net = dnn(n_inputs, settings)
    net[-1] = nn.Linear(settings.hidden, n_classes)
    return net


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])


def _fit(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
         y_test: torch.Tensor, settings: ClassifierConfig, seed: int) -> None:
    """Cross-entropy training; the model ends with the weights of the epoch with the lowest test loss."""
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    best_loss, best_state = math.inf, copy.deepcopy(model.state_dict())
    for _ in range(settings.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator).to(x_train.device)
        for start in range(0, len(order), settings.batch_size):
            idx = order[start:start + settings.batch_size]
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        test_loss = loss_fn(_logits(model, x_test), y_test).item()
        if test_loss < best_loss:
            best_loss, best_state = test_loss, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)


def _temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the cross-entropy of softmax(logits / T) (one-dimensional, bounded in log T)."""
    def nll(log_t: float) -> float:
        scaled = torch.as_tensor(logits / math.exp(log_t))
        return float(nn.functional.cross_entropy(scaled, torch.as_tensor(labels)).item())

    found = minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded")
    return math.exp(float(found.x))


def mean_log_posteriors(classes: list[np.ndarray], reference: np.ndarray, settings: ClassifierConfig, seed: int,
                        device: str) -> np.ndarray:
    """One training on equal-size classes (input vectors, (n, D) each): the mean calibrated log-posterior of
    each class over the reference rows, (N,). The reference rows are never trained on."""
    rng = np.random.default_rng(seed)
    n_train = round(TRAIN_FRACTION * len(classes[0]))
    split = [rng.permutation(len(c)) for c in classes]
    train = np.concatenate([c[order[:n_train]] for c, order in zip(classes, split, strict=True)])
    test = np.concatenate([c[order[n_train:]] for c, order in zip(classes, split, strict=True)])
    y_train = np.repeat(np.arange(len(classes)), n_train)
    y_test = np.repeat(np.arange(len(classes)), len(classes[0]) - n_train)
    mean, std = train.mean(axis=0), train.std(axis=0)
    scale = np.where(std > 0, std, 1.0)
    x_train, x_test, x_ref = (torch.as_tensor((p - mean) / scale, dtype=torch.float64, device=device)
                              for p in (train, test, reference))
    t_train, t_test = (torch.as_tensor(y, dtype=torch.long, device=device) for y in (y_train, y_test))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _network(x_train.shape[1], len(classes), settings).to(device=device, dtype=torch.float64)
    _fit(model, x_train, t_train, x_test, t_test, settings, seed)
    temperature = _temperature(_logits(model, x_test).cpu().numpy(), y_test)
    log_post = torch.log_softmax(_logits(model, x_ref) / temperature, dim=1)
    return log_post.mean(dim=0).cpu().numpy()


def multiclass_scores(
    samples: Mapping[str, Sample],
    reference: Sample,
    dataset: str,
    settings: ClassifierConfig,
    *,
    seed: int = 0,
    inputs: str = "cls-low",
    threshold_mev: float | None = None,
    device: str | None = None,
) -> MulticlassResult:
    """The scores of every row (`samples`: row name -> its generated sample) over settings.trainings
    trainings, scored on `reference`. See the module docstring."""
    if len(samples) < 2:
        msg = f"multiclass: {len(samples)} row(s) given ({', '.join(samples) or 'none'}), expected at least 2"
        raise DataError(msg)
    names = tuple(samples)
    vectors = [multiclass_inputs(samples[n], dataset, inputs, threshold_mev) for n in names]
    size = min(len(v) for v in vectors)
    if size < 5:
        msg = f"multiclass: the smallest sample has {size} showers, expected at least 5 per row"
        raise DataError(msg)
    keep = np.random.default_rng(seed)
    classes = [v if len(v) == size else v[np.sort(keep.choice(len(v), size, replace=False))] for v in vectors]
    ref = multiclass_inputs(reference, dataset, inputs, threshold_mev)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    scores = np.stack([mean_log_posteriors(classes, ref, settings, seed + t, device) for t in range(settings.trainings)])
    return MulticlassResult(names, scores, seed, inputs, size, len(ref))
