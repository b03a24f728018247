"""The bench's cases (every built-in family, and CaloFlow's student) and what one measurement of a case does.

A case is a config (`model.family` and its overrides): caloscore_v2, calodiffusion, caloflow (the MAF
teacher) and caloflow_student (`model.student.enabled=true`: the IAF, trained by distillation from a
teacher built from the same config with the student off). Every measurement goes through the family
interface: its module (the student's: `derived_module(teacher)`), its benchmark batch, its sampler.

Generation is timed on a part of the sampling and scaled to the whole (a SamplingPlan):
- a diffusion family (sampling_steps() not None): a few network evaluations, scaled in proportion to
  the evaluations of the configured steps (CaloDiffusion's sample offset skips the noisiest steps);
- a MAF teacher (zuko MaskedAutoregressiveTransform blocks inverted while sampling): the inverse of
  every flow-II block limited to 1 and to 4 of its sequential passes, extrapolated linearly to all of
  them (flow-I and the fixed costs run whole in both);
- a one-pass sampler (the IAF student): timed whole.
FLOPs are counted on the same parts (torch.utils.flop_counter) at a small batch and scaled alike.
"""

from __future__ import annotations

import resource
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from zuko.flows import LazyInverse, MaskedAutoregressiveTransform

from calo_ablate.bench.profile import flop_counter, training_loss
from calo_ablate.config import Config, resolve_config
from calo_ablate.model.families import load_family
from calo_ablate.model.interface import ModelFamily
from calo_ablate.runs.train import quiet_lightning

__all__ = ["CASES", "BenchCase", "SamplingPlan", "bench_config", "generation_cost", "generation_flops_per_shower",
           "matmul_flops", "network_evaluations", "peak_memory_mib", "sampling_plan",
           "train_flops_per_shower", "training_module", "training_throughput"]

Clock = Callable[[], float]  # seconds: time.perf_counter (wall) or time.process_time (CPU time of the process)
MAF_PASSES_TIMED = (1, 4)  # flow-II inverse passes per block timed for a MAF teacher (linear extrapolation)


@dataclass(frozen=True)
class BenchCase:
    """A benchmarked config: `overrides` on the dataset's full profile; `teacher_overrides`: the config of
    the teacher a derived training distils from (None: trained from scratch); warm-up and timed
    Lightning steps of the training measurement; network evaluations timed per generation at batches
    below and from 1,000 showers (diffusion families)."""

    name: str
    title: str
    overrides: tuple[str, ...]
    teacher_overrides: tuple[str, ...] | None = None
    warmup_steps: int = 2
    timed_steps: int = 4
    timed_evaluations: tuple[int, int] = (2, 1)


CASES: dict[str, BenchCase] = {case.name: case for case in (
    BenchCase("caloscore_v2", "CaloScore v2", ("model.family=caloscore_v2",)),
    # about 1 s per forward and backward of 32 showers on one thread: 1 warm-up and 2 timed steps of 128
    BenchCase("calodiffusion", "CaloDiffusion", ("model.family=calodiffusion",), warmup_steps=1, timed_steps=2,
              timed_evaluations=(2, 1)),
    BenchCase("caloflow", "CaloFlow teacher (MAF)", ("model.family=caloflow",)),
    BenchCase("caloflow_student", "CaloFlow student (IAF)", ("model.family=caloflow", "model.student.enabled=true"),
              teacher_overrides=("model.family=caloflow", "model.student.enabled=false")),
)}


def bench_config(case: BenchCase, dataset: str, extra: Sequence[str] = ()) -> Config:
    """The case's config on `dataset` (full profile), with `extra` --set values applied after its own."""
    return resolve_config(dataset, "full", cli_set=[*case.overrides, *extra])


def training_module(case: BenchCase, family: ModelFamily, extra: Sequence[str] = ()) -> pl.LightningModule:
    """The module the case trains: family.module(), or for a derived case family.derived_module(teacher)
    with an untrained teacher of the case's teacher config (the cost of a step does not depend on its weights)."""
    if case.teacher_overrides is None:
        return family.module()
    teacher_config = resolve_config(family.config.data.dataset, "full", cli_set=[*case.teacher_overrides, *extra])
    return family.derived_module(load_family(teacher_config).module().eval())


def peak_memory_mib() -> float:
    """Peak resident memory of this process so far, MiB: VmHWM of /proc/self/status where there is one (Linux),
    else ru_maxrss. Linux carries ru_maxrss across execve, so a process started by a larger one would report
    its parent's peak; VmHWM belongs to the process's own address space."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


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


def train_flops_per_shower(family: ModelFamily, module: pl.LightningModule, batch: int = 16) -> float:
    """Model FLOPs per shower of one training step: the module's training_step and backward (no optimizer)."""
    inputs = family.benchmark_batch(batch)
    counter = flop_counter()
    with counter, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        training_loss(module, inputs).backward()
    return counter.get_total_flops() / batch


def training_throughput(family: ModelFamily, module: pl.LightningModule, timed_steps: int = 4,
                        warmup_steps: int = 2, clock: Clock = time.perf_counter) -> float:
    """Showers/s of Lightning training steps of `module` at train.batch_size, after `warmup_steps` untimed steps."""
    class StepTimer(pl.Callback):
        def __init__(self) -> None:
            self.seconds = 0.0
            self.showers = 0
            self._start = 0.0

        def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Sequence,
                                 batch_idx: int) -> None:
            _sync(pl_module.device)
            self._start = clock()

        def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: object,
                               batch: Sequence, batch_idx: int) -> None:
            _sync(pl_module.device)
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
        trainer.fit(module, DataLoader(data, batch_size=size))
    return timer.showers / timer.seconds


# ---- generation -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamplingPlan:
    """How a family's sampling is timed in part: `run(units)` samples with `units` of the scaled unit
    (network evaluations, MAF passes; ignored when whole); `timed`: the units timed (one value: scaled in
    proportion; two: extrapolated linearly); `full`: the units of the configured sampling."""

    unit: str
    timed: tuple[int, ...]
    full: int

    def scale(self, measured: Sequence[float]) -> float:
        """The whole sampling's value from the values measured at `timed` units."""
        if len(self.timed) == 1:
            return measured[0] * self.full / self.timed[0]
        (u0, u1), (m0, m1) = self.timed, measured
        return m0 + (m1 - m0) / (u1 - u0) * (self.full - u0)

    def describe(self) -> str:
        if self.unit == "whole":
            return "timed whole"
        shown = " and ".join(str(u) for u in self.timed)
        how = "scaled" if len(self.timed) == 1 else "extrapolated linearly"
        return f"{shown} of {self.full} {self.unit} timed, {how}"


def _maf_blocks(module: nn.Module) -> list[MaskedAutoregressiveTransform]:
    """The MAF blocks of a module's flow2 that sampling inverts (none in an IAF, whose blocks are LazyInverse)."""
    flow = getattr(module, "flow2", None)
    if flow is None or any(isinstance(m, LazyInverse) for m in flow.modules()):
        return []
    return [m for m in flow.modules() if isinstance(m, MaskedAutoregressiveTransform)]


@contextmanager
def _limited_passes(blocks: list[MaskedAutoregressiveTransform], passes: int) -> Iterator[None]:
    saved = [b.passes for b in blocks]
    for b in blocks:
        b.passes = min(b.passes, passes)
    try:
        yield
    finally:
        for b, p in zip(blocks, saved, strict=True):
            b.passes = p


def network_evaluations(family: ModelFamily, steps: int) -> int:
    """Network evaluations of a diffusion family's sampling at `steps` (CaloDiffusion skips
    model.sample_offset of the noisiest steps, at most steps - 1)."""
    offset = int(getattr(family.config.model, "sample_offset", 0) or 0)
    return steps - min(offset, steps - 1)


def sampling_plan(family: ModelFamily, module: pl.LightningModule, batch_size: int, timed_evaluations: int,
                  precision: str | None = None,
                  ) -> tuple[SamplingPlan, Callable[[int], None], Callable[[torch.Tensor, int], None]]:
    """(plan, run(units) at `batch_size` with the benchmark condition, sample(cond, units) for FLOP counts);
    precision: the sampler's (None: sample.precision)."""
    steps = family.sampling_steps()
    if steps is not None:
        offset = steps - network_evaluations(family, steps)
        plan = SamplingPlan("network evaluations", (timed_evaluations,), network_evaluations(family, steps))

        def sample(cond: torch.Tensor, units: int) -> None:
            family.sample(module, cond, steps=units + offset, batch_size=len(cond), seed=0, progress=False,
                          precision=precision)
    else:
        blocks = _maf_blocks(module)
        plan = SamplingPlan("MAF passes per flow-II block", MAF_PASSES_TIMED, max(b.passes for b in blocks)) \
            if blocks else SamplingPlan("whole", (1,), 1)

        def sample(cond: torch.Tensor, units: int) -> None:
            with _limited_passes(blocks, units):
                family.sample(module, cond, steps=None, batch_size=len(cond), seed=0, progress=False,
                              precision=precision)
    cond = family.benchmark_batch(batch_size)[0].to(module.device)
    return plan, lambda units: sample(cond, units), sample


@dataclass(frozen=True)
class GenerationCost:
    """Generation at one batch size: ms per shower and MFLOP per shower of the whole sampling (scaled from
    the timed part, `plan`), with the process's resident memory before sampling and at its peak."""

    batch_size: int
    ms_per_shower: float
    mflop_per_shower: float
    plan: str
    rss_before_mib: float
    peak_rss_mib: float


def generation_flops_per_shower(family: ModelFamily, module: pl.LightningModule, timed_evaluations: int = 1,
                                precision: str | None = None, flop_batch: int = 4) -> float:
    """Model FLOPs per shower of `module`'s whole sampling: the SamplingPlan's parts counted at `flop_batch`
    showers and scaled to the configured sampling."""
    plan, _, sample = sampling_plan(family, module, flop_batch, timed_evaluations, precision)
    small = family.benchmark_batch(flop_batch)[0].to(module.device)
    flops = []
    for units in plan.timed:
        counter = flop_counter()
        with counter:
            sample(small, units)
        flops.append(counter.get_total_flops() / flop_batch)
    return plan.scale(flops)


def generation_cost(family: ModelFamily, batch_size: int, timed_evaluations: int, clock: Clock,
                    precision: str | None = None, flop_batch: int = 4) -> GenerationCost:
    """Time and count the FLOPs of `family`'s sampling at `batch_size` (see SamplingPlan); one untimed
    warm-up of the smallest part below 1,000 showers (oneDNN primitive creation, the allocator)."""
    device = _device()
    module = family.module().to(device).eval()
    plan, run, _ = sampling_plan(family, module, batch_size, timed_evaluations, precision)
    flops = generation_flops_per_shower(family, module, timed_evaluations, precision, flop_batch)
    before = peak_memory_mib()
    if batch_size < 1000:
        run(min(plan.timed))
    seconds = []
    for units in plan.timed:
        _sync(device)
        start = clock()
        run(units)
        _sync(device)
        seconds.append(clock() - start)
    return GenerationCost(batch_size, 1000 * plan.scale(seconds) / batch_size, flops / 1e6,
                          plan.describe(), before, peak_memory_mib())
