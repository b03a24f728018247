"""Speed and memory figures of every built-in family on this machine (`make bench`); prints, asserts nothing.

    python -m calo_ablate.bench --dataset 1 [--family NAME|all] [--threads N] [--cpu-time]
                                [--gen-batches 1,100,10000] [--bf16] [--set key=value ...]

Cases (calo_ablate/bench/families.py): caloscore_v2, calodiffusion, caloflow (the MAF teacher) and
caloflow_student (model.student.enabled=true, trained by distillation from a teacher); --family all runs
every one. For each case, each measurement runs in a process of its own (calo_ablate/bench/worker.py),
so that the peak resident memory printed (VmHWM, the high-water mark of the process's own address space) is that measurement's alone:
- training: showers/s of real Lightning training steps at train.batch_size (optimizer, hooks included;
  the case's warm-up and timed steps are printed), FLOPs per shower of training_step and backward
  (torch.utils.flop_counter), the achieved rate as a fraction of the fp32 matmul rate measured in the
  same process just before;
- generation at each batch size: ms per shower of the family's sampler, a part of the sampling timed and
  scaled to the whole (families.SamplingPlan: a few network evaluations of a diffusion family, 1 and 4
  passes per flow-II block of a MAF teacher, the whole of a one-pass sampler), its FLOP rate as a fraction
  of the matmul rate, the process's resident memory before sampling and at its peak, and the published
  CPU time per shower at that batch size where the CaloChallenge released one (report/published.py, via bench/published.py).
  Batches run in ascending order; a worker whose resident memory exceeds MEMORY_GUARD of the memory
  available at its start is stopped, and the line says so (a large batch of an unchunked sampler);
- the profile of one training step and one sampling step at batch 1 and 100 by operator category
  (calo_ablate/bench/profile.py, CPU only; --skip-profile leaves it out);
- runner_overhead: a small smoke study with 1 and 2 workers (calo_ablate/bench/overhead.py);
  --skip-study leaves it out.
--cpu-time times matmul, training and generation by the process's CPU time instead of wall time: on a
CPU shared with other jobs, wall times with one thread mostly measure the other jobs; CPU time counts
only the cycles this process got (caches and memory bandwidth are still shared). It sums over threads,
so it is meant for --threads 1, and for CPU runs only. The instruction set (calo_ablate/model/precision.py)
is printed next to the matmul rate, and the seed study's laptop (13 training showers/s) next to CaloScore
v2's training figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from calo_ablate.bench.families import (
    CASES,
    BenchCase,
    bench_config,
    matmul_flops,
    peak_memory_mib,
    sampling_plan,
    training_module,
)
from calo_ablate.bench.overhead import SMALL_STUDY, measure
from calo_ablate.bench.profile import format_profile, profile_step, profile_training_step
from calo_ablate.bench.published import PUBLISHED_SOURCE, published_case_ms
from calo_ablate.bench.worker import RESULT_PREFIX
from calo_ablate.config import canonical_dataset
from calo_ablate.errors import ConfigError
from calo_ablate.model.families import load_family
from calo_ablate.model.precision import bf16_native, check_precision, instruction_set

__all__ = ["PROFILE_BATCHES", "available_memory_mib", "main", "matmul_flops", "peak_memory_mib", "print_profiles",
           "run_measurement",
           "runner_overhead"]

SEED_LAPTOP_SHOWERS_S = 13.0  # the seed study: about two hours per full dataset-1 epoch on a laptop
PROFILE_BATCHES = (1, 100)  # sampling-step profiles
MEMORY_GUARD = 0.8  # a worker whose resident memory exceeds this share of MemAvailable (at its start) is stopped


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _resident_mib(pid: int) -> float:
    """VmRSS of process `pid`, MiB (0 once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return 0.0
    return 0.0


def run_measurement(spec: dict[str, Any], limit_mib: float | None = None) -> dict[str, Any]:
    """Run one measurement in a fresh `python -m calo_ablate.bench.worker` process and return its figures;
    a RuntimeError with the worker's last output lines when it fails (e.g. out of memory). limit_mib: the
    worker is killed, and a RuntimeError says so, when its resident memory exceeds this (polled every 0.2 s;
    default MEMORY_GUARD x MemAvailable now, none where /proc is missing)."""
    available = available_memory_mib()
    limit = limit_mib if limit_mib is not None else (MEMORY_GUARD * available if available else None)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        worker = subprocess.Popen([sys.executable, "-m", "calo_ablate.bench.worker", json.dumps(spec)],
                                  stdout=out, stderr=err, text=True)
        while worker.poll() is None:
            if limit is not None and (rss := _resident_mib(worker.pid)) > limit:
                worker.kill()
                worker.wait()
                msg = (f"stopped at {rss:,.0f} MiB resident, above the bench's limit of {limit:,.0f} MiB "
                       f"({MEMORY_GUARD:.0%} of the memory available when it started)")
                raise RuntimeError(msg)
            time.sleep(0.2)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line.removeprefix(RESULT_PREFIX))
    tail = " | ".join((stderr or stdout).strip().splitlines()[-3:])
    msg = f"bench worker {spec['task']} {spec['case']} failed (exit code {worker.returncode}): {tail}"
    raise RuntimeError(msg)


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _fraction(flop_per_s: float, matmul: float) -> str:
    return f"{flop_per_s / 1e9:.1f} GFLOP/s = {100 * flop_per_s / matmul:.0f}% of the matmul rate"


def _print_training(case: BenchCase, spec: dict[str, Any]) -> dict[str, Any] | None:
    try:
        r = run_measurement({**spec, "task": "train"})
    except RuntimeError as err:
        print(f"  training: not measured ({err})")
        return None
    laptop = f" (seed study's laptop: {SEED_LAPTOP_SHOWERS_S:.0f} showers/s)" if case.name == "caloscore_v2" else ""
    print(f"  training ({r['precision']}, batch {r['batch_size']}, {r['warmup_steps']} warm-up + {r['timed_steps']} "
          f"timed steps): {r['showers_s']:8.1f} showers/s; {r['flop_per_shower'] / 1e9:.3f} GFLOP/shower "
          f"(fwd+bwd) -> {_fraction(r['showers_s'] * r['flop_per_shower'], r['matmul_flops'])} "
          f"({r['matmul_flops'] / 1e9:.1f} GFLOP/s in that process); peak memory {r['peak_rss_mib']:,.0f} MiB{laptop}")
    return r


def available_memory_mib() -> float | None:
    """MemAvailable of /proc/meminfo, MiB; None where there is none (not Linux)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _print_generation(case: BenchCase, spec: dict[str, Any], batch: int, label: str) -> dict[str, Any] | None:
    try:
        r = run_measurement({**spec, "task": "generate", "batch": batch})
    except RuntimeError as err:
        print(f"  batch {batch:>6} {label}: not measured ({err})")
        return None
    published = published_case_ms(case.name, spec["dataset"], batch)
    beside = f"published CPU {_ms(published.mean_ms)} +- {_ms(published.std_ms)}" if published else "no published time"
    rate = r["mflop_per_shower"] * 1e6 / (r["ms_per_shower"] / 1000)
    print(f"  batch {batch:>6} {label}: {r['ms_per_shower']:11,.1f} ms/shower; {_fraction(rate, r['matmul_flops'])} "
          f"({r['matmul_flops'] / 1e9:.1f}); peak memory {r['peak_rss_mib']:,.0f} MiB (before sampling "
          f"{r['rss_before_mib']:,.0f}); {beside}; {r['plan']}")
    return r


def print_profiles(case: BenchCase, dataset: str, extra: Sequence[str], matmul: float, cpu_time: bool) -> None:
    family = load_family(bench_config(case, dataset, extra))
    print(format_profile(profile_training_step(family, training_module(case, family, extra)), matmul,
                         cpu_time=cpu_time))
    for batch in PROFILE_BATCHES:
        module = family.module().eval()
        plan, run, _ = sampling_plan(family, module, batch, 1, precision="32-true")
        part = min(plan.timed)
        what = "whole sampling" if plan.unit == "whole" else f"{part} of {plan.full} {plan.unit}"
        title = f"sampling ({case.title}, batch {batch}, {what}, fp32, {torch.get_num_threads()} thread(s))"
        print(format_profile(profile_step(title, batch, partial(run, part)), matmul,
                             cpu_time=cpu_time))


def runner_overhead(dataset: str, data_dir: str = "data") -> None:
    """Print the study runner's overhead on the smoke study (`ablate --profile smoke`: every shipped row, 2
    seeds) and on the small study of earlier figures (base, higher_lr, fewer_steps; 1 seed), each run with 1
    and 2 workers: 1 - summed in-cell training and evaluation seconds / (workers x study wall time)."""
    for title, only, seeds in (("smoke study: every row, 2 seeds", None, 2),
                               ("small smoke study: base, higher_lr, fewer_steps, 1 seed", SMALL_STUDY, 1)):
        print(f"runner overhead ({title}; target <= 10% with 2 workers):")
        for workers in (1, 2):
            bench = measure(workers, dataset=dataset, data_dir=data_dir, only=only, seeds=seeds)
            overhead = bench.overhead
            print(f"  {workers} worker(s): study {overhead.wall_seconds:6.1f} s ({bench.elapsed:.1f} s with start-up), "
                  f"in cells {overhead.in_cell_seconds:6.1f} s -> overhead {100 * overhead.fraction:5.1f} %")
            print("\n".join(bench.timeline))
            print("\n".join(split.line(bench.elapsed) for split in bench.splits))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m calo_ablate.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="1", help="CaloChallenge dataset (default 1 = 1-photons)")
    parser.add_argument("--family", default="all", help=f"one of {', '.join(CASES)}, or all (default)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--gen-batches", default="1,100,10000", help="generation batch sizes, comma-separated")
    parser.add_argument("--train-steps", type=int, default=None,
                        help="timed training steps (default the case's: 4, CaloDiffusion 2)")
    parser.add_argument("--precision", default=None, choices=["32-true", "bf16-mixed"],
                        help="train.precision for the training measurement (default: the config's)")
    parser.add_argument("--bf16", action="store_true",
                        help="also time bf16-mixed generation below batch 1,000 (only where bf16 is native)")
    parser.add_argument("--skip-study", action="store_true", help="leave out the runner-overhead study (minutes)")
    parser.add_argument("--skip-training", action="store_true", help="leave out the training measurements")
    parser.add_argument("--skip-profile", action="store_true", help="leave out the training and sampling profiles")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config value for every case, after the case's own (repeatable)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time matmul, training and generation by process CPU time (with --threads 1: the "
                             "figures of a CPU shared with other jobs, without the time they take from us)")
    args = parser.parse_args(argv)
    if args.family != "all" and args.family not in CASES:
        msg = f"--family {args.family}: expected one of {', '.join(CASES)} or all"
        raise ConfigError(msg)
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = canonical_dataset(args.dataset)
    device = _device()
    if args.cpu_time and device.type != "cpu":
        parser.error("--cpu-time times CPU runs only; this machine runs the bench on its GPU")
    extra = [*args.overrides, *([f"train.precision={args.precision}"] if args.precision else [])]
    if args.precision:
        check_precision(args.precision, device, "--precision (train.precision)")
    cases = list(CASES.values()) if args.family == "all" else [CASES[args.family]]
    batches = [int(b) for b in args.gen_batches.split(",")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    clock = time.process_time if args.cpu_time else time.perf_counter
    started = time.perf_counter()
    reference = matmul_flops(device=device, clock=clock)
    print(f"calo-ablate bench: dataset {dataset} on {name}, torch {torch.__version__}; "
          f"{'CPU' if args.cpu_time else 'wall'} time")
    print(f"fp32 matmul (2048^2):     {reference / 1e9:8.1f} GFLOP/s in this process; every fraction below is of the "
          f"rate measured in the measurement's own process (in brackets)")
    print(f"instruction set:          {instruction_set().describe()}")
    print(f"published times:          {PUBLISHED_SOURCE}")
    spec: dict[str, Any] = {"dataset": dataset, "extra": extra, "threads": args.threads, "cpu_time": args.cpu_time,
                            "timed_steps": args.train_steps}
    for case in cases:
        config = bench_config(case, dataset, extra)
        family = load_family(config)
        steps = family.sampling_steps()
        print(f"== {case.title} ({case.name}: {' '.join(case.overrides)}); "
              f"{'one-pass sampling' if steps is None else f'{steps} sampling steps'}")
        case_spec = {**spec, "case": case.name}
        if not args.skip_training:
            _print_training(case, case_spec)
        print("  generation, ms per shower at each batch size (each in its own process, in ascending order):")
        for batch in sorted(batches):
            _print_generation(case, case_spec, batch, "fp32")
            if args.bf16 and batch < 1000 and steps is not None and bf16_native(device):
                _print_generation(case, {**case_spec, "precision": "bf16-mixed"}, batch, "bf16")
        if not args.skip_profile and device.type == "cpu":
            print_profiles(case, dataset, extra, reference, args.cpu_time)
    print(f"peak memory of this process (VmHWM): {peak_memory_mib():,.0f} MiB; "
          f"fp32 matmul at the end: {matmul_flops(device=device, clock=clock) / 1e9:.1f} GFLOP/s; "
          f"bench wall time {time.perf_counter() - started:.0f} s")
    if not args.skip_study:
        runner_overhead(dataset)
    return 0
