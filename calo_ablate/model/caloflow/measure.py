"""Measurements behind CaloFlow's precision and profile choices (prints, asserts nothing).

    python -m calo_ablate.model.caloflow.measure precision --dataset 1 [--steps 20]
    python -m calo_ablate.model.caloflow.measure speed --dataset 1 [--threads 1] [--sample-batches 1,100]
        [--set flow2.hidden_features=64]

precision: the published networks trained `steps` Adam steps (lr 1e-3) from one initialisation in float64
and in float32 on synthetic showers (and in float64 with other noise draws, the yardstick); their held-out NLLs evaluated in both precisions, and the round-trip
error of flow-II's forward then inverse in both. speed: training showers per second (forward, backward,
Adam at batch 200) and sampling milliseconds per shower at batch 1 and 100, at the given sizes; wall
and process CPU time both (the CPU time is the steadier figure on a loaded machine).
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
import yaml

from calo_ablate.data.synthetic import incident_energies, simulate
from calo_ablate.geometry import load_geometry
from calo_ablate.model.caloflow.config import CaloFlowConfig, caloflow_dataset
from calo_ablate.model.caloflow.module import CaloFlowModule
from calo_ablate.model.caloflow.preprocess import CaloFlowPreprocessor, flow2_features

TRAIN_BATCH = 200
NOISE_SEED = 7


def _batch(dataset: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    energies = incident_energies(dataset, n, rng)
    pre = CaloFlowPreprocessor(load_geometry(dataset), CaloFlowConfig().resolved(dataset))
    e_inc, showers = pre.transform(energies, simulate(dataset, energies, rng))
    return torch.from_numpy(e_inc), torch.from_numpy(showers)


def _config(dataset: str, dtype: str, changes: list[str]) -> CaloFlowConfig:
    values = CaloFlowConfig().model_dump()
    for change in changes:
        key, raw = change.split("=", 1)
        *parents, leaf = key.split(".")
        node = values
        for part in parents:
            node = node[part]
        node[leaf] = yaml.safe_load(raw)
    return CaloFlowConfig.model_validate(values | {"dtype": dtype})


def _clock() -> tuple[float, float]:
    """(wall, this process's CPU) seconds: on a loaded machine the CPU time is the steadier figure."""
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float], n: int) -> tuple[float, float]:
    wall, cpu = _clock()
    return (wall - start[0]) / n, (cpu - start[1]) / n


def _train(module: CaloFlowModule, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
    """Adam steps at lr 1e-3, one per batch; (wall, CPU) seconds per step after the first."""
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    module.train()
    start = _clock()
    for i, batch in enumerate(batches):
        if i == 1:
            start = _clock()
        optimizer.zero_grad()
        module.nll(batch)[0].backward()
        optimizer.step()
    return _since(start, max(1, len(batches) - 1))


def _held_out_nll(module: CaloFlowModule, batch: tuple[torch.Tensor, torch.Tensor]) -> list[float]:
    module.eval()
    with torch.no_grad():
        return [float(v) for v in module.nll(batch, torch.Generator().manual_seed(NOISE_SEED))]


def _as(module: CaloFlowModule, dtype: str) -> CaloFlowModule:
    twin = copy.deepcopy(module)
    twin.config = twin.config.model_copy(update={"dtype": dtype})
    return twin.to(getattr(torch, dtype))


def _round_trip(module: CaloFlowModule, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    """(max |x - inv(fwd(x))| in flow-II's logit space, the same relative to the showers' voxels in MeV
    above 1 MeV) for the module's dtype."""
    module.eval()
    e_inc, showers = (t.double() for t in batch)
    x, c = (t.to(module.flow_dtype) for t in flow2_features(showers, e_inc, module.slices, module.config))
    with torch.no_grad():
        transform = module.flow2(c).transform
        back = transform.inv(transform(x))
    logit_error = float((back - x).abs().max())
    alpha = module.config.logit_alpha
    normed = (torch.sigmoid(back.double()) - alpha) / (1 - 2 * alpha)
    exact = (torch.sigmoid(x.double()) - alpha) / (1 - 2 * alpha)
    mask = showers.double() * 1e5 > 1.0
    relative = float(((normed - exact).abs() / exact.abs().clamp(min=1e-30))[mask].max())
    return logit_error, relative


def precision(dataset: str, steps: int, changes: list[str]) -> None:
    dataset = caloflow_dataset(dataset)
    batches = [_batch(dataset, TRAIN_BATCH, seed) for seed in range(steps)]
    held_out = _batch(dataset, TRAIN_BATCH, 10_000)
    torch.manual_seed(0)
    start = CaloFlowModule(_config(dataset, "float64", changes), dataset)
    trained = {}
    # float64 and float32 with the same noise and dropout seed; float64 again with another seed (the
    # drift that the randomness alone causes, the yardstick for the precision's)
    for name, dtype, seed in (("float64", "float64", 1), ("float32", "float32", 1),
                              ("float64, other noise seed", "float64", 2)):
        module = _as(start, dtype)
        torch.manual_seed(seed)
        wall, cpu = _train(module, batches)
        trained[name] = module
        print(f"trained in {name}: {steps} steps at batch {TRAIN_BATCH}, {wall:.2f} s/step wall, {cpu:.2f} CPU")
    for trained_in, module in trained.items():
        for evaluated_in in ("float64", "float32"):
            loss, nll1, nll2 = _held_out_nll(_as(module, evaluated_in), held_out)
            print(f"held-out NLL, trained {trained_in}, evaluated {evaluated_in}: loss {loss:.6f} "
                  f"flow1 {nll1:.6f} flow2 {nll2:.6f}")
    for dtype in ("float64", "float32"):
        logit_error, relative = _round_trip(_as(trained["float64"], dtype), (held_out[0][:8], held_out[1][:8]))
        print(f"flow-II forward+inverse in {dtype} (8 showers): max logit error {logit_error:.3g}, max relative "
              f"voxel error above 1 MeV {relative:.3g}")


def speed(dataset: str, threads: int, changes: list[str], sample_batches: list[int]) -> None:
    dataset = caloflow_dataset(dataset)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    module = CaloFlowModule(_config(dataset, "float32", changes), dataset)
    n_params = sum(p.numel() for p in module.parameters())
    wall, cpu = _train(module, [_batch(dataset, TRAIN_BATCH, seed) for seed in range(4)])
    print(f"{dataset}, {threads} thread(s), {n_params:,} parameters: training {TRAIN_BATCH / wall:.1f} showers/s "
          f"wall, {TRAIN_BATCH / cpu:.1f} per CPU second ({wall:.2f} s wall per step of {TRAIN_BATCH})")
    for batch_size in sample_batches:
        e_inc = _batch(dataset, batch_size, 99)[0]
        start = _clock()
        module.sample(e_inc, batch_size=batch_size)
        wall, cpu = _since(start, batch_size)
        print(f"  sampling at batch {batch_size}: {1e3 * wall:.1f} ms per shower wall, {1e3 * cpu:.1f} ms CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["precision", "speed"])
    parser.add_argument("--dataset", default="1")
    parser.add_argument("--steps", type=int, default=20, help="precision: training steps")
    parser.add_argument("--threads", type=int, default=1, help="speed: torch CPU threads")
    parser.add_argument("--sample-batches", default="1,100", help="speed: sampling batch sizes ('' for none)")
    parser.add_argument("--set", dest="changes", action="append", default=[], metavar="KEY=VALUE",
                        help="a CaloFlowConfig field, e.g. flow2.hidden_features=64 (repeatable)")
    args = parser.parse_args()
    if args.what == "precision":
        precision(args.dataset, args.steps, args.changes)
    else:
        speed(args.dataset, args.threads, args.changes, [int(b) for b in args.sample_batches.split(",") if b])


if __name__ == "__main__":
    main()
