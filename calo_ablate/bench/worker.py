"""One measurement of `make bench` in a process of its own, so that its peak resident memory is its own.

    python -m calo_ablate.bench.worker '{"task": "train" | "generate", "case": ..., "dataset": ..., ...}'

Prints one line `BENCH-RESULT <json>` (calo_ablate.bench.speed reads it): the measurement, the fp32 matmul
rate measured in this process just before it, and its peak resident memory (families.peak_memory_mib) at the end.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch

from calo_ablate.bench.families import (
    CASES,
    bench_config,
    generation_cost,
    matmul_flops,
    peak_memory_mib,
    train_flops_per_shower,
    training_module,
    training_throughput,
)
from calo_ablate.errors import ConfigError
from calo_ablate.model.families import load_family

__all__ = ["RESULT_PREFIX", "measure", "worker_main"]

RESULT_PREFIX = "BENCH-RESULT "


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the measurement `spec` describes (see the module docstring) in this process and return its figures."""
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    case = CASES[spec["case"]]
    clock = time.process_time if spec.get("cpu_time") else time.perf_counter
    family = load_family(bench_config(case, spec["dataset"], spec.get("extra", [])))
    result: dict[str, Any] = {"matmul_flops": matmul_flops(clock=clock)}
    if spec["task"] == "train":
        module = training_module(case, family, spec.get("extra", []))
        flops = train_flops_per_shower(family, training_module(case, family, spec.get("extra", [])))
        timed = int(spec.get("timed_steps") or case.timed_steps)
        showers_s = training_throughput(family, module, timed_steps=timed, warmup_steps=case.warmup_steps,
                                        clock=clock)
        result.update(showers_s=showers_s, flop_per_shower=flops, batch_size=family.config.train.batch_size,
                      timed_steps=timed, warmup_steps=case.warmup_steps, precision=family.config.train.precision)
    elif spec["task"] == "generate":
        batch = int(spec["batch"])
        evaluations = case.timed_evaluations[0 if batch < 1000 else 1]
        cost = generation_cost(family, batch, evaluations, clock, precision=spec.get("precision"))
        result.update(asdict(cost))
    else:
        msg = f"bench worker task={spec['task']!r}: expected 'train' or 'generate'"
        raise ConfigError(msg)
    result["peak_rss_mib"] = peak_memory_mib()
    return result


def worker_main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        msg = "python -m calo_ablate.bench.worker expects one argument: the measurement as JSON"
        raise ConfigError(msg)
    print(RESULT_PREFIX + json.dumps(measure(json.loads(args[0]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
