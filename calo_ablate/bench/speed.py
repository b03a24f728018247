"""Speed and memory figures of a model family on this machine (`make bench`); prints, asserts nothing.

    python -m calo_ablate.bench --dataset 1 [--threads N] [--gen-batches 1,100,10000] [--set key=value ...]

The family is the config's (`--set model.family=calodiffusion`); every measurement goes through the
family interface (its module, its benchmark batch, its sampler).

One function per measurement, `main` prints them:
- matmul_flops: fp32 square-matmul FLOP/s, the machine's reference rate (same process, same threads);
- train_flops_per_shower: model FLOPs of one training step per shower (the module's training_step and
  backward, counted with torch.utils.flop_counter.FlopCounterMode);
- training_throughput: showers/s of real Lightning training steps (optimizer, hooks included) on the
  family's benchmark batches of train.batch_size;
- generation_ms_per_shower: generation with the family's sampler at a given batch size. To bound the
  bench's time a few sampling steps are timed and the time per step is scaled to the full step count
  (a one-pass family is timed whole);
- peak_memory_mib: the process's peak resident memory (resource.getrusage ru_maxrss);
- --cpu-time: matmul, training and generation timed by the process's CPU time instead of wall time.
  On a CPU shared with other jobs, wall times with one thread mostly measure the other jobs; CPU time
  counts only the cycles this process got (caches and memory bandwidth are still shared). It sums
  over threads, so it is meant for --threads 1, and for CPU runs only;
- runner_overhead: a small smoke study with 1 and 2 workers: study wall time against the time spent
  inside its cells (calo_ablate/bench/overhead.py); --skip-study leaves it out;
- the profile of one training step and one sampling step by operator category, each rate beside the
  matmul rate (calo_ablate/bench/profile.py); --skip-profile leaves it out.
The instruction set (calo_ablate/model/precision.py) is printed next to the matmul rate, and the seed
study's laptop (13 training showers/s) next to the training figure.
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from calo_ablate.bench.overhead import measure
from calo_ablate.bench.profile import (
    flop_counter,
    format_profile,
    profile_sampling_step,
    profile_training_step,
)
from calo_ablate.config import canonical_dataset, resolve_config
from calo_ablate.geometry import load_geometry
from calo_ablate.model.families import load_family
from calo_ablate.model.interface import ModelFamily
from calo_ablate.model.precision import bf16_native, check_precision, instruction_set
from calo_ablate.runs.train import quiet_lightning

__all__ = [
    "GenerationTiming",
    "generation_ms_per_shower",
    "main",
    "matmul_flops",
    "peak_memory_mib",
    "runner_overhead",
    "train_flops_per_shower",
    "training_throughput",
]

Clock = Callable[[], float]  # seconds: time.perf_counter (wall) or time.process_time (CPU time of the process)
FEWER_STEPS_FACTOR = 0.125  # the registry's fewer-steps ablation: sample.steps_factor (64 of 512)
SEED_LAPTOP_SHOWERS_S = 13.0  # the seed study: about two hours per full dataset-1 epoch on a laptop


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops(size: int = 2048, repeats: int = 5, device: torch.device | None = None,
                 clock: Clock = time.perf_counter) -> float:
    """Best fp32 FLOP/s of a (size x size) @ (size x size) matmul over `repeats` tries (2 size^3 FLOPs each)."""
    device = device or _device()
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = clock()
        a @ b
        _sync(device)
        best = min(best, clock() - start)
    return 2 * size**3 / best


def train_flops_per_shower(family: ModelFamily, batch: int = 16) -> float:
    """Model FLOPs per shower of one training step: the module's training_step and backward (no optimizer)."""
    module = family.module()
    inputs = family.benchmark_batch(batch)
    counter = flop_counter()
    with counter, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        module.training_step(inputs, 0).backward()
    return counter.get_total_flops() / batch


def _one_step(family: ModelFamily) -> int | None:
    return None if family.sampling_steps() is None else 1


def generation_flops_per_shower_step(family: ModelFamily, batch: int = 4) -> float:
    """Model FLOPs per shower of one sampling step (the whole sampling of a one-pass family), forward only."""
    module = family.module().eval()
    cond = family.benchmark_batch(batch)[0]
    counter = flop_counter()
    with counter:
        family.sample(module, cond, steps=_one_step(family), batch_size=batch, seed=0, progress=False)
    return counter.get_total_flops() / batch


def training_throughput(family: ModelFamily, timed_steps: int = 4, warmup_steps: int = 2,
                        clock: Clock = time.perf_counter) -> float:
    """Showers/s of Lightning training steps at train.batch_size, after `warmup_steps` untimed steps."""
    class StepTimer(pl.Callback):
        def __init__(self) -> None:
            self.seconds = 0.0
            self.showers = 0
            self._start = 0.0

        def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Sequence,
                                 batch_idx: int) -> None:
            _sync(module.device)
            self._start = clock()

        def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: object,
                               batch: Sequence, batch_idx: int) -> None:
            _sync(module.device)
            if batch_idx >= warmup_steps:
                self.seconds += clock() - self._start
                self.showers += batch[0].shape[0]

    config = family.config
    size = config.train.batch_size
    steps = warmup_steps + timed_steps
    data = TensorDataset(*family.benchmark_batch(size * steps))
    timer = StepTimer()
    pl.seed_everything(0, verbose=False)
    quiet_lightning()
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                         precision=config.train.precision, callbacks=[timer],
                         accelerator="gpu" if _device().type == "cuda" else "cpu", devices=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(family.module(), DataLoader(data, batch_size=size))
    return timer.showers / timer.seconds


@dataclass
class GenerationTiming:
    """Generation cost at one batch size: ms per shower and sampling step, measured over `timed_steps`
    (one pass of a one-pass family: timed_steps 1)."""

    batch_size: int
    ms_per_shower_step: float
    timed_steps: int

    def ms_per_shower(self, steps: int | None) -> float:
        return self.ms_per_shower_step * (steps or 1)


def generation_ms_per_shower(family: ModelFamily, batch_size: int, timed_steps: int = 2,
                             clock: Clock = time.perf_counter) -> GenerationTiming:
    """Time `timed_steps` sampling steps (sample.precision) at `batch_size` after a one-step warm-up (skipped
    for batches of 1000 and more, where one step already takes long); a one-pass family: one whole pass."""
    device = _device()
    module = family.module().to(device).eval()
    cond = family.benchmark_batch(batch_size)[0].to(device)
    one = _one_step(family)
    timed = timed_steps if one is not None else None

    def run(steps: int | None) -> None:
        family.sample(module, cond, steps=steps, batch_size=batch_size, seed=0, progress=False)

    if batch_size < 1000:
        run(one)
    _sync(device)
    start = clock()
    run(timed)
    _sync(device)
    seconds = clock() - start
    n = timed or 1
    return GenerationTiming(batch_size, 1000 * seconds / n / batch_size, n)


def peak_memory_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def runner_overhead(dataset: str, data_dir: str = "data") -> None:
    """Print the study runner's overhead on a smoke study (base, higher_lr, fewer_steps; 1 seed) run with
    1 and 2 workers: 1 - summed in-cell training and evaluation seconds / (workers x study wall time)."""
    print("runner overhead (smoke study: base, higher_lr, fewer_steps, 1 seed; target <= 10% with 1 worker):")
    for workers in (1, 2):
        overhead, elapsed = measure(workers, dataset=dataset, data_dir=data_dir)
        print(f"  {workers} worker(s): study {overhead.wall_seconds:6.1f} s ({elapsed:.1f} s with start-up), "
              f"in cells {overhead.in_cell_seconds:6.1f} s -> overhead {100 * overhead.fraction:5.1f} %")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m calo_ablate.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="1", help="CaloChallenge dataset (default 1 = 1-photons)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--gen-batches", default="1,100,10000", help="generation batch sizes, comma-separated")
    parser.add_argument("--train-steps", type=int, default=4, help="timed training steps (after 2 warm-up)")
    parser.add_argument("--precision", default=None, choices=["32-true", "bf16-mixed"],
                        help="train.precision for the training measurement (default: the config's)")
    parser.add_argument("--skip-study", action="store_true", help="leave out the runner-overhead study (minutes)")
    parser.add_argument("--skip-profile", action="store_true", help="leave out the training and sampling profiles")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config value, e.g. --set model.family=calodiffusion (repeatable)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time matmul, training and generation by process CPU time (with --threads 1: the "
                             "figures of a CPU shared with other jobs, without the time they take from us)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = canonical_dataset(args.dataset)
    precision = [f"train.precision={args.precision}"] if args.precision else []
    config = resolve_config(dataset, "full", cli_set=[*args.overrides, *precision])
    family = load_family(config)
    geometry = load_geometry(dataset)
    v, layers = geometry.n_voxels, geometry.n_layers
    device = _device()
    check_precision(config.train.precision, device, "--precision (train.precision)")
    if args.cpu_time and device.type != "cpu":
        parser.error("--cpu-time times CPU runs only; this machine runs the bench on its GPU")
    steps_full = family.sampling_steps()
    steps_fewer = max(1, round(steps_full * FEWER_STEPS_FACTOR)) if steps_full is not None else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"calo-ablate bench: dataset {dataset}, {family.title} ({v} voxels, {layers} layers) on {name}, "
          f"torch {torch.__version__}")

    clock = time.process_time if args.cpu_time else time.perf_counter
    reference = matmul_flops(device=device, clock=clock)
    print(f"fp32 matmul (2048^2):     {reference / 1e9:8.1f} GFLOP/s ({'CPU' if args.cpu_time else 'wall'} time)")
    print(f"instruction set:          {instruction_set().describe()}")
    flops = train_flops_per_shower(family)
    showers_s = training_throughput(family, timed_steps=args.train_steps, clock=clock)
    achieved = showers_s * flops
    print(f"training ({config.train.precision}, batch {config.train.batch_size}): {showers_s:8.1f} showers/s; "
          f"{flops / 1e9:.3f} GFLOP/shower (fwd+bwd) -> {achieved / 1e9:.1f} GFLOP/s = "
          f"{100 * achieved / reference:.0f}% of the matmul rate (seed study's laptop: "
          f"{SEED_LAPTOP_SHOWERS_S:.0f} showers/s)")

    gen_flops = generation_flops_per_shower_step(family)
    print(f"generation ({gen_flops / 1e6:.0f} MFLOP per shower per sampling step; "
          f"a few steps timed per batch size and scaled per step):")
    bf16 = config.model_copy(update={"sample": config.sample.model_copy(update={"precision": "bf16-mixed"})})
    for batch in (int(b) for b in args.gen_batches.split(",")):
        # bf16 (sample.precision=bf16-mixed) only where native and below batch 1000, to bound the bench's time
        for label, cfg in [("fp32", config)] + ([("bf16", bf16)] if batch < 1000 and bf16_native(device) else []):
            try:
                timing = generation_ms_per_shower(load_family(cfg), batch, timed_steps=1 if batch >= 1000 else 2,
                                                  clock=clock)
            except RuntimeError as err:  # out of memory at a large batch
                print(f"  batch {batch:>6} {label}: not measured ({str(err).splitlines()[0]})")
                continue
            rate = gen_flops / (timing.ms_per_shower_step / 1000)
            at = (f" at {steps_full} steps, {timing.ms_per_shower(steps_fewer):9.1f} at {steps_fewer} steps "
                  f"({timing.timed_steps} step(s) timed;" if steps_full is not None else " (one pass;")
            print(f"  batch {batch:>6} {label}: {timing.ms_per_shower(steps_full):10.1f} ms/shower{at} "
                  f"{rate / 1e9:.1f} GFLOP/s = {100 * rate / reference:.0f}% of the matmul rate)")
    print(f"peak memory (ru_maxrss):  {peak_memory_mib():8.0f} MiB")
    if not args.skip_profile and device.type == "cpu":
        for profiled in (profile_training_step(family), profile_sampling_step(family)):
            print(format_profile(profiled, reference, cpu_time=args.cpu_time))
    if not args.skip_study:
        runner_overhead(dataset)
    return 0

