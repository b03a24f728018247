"""Generation from a trained run: load_run, generate_showers and `calo-ablate generate`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from calo_ablate.cli import main as cli_main
from calo_ablate.config import resolve_config
from calo_ablate.data.calochallenge import read_showers
from calo_ablate.data.source import ensure_data
from calo_ablate.errors import ConfigError
from calo_ablate.model import precision
from calo_ablate.model.precision import bf16_native
from calo_ablate.runs.generate import generate_showers, load_run
from calo_ablate.runs.tracker import Tracker
from calo_ablate.runs.train import TrainResult, run_training

SETTINGS = ["data.max_train_events=64", "train.batch_size=32", "sample.steps=2", "trainer.threads=1"]


@pytest.fixture(scope="module")
def trained_run(photon_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, str]:
    root = tmp_path_factory.mktemp("gen")
    uri = f"sqlite:///{root}/mlflow.db"
    config = resolve_config("1", "smoke", cli_set=[*SETTINGS, f"data.data_dir={photon_dir}"])
    result = run_training(config, files=ensure_data("1", photon_dir, log=lambda _: None), run_dir=root / "run",
                          tracker=Tracker(uri), experiment_name="gen", run_name="r")
    return result, uri


def test_generated_showers_have_the_layout_and_use_ema_weights(trained_run: tuple[TrainResult, str]) -> None:
    result, uri = trained_run
    trained = load_run(result.run_id, Tracker(uri), device="cpu")
    assert trained.config.sample.steps == 2
    energies = np.array([1000.0, 65536.0, 4.0e6, 256.0, 2.0e5], dtype=np.float32)   # MeV
    showers = generate_showers(trained, energies, batch_size=2, seed=1, progress=False)
    assert showers.shape == (5, 368) and showers.dtype == np.float32
    assert np.isfinite(showers).all() and (showers >= 0).all()
    again = generate_showers(trained, energies, batch_size=2, seed=1, progress=False)
    np.testing.assert_array_equal(showers, again)
    with torch.no_grad():   # the training weights are not what samples: perturbing them changes nothing
        for p in trained.module.net.parameters():
            p.add_(1.0)
    np.testing.assert_array_equal(generate_showers(trained, energies, batch_size=2, seed=1, progress=False),
                                  showers)
    other = generate_showers(trained, energies, batch_size=2, seed=2, progress=False)
    assert not np.array_equal(other, showers)


def test_generate_command_writes_the_official_layout(trained_run: tuple[TrainResult, str], tmp_path: Path) -> None:
    result, uri = trained_run
    out = tmp_path / "samples.hdf5"
    code = cli_main(["generate", "--run", result.run_id, "--events", "7", "--out", str(out), "--tracking-uri", uri])
    assert code == 0
    energies, showers = read_showers(out, "1-photons")
    assert energies.shape == (7,) and showers.shape == (7, 368)
    assert cli_main(["generate", "--run", "no-such-run", "--events", "7", "--out", str(out),
                     "--tracking-uri", uri]) == 2


NATIVE_BF16 = bf16_native("cpu")


@pytest.mark.skipif(not NATIVE_BF16, reason="this CPU has no native bf16 (no avx512_bf16 or amx_bf16 in "
                    "/proc/cpuinfo): bf16 sampling is refused here, see the test below")
def test_bf16_sampling_stays_close_to_fp32(trained_run: tuple[TrainResult, str]) -> None:
    result, uri = trained_run
    trained = load_run(result.run_id, Tracker(uri), device="cpu")
    energies = np.array([1000.0, 65536.0, 4.0e6, 256.0], dtype=np.float32)   # MeV
    fp32 = generate_showers(trained, energies, seed=1, progress=False)
    bf16 = generate_showers(trained, energies, seed=1, progress=False, precision="bf16-mixed")
    assert not np.array_equal(bf16, fp32)
    np.testing.assert_allclose(bf16.sum(axis=1), fp32.sum(axis=1), rtol=1e-2)


@pytest.mark.skipif(NATIVE_BF16, reason="this CPU has native bf16 (avx512_bf16 or amx_bf16): bf16 sampling "
                    "runs here and is compared with fp32 above; the refusal is also tested on simulated flags "
                    "in tests/runs/test_devices.py")
def test_bf16_sampling_is_refused_where_the_cpu_would_emulate_it(trained_run: tuple[TrainResult, str]) -> None:
    result, uri = trained_run
    trained = load_run(result.run_id, Tracker(uri), device="cpu")
    energies = np.array([1000.0, 65536.0], dtype=np.float32)   # MeV
    with pytest.raises(ConfigError, match=r"sample.precision=bf16-mixed: bf16 is not native .*"
                                          r"Use sample.precision=32-true"):
        generate_showers(trained, energies, seed=1, progress=False, precision="bf16-mixed")


def test_bf16_sampling_refused_on_simulated_avx2_only_flags(trained_run: tuple[TrainResult, str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal path on every machine: the CPU flags of an AVX2-only EPYC (no avx512_bf16, no AMX)."""
    monkeypatch.setattr(precision, "cpu_flags", lambda cpuinfo=precision.CPUINFO: frozenset({"avx", "avx2", "fma"}))
    result, uri = trained_run
    trained = load_run(result.run_id, Tracker(uri), device="cpu")
    with pytest.raises(ConfigError, match="sample.precision=bf16-mixed"):
        generate_showers(trained, np.array([1000.0], dtype=np.float32), seed=1, progress=False,
                         precision="bf16-mixed")
    fp32 = generate_showers(trained, np.array([1000.0], dtype=np.float32), seed=1, progress=False)
    assert np.isfinite(fp32).all()   # fp32 still samples on that CPU
