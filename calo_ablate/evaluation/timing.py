"""Generation time per shower at several batch sizes, model loading excluded.

The caller passes a ready generator (model loaded, weights on the device). One untimed warm-up call
on a single shower absorbs lazy initialisation (CUDA context, kernel selection). Each batch size is
then timed on real calls of that size: wall time per call / showers per call, median over up to
`repeats` calls. A batch size larger than the energies given, or one that runs out of memory, is
skipped and said so through `log`; its key is absent from the result, never filled in.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["time_generation"]


def _out_of_memory(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or "out of memory" in str(err).lower()


def time_generation(
    generate: Callable[[np.ndarray], np.ndarray],
    energies_mev: np.ndarray,
    batch_sizes: list[int],
    *,
    repeats: int = 3,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """{"gen_ms_per_shower_b<size>": milliseconds per shower} for each feasible batch size.

    `generate(energies_mev (b,)) -> showers_mev (b, V)` must return only when the showers are
    ready (a numpy array, so any GPU work is finished). Calls at one batch size use consecutive,
    non-overlapping slices of `energies_mev` while they last (at most `repeats` calls).
    """
    energies = np.asarray(energies_mev)
    results: dict[str, float] = {}
    if len(energies) == 0:
        log("timing: no incident energies given, nothing timed")
        return results
    generate(energies[:1])  # warm-up, untimed
    for size in sorted(set(batch_sizes)):
        if size > len(energies):
            log(f"timing: batch size {size} skipped: only {len(energies)} incident energies given")
            continue
        per_shower = []
        try:
            for call in range(min(repeats, len(energies) // size)):
                batch = energies[call * size:(call + 1) * size]
                start = time.perf_counter()
                generate(batch)
                per_shower.append((time.perf_counter() - start) / size)
        except (MemoryError, RuntimeError) as err:
            if not _out_of_memory(err):
                raise
            log(f"timing: batch size {size} skipped: out of memory ({str(err).splitlines()[0]})")
            _free_device_memory()
            continue
        results[f"gen_ms_per_shower_b{size}"] = 1000.0 * float(np.median(per_shower))
    return results


def _free_device_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
