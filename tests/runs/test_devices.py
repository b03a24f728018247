"""Device selection, worker-to-GPU pinning and the precision each device allows (all on the CPU, with the
capability checks monkeypatched)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from calo_ablate.config import resolve_config
from calo_ablate.errors import ConfigError
from calo_ablate.model import precision
from calo_ablate.model.precision import bf16_native, check_precision, cpu_flags, instruction_set
from calo_ablate.runs.devices import resolve_device, visible_gpus, worker_gpu_environment
from calo_ablate.runs.tracker import Tracker
from calo_ablate.runs.train import run_training

ZEN3 = frozenset({"fpu", "avx", "avx2", "fma"})
ZEN4 = ZEN3 | {"avx512f", "avx512bw", "avx512_bf16"}
SAPPHIRE_RAPIDS = ZEN3 | {"avx512f", "amx_bf16", "amx_tile"}


@pytest.fixture
def cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def _cpu(monkeypatch: pytest.MonkeyPatch, flags: frozenset[str]) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda cpuinfo=precision.CPUINFO: flags)


# ---- device ------------------------------------------------------------------------------------------

def test_auto_is_the_gpu_where_one_is_visible(cuda: None) -> None:
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("gpu") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_is_the_cpu_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="trainer.accelerator=gpu: no CUDA GPU"):
        resolve_device("gpu")


def test_unknown_accelerator() -> None:
    with pytest.raises(ConfigError, match="'abacus': expected one of auto, cpu, gpu"):
        resolve_device("abacus")


# ---- pinning -----------------------------------------------------------------------------------------

def test_one_gpu_per_worker_up_to_the_gpu_count() -> None:
    gpus = visible_gpus({}, device_count=4)
    assert gpus == ["0", "1", "2", "3"]
    assert [worker_gpu_environment(i, 4, gpus) for i in range(4)] == [
        {"CUDA_VISIBLE_DEVICES": g} for g in ("0", "1", "2", "3")]


def test_pinning_respects_the_parents_visible_devices() -> None:
    gpus = visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 5"}, device_count=8)
    assert gpus == ["2", "5"]
    assert worker_gpu_environment(1, 2, gpus) == {"CUDA_VISIBLE_DEVICES": "5"}
    # more workers than GPUs: they share, round robin
    assert [worker_gpu_environment(i, 3, gpus)["CUDA_VISIBLE_DEVICES"] for i in range(3)] == ["2", "5", "2"]


def test_no_pinning_without_gpus() -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert visible_gpus({}, device_count=0) == []
    assert worker_gpu_environment(0, 2, []) == {}


def test_worker_index_out_of_range() -> None:
    with pytest.raises(ConfigError, match="worker 2 of --workers 2"):
        worker_gpu_environment(2, 2, ["0", "1"])


# ---- instruction set and precision --------------------------------------------------------------------

def test_cpu_flags_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "absent") == frozenset()


@pytest.mark.parametrize(("flags", "native", "avx512"), [(ZEN3, False, False), (ZEN4, True, True),
                                                        (SAPPHIRE_RAPIDS, True, True)])
def test_instruction_set(flags: frozenset[str], native: bool, avx512: bool) -> None:
    isa = instruction_set(flags)
    assert isa.avx2 and isa.avx512 == avx512 and isa.native_bf16 == native
    assert f"native bf16 {'yes' if native else 'no'}" in isa.describe()
    assert isa.torch_capability in isa.describe()


def test_bf16_refused_on_a_cpu_that_emulates_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _cpu(monkeypatch, ZEN3)
    assert not bf16_native("cpu")
    with pytest.raises(ConfigError, match=r"sample.precision=bf16-mixed: bf16 is not native .*Use sample.precision=32-true"):
        check_precision("bf16-mixed", "cpu", "sample.precision")
    check_precision("32-true", "cpu", "sample.precision")  # fp32 always passes


def test_bf16_allowed_on_a_cpu_with_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    _cpu(monkeypatch, ZEN4)
    assert bf16_native(torch.device("cpu"))
    check_precision("bf16-mixed", "cpu", "train.precision")


@pytest.mark.parametrize("supported", [True, False])
def test_bf16_on_gpus_follows_cuda(cuda: None, monkeypatch: pytest.MonkeyPatch, supported: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: supported)
    assert bf16_native("cuda") == supported
    if supported:
        check_precision("bf16-mixed", "cuda", "train.precision")
    else:
        with pytest.raises(ConfigError, match="is_bf16_supported"):
            check_precision("bf16-mixed", "cuda", "train.precision")


def test_training_refuses_emulated_bf16_before_starting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _cpu(monkeypatch, ZEN3)
    config = resolve_config("1", "smoke", cli_set=["train.precision=bf16-mixed", "trainer.accelerator=cpu"])
    with pytest.raises(ConfigError, match="train.precision=bf16-mixed"):
        run_training(config, files=None, run_dir=tmp_path / "run", tracker=Tracker(str(tmp_path / "mlruns")),
                     experiment_name="x", run_name="base")
    assert not (tmp_path / "run").exists()
