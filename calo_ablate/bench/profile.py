"""Where the time of one training step and one sampling step of a model family goes (`make bench`).

Both steps run under torch.profiler (CPU activity). Every operator's self time (its time minus that
of the operators it calls, so nothing counts twice) goes to one category:
- convolution, attention (scaled-dot-product kernels), dense (addmm, mm, bmm): the FLOP-carrying
  operators of forward and backward;
- elementwise and data movement: every other operator of forward and backward (activations, adds,
  concatenation, copies, layer norm, pooling, the loss);
- clipping, optimizer (step, zero_grad, a per-step LR scheduler), after-step hooks (CaloScore v2: its
  EMA update): every operator inside those phases of the training step, whatever its kind;
- outside operators: the step's wall time minus the self time of all operators, i.e. Python, the
  autograd engine's bookkeeping and the profiler's own cost.
The training step is the module's own: training_step, backward, on_before_optimizer_step (clipping),
the optimizer and LR scheduler of configure_optimizers, on_train_batch_end, without Lightning's
loop (whose cost `training_throughput` in calo_ablate.bench includes). FLOPs per category come from
torch.utils.flop_counter.FlopCounterMode on the same step, so each FLOP category's rate can be set
beside the fp32 matmul rate measured in the same process.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import torch
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from calo_ablate.model.interface import ModelFamily

__all__ = ["CATEGORIES", "StepProfile", "flop_counter", "format_profile", "operator_category",
           "profile_sampling_step", "profile_step", "profile_training_step", "training_loss"]

CONVOLUTION, ATTENTION, DENSE, ELEMENTWISE = "convolution", "attention", "dense (linear)", "elementwise, data movement"
CLIPPING, OPTIMIZER, EMA_PHASE, OUTSIDE = ("clipping", "optimizer", "after-step hooks (EMA)",
                                           "outside operators (Python, autograd)")
CATEGORIES = (CONVOLUTION, ATTENTION, DENSE, ELEMENTWISE, CLIPPING, OPTIMIZER, EMA_PHASE, OUTSIDE)
_PHASES = (CLIPPING, OPTIMIZER, EMA_PHASE)  # record_function labels of the training step's phases
_DENSE_OPS = frozenset({"mm", "addmm", "bmm", "baddbmm", "matmul", "linear"})


def operator_category(name: str) -> str:
    """The FLOP category of an operator named as the profiler ('aten::mkldnn_convolution') or the FLOP
    counter ('aten.convolution_backward') names it; ELEMENTWISE for every other operator."""
    op = name.split("::")[-1].split(".")[-1] if "::" in name else name.split(".")[1 if "." in name else 0]
    if "conv" in op:
        return CONVOLUTION
    if "attention" in op:
        return ATTENTION
    return DENSE if op in _DENSE_OPS else ELEMENTWISE


@dataclass
class StepProfile:
    """One profiled step: wall seconds, seconds and FLOPs per category, the busiest operators."""

    title: str
    showers: int
    wall_seconds: float
    cpu_seconds: float  # process CPU time of the profiled step
    seconds: dict[str, float]
    flops: dict[str, float]
    top_operators: list[tuple[str, float, int]] = field(default_factory=list)  # (name, self seconds, calls)

    @property
    def total_flops(self) -> float:
        return sum(self.flops.values())


def _phase_of(event: object) -> str | None:
    parent = getattr(event, "cpu_parent", None)
    while parent is not None:
        if parent.name in _PHASES:
            return parent.name
        parent = parent.cpu_parent
    return None


def _categorised_seconds(prof: profile, wall_seconds: float) -> dict[str, float]:
    seconds: dict[str, float] = defaultdict(float)
    for event in prof.events():
        if not event.name.startswith("aten::"):
            continue  # annotations and autograd-engine wrappers: their self time is overhead
        category = _phase_of(event) or operator_category(event.name)
        seconds[category] += event.self_cpu_time_total / 1e6
    seconds[OUTSIDE] = max(0.0, wall_seconds - sum(seconds.values()))
    return {c: seconds.get(c, 0.0) for c in CATEGORIES}


def _top_operators(prof: profile, n: int) -> list[tuple[str, float, int]]:
    rows = [(a.key, a.self_cpu_time_total / 1e6, a.count) for a in prof.key_averages() if a.key.startswith("aten::")]
    return sorted(rows, key=lambda r: -r[1])[:n]


def _cpu_attention_flops(query: torch.Size, key: torch.Size, value: torch.Size, *args: object,
                         **kwargs: object) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_attention_backward_flops(grad_out: torch.Size, query: torch.Size, key: torch.Size, value: torch.Size,
                                  *args: object, **kwargs: object) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


def flop_counter() -> FlopCounterMode:
    """A FlopCounterMode that also counts the CPU flash-attention kernels, which torch's own table leaves
    out (the same formulas as its GPU attention kernels: 2 matmuls forward, 5 backward)."""
    aten = torch.ops.aten
    return FlopCounterMode(display=False, custom_mapping={
        aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward_flops,
    })


def _flops_by_category(step: Callable[[], None]) -> dict[str, float]:
    counter = flop_counter()
    with counter:
        step()
    flops: dict[str, float] = defaultdict(float)
    for op, count in counter.get_flop_counts().get("Global", {}).items():
        flops[operator_category(str(op))] += count
    return dict(flops)


def profile_step(title: str, showers: int, step: Callable[[], None], top: int = 12) -> StepProfile:
    """Profile `step` (a step of `showers` showers) on the CPU after one untimed call: FLOPs by category,
    then the operators' self times by category."""
    step()  # warm-up: oneDNN primitive creation, allocator
    flops = _flops_by_category(step)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return StepProfile(title, showers, wall, cpu, _categorised_seconds(prof, wall), flops, _top_operators(prof, top))


def training_loss(module: pl.LightningModule, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The loss tensor of module.training_step(batch, 0); a TypeError when the step returns anything else
    (every family returns its loss)."""
    loss = module.training_step(batch, 0)
    if not isinstance(loss, torch.Tensor):
        msg = f"{type(module).__name__}.training_step returned {type(loss).__name__}, expected the loss tensor"
        raise TypeError(msg)
    return loss


def _optimizer_and_step_scheduler(module: pl.LightningModule) -> tuple[torch.optim.Optimizer, Any]:
    """(the optimizer, its scheduler when it steps after every optimizer step, else None) of the module's
    configure_optimizers: one optimizer, or a dict of it and an optional lr_scheduler dict."""
    setup = module.configure_optimizers()
    optimizer, scheduler = setup, None
    if isinstance(setup, dict):
        optimizer, scheduler_setup = setup["optimizer"], setup.get("lr_scheduler")
        if isinstance(scheduler_setup, dict) and scheduler_setup.get("interval") == "step":
            scheduler = scheduler_setup["scheduler"]
    if not isinstance(optimizer, torch.optim.Optimizer):
        msg = f"{type(module).__name__}.configure_optimizers: one optimizer expected, got {type(optimizer).__name__}"
        raise TypeError(msg)
    return optimizer, scheduler


def profile_training_step(family: ModelFamily, module: pl.LightningModule | None = None,
                          top: int = 12) -> StepProfile:
    """Profile one training step of `module` (default family.module()) at train.batch_size on the CPU (after
    one untimed step)."""
    config = family.config
    module = (module or family.module()).train()
    # configure_optimizers and the after-step hooks read only these of the trainer: a one-process stand-in
    # (the ignores here: deliberate stand-ins, not what the attributes' types say)
    module.trainer = SimpleNamespace(world_size=1, global_rank=0, estimated_stepping_batches=1000, global_step=0,  # type: ignore[assignment]
                                     logger=None, loggers=[])
    # logging needs a real Trainer, and is no part of the model's cost: a family that logs in training_step
    # (CaloDiffusion) logs nowhere here
    module.log = module.log_dict = lambda *args, **kwargs: None  # type: ignore[method-assign,assignment]
    optimizer, scheduler = _optimizer_and_step_scheduler(module)
    batch = family.benchmark_batch(config.train.batch_size)

    def step() -> None:
        loss = training_loss(module, batch)
        loss.backward()
        with record_function(CLIPPING):
            module.on_before_optimizer_step(optimizer)
        with record_function(OPTIMIZER):
            optimizer.step()
            optimizer.zero_grad()
            if scheduler is not None:
                scheduler.step()
        with record_function(EMA_PHASE):
            module.on_train_batch_end(loss, batch, 0)

    title = f"one training step (batch {config.train.batch_size}, fp32, {torch.get_num_threads()} thread(s))"
    return profile_step(title, config.train.batch_size, step, top)


def profile_sampling_step(family: ModelFamily, batch_size: int = 100, top: int = 12) -> StepProfile:
    """Profile one sampling step (one pass for a one-pass family) at `batch_size` on the CPU, fp32."""
    module = family.module().eval()
    cond = family.benchmark_batch(batch_size)[0]
    steps = None if family.sampling_steps() is None else 1

    def step() -> None:
        family.sample(module, cond, steps=steps, batch_size=batch_size, seed=0, progress=False, precision="32-true")

    title = f"one sampling step ({family.title}, batch {batch_size}, fp32, {torch.get_num_threads()} thread(s))"
    return profile_step(title, batch_size, step, top)


def format_profile(p: StepProfile, matmul_flops: float, cpu_time: bool = False) -> str:
    """The profile as text: showers/s and achieved FLOP rate against `matmul_flops`, the category
    table (share of the wall time, ms, GFLOP/s and fraction of the matmul rate where FLOPs are
    counted) and the busiest operators by self time.

    cpu_time: state times and rates in process CPU time (for a matmul rate timed the same way): each
    category's wall time is scaled by the step's CPU-to-wall ratio, i.e. the time other jobs took from
    this process is assumed spread evenly over the step."""
    scale = p.cpu_seconds / p.wall_seconds if cpu_time else 1.0
    step_seconds = p.wall_seconds * scale
    rate = p.total_flops / step_seconds
    clock = "CPU time" if cpu_time else "wall time"
    lines = [(f"{p.title}: {1000 * step_seconds:.0f} ms {clock} under the profiler = "
              f"{p.showers / step_seconds:.1f} showers/s, {rate / 1e9:.1f} GFLOP/s = "
              f"{100 * rate / matmul_flops:.0f}% of the matmul rate"),
             f"  {'category':<38} {'share':>6} {'ms':>8} {'GFLOP/s':>8} {'of matmul':>9}"]
    for category in CATEGORIES:
        seconds = p.seconds[category] * scale
        if seconds == 0.0 and category in _PHASES:
            continue
        flops = p.flops.get(category, 0.0)
        speed = f"{flops / seconds / 1e9:8.1f} {100 * flops / seconds / matmul_flops:8.0f}%" \
            if flops and seconds else f"{'':>8} {'':>9}"
        lines.append(f"  {category:<38} {100 * seconds / step_seconds:5.1f}% {1000 * seconds:8.1f} {speed}")
    lines.append("  busiest operators (self time): " + "; ".join(
        f"{name.removeprefix('aten::')} {1000 * s * scale:.0f} ms x{calls}" for name, s, calls in p.top_operators))
    return "\n".join(lines)
