"""Generation timing: which batch sizes are measured, which are skipped and why (no time assertions)."""

from __future__ import annotations

import numpy as np
import pytest

from calo_ablate.evaluation.timing import time_generation


def test_measures_feasible_batch_sizes_and_says_which_were_skipped() -> None:
    calls: list[int] = []
    messages: list[str] = []

    def generate(energies: np.ndarray) -> np.ndarray:
        calls.append(len(energies))
        return np.zeros((len(energies), 3))

    result = time_generation(generate, np.ones(10), [1, 4, 100], log=messages.append)
    assert set(result) == {"gen_ms_per_shower_b1", "gen_ms_per_shower_b4"}
    assert all(v >= 0.0 for v in result.values())
    assert calls == [1, 1, 1, 1, 4, 4]  # warm-up, 3 calls of one shower, 2 of four (10 // 4)
    assert len(messages) == 1 and "100" in messages[0] and "10 incident energies" in messages[0]


def test_out_of_memory_is_skipped_other_errors_raise() -> None:
    messages: list[str] = []

    def generate(energies: np.ndarray) -> np.ndarray:
        if len(energies) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20 GiB")
        return np.zeros((len(energies), 3))

    result = time_generation(generate, np.ones(8), [1, 8], log=messages.append)
    assert set(result) == {"gen_ms_per_shower_b1"}
    assert "batch size 8 skipped: out of memory" in messages[0]

    def broken(energies: np.ndarray) -> np.ndarray:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        time_generation(broken, np.ones(8), [1])
