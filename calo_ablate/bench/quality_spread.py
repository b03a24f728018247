"""How much the sample-quality metrics of a profile move between draws, and whether they see a 15 % energy scale.

    python -m calo_ablate.bench.quality_spread --profile quick --showers 400 --draws 3 [--dataset 1-photons]

Per draw, two disjoint samples of `--showers` showers from the dataset's evaluation file (the study's
data folder, real or synthetic): "same" compares them as they are (the noise floor), "x1.15" with
every voxel of the second multiplied by 1.15. Prints each metric's mean and std (ddof 1) over the
draws for both cases, with the profile's classifier settings and classifiers plus cls-high-z; this is
what chose the sizes and the verdicts' AUC high (docs/guide/verdicts.md).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from calo_ablate.config import canonical_dataset, resolve_config
from calo_ablate.data.calochallenge import read_showers
from calo_ablate.data.source import ensure_data
from calo_ablate.evaluation.evaluate import evaluate_samples

METRICS = ("sep_e_ratio", "sep_mean", "auc_low", "auc_high", "auc_high_z", "fpd", "kpd")
SCALE = 1.15


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--dataset", default="1-photons")
    parser.add_argument("--showers", type=int, default=400)
    parser.add_argument("--draws", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dataset = canonical_dataset(args.dataset)
    config = resolve_config(dataset, args.profile)
    classifiers = list(dict.fromkeys([*config.evaluate.classifiers, "cls-high-z"]))
    settings = config.evaluate.model_copy(update={"prdc": False, "classifiers": classifiers})
    files = ensure_data(dataset, config.data.data_dir)
    parts = [read_showers(path, dataset) for path in files.eval]
    energies, showers = np.concatenate([e for e, _ in parts]), np.concatenate([s for _, s in parts])
    results: dict[str, list[list[float]]] = {"same": [], f"x{SCALE}": []}
    started = time.perf_counter()
    for draw in range(args.draws):
        order = np.random.default_rng(100 + draw).permutation(len(energies))
        a, b = order[:args.showers], order[args.showers:2 * args.showers]
        for case, scale in zip(results, (1.0, SCALE), strict=True):
            metrics = evaluate_samples((energies[a], showers[a]), (energies[b], showers[b] * scale), dataset,
                                       settings, seed=draw)
            results[case].append([metrics.get(k, float("nan")) for k in METRICS])
    print(f"profile {args.profile}, {args.showers} vs {args.showers} showers, {args.draws} draws, "
          f"{time.perf_counter() - started:.0f} s")
    print("| case | " + " | ".join(METRICS) + " |")
    print("|---|" + "---|" * len(METRICS))
    for case, values in results.items():
        v = np.array(values)
        print(f"| {case} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(v.mean(0), v.std(0, ddof=1),
                                                                              strict=True)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
