"""CaloScoreModule and run_training: update rules, determinism, resume into the same MLflow run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from mlflow.tracking import MlflowClient

from calo_ablate.cli import main as cli_main
from calo_ablate.config import resolve_config
from calo_ablate.data.source import ensure_data
from calo_ablate.errors import TrainingError
from calo_ablate.model.caloscore.module import CaloScoreModule
from calo_ablate.model.ema import EMA
from calo_ablate.runs.tracker import Tracker
from calo_ablate.runs.train import RESULT_FILE, RUN_FILE, run_training

TINY = ["data.max_train_events=64", "train.batch_size=32", "sample.steps=2", "trainer.threads=1"]


def _config(data_dir: Path, *extra: str, seed: int = 0):
    return resolve_config("1", "smoke", cli_set=[*TINY, f"data.data_dir={data_dir}", *extra], seed=seed)


def _files(data_dir: Path):
    return ensure_data("1", data_dir, log=lambda _: None)


def _batch(n: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, generator=g), torch.randn(n, 5, generator=g), torch.randn(n, 368, generator=g)


@pytest.fixture(scope="module")
def module() -> CaloScoreModule:
    torch.set_num_threads(1)   # as the runs below do (trainer.threads=1): 2 threads on a shared 2-core CPU stall
    torch.manual_seed(0)
    return CaloScoreModule(resolve_config("1", "smoke"), 368, 5)


def test_losses_are_the_sum_and_validation_is_deterministic(module: CaloScoreModule) -> None:
    batch = _batch()
    module.eval()
    with torch.no_grad():
        first = module.losses(batch, torch.Generator().manual_seed(3))
        second = module.losses(batch, torch.Generator().manual_seed(3))
        other = module.losses(batch, torch.Generator().manual_seed(4))
    assert torch.equal(torch.stack(first), torch.stack(second))
    assert not torch.equal(torch.stack(first), torch.stack(other))
    loss, voxel_loss, layer_loss = first
    assert torch.isclose(loss, voxel_loss + layer_loss)
    # the output conv starts at zero: v_pred = 0, so the voxel loss is mean(v^2) = about 1
    assert 0.5 < float(voxel_loss) < 1.5


def test_non_finite_loss_raises_training_error_naming_the_step(module: CaloScoreModule) -> None:
    cond, layer, voxel = _batch()
    voxel[0, 0] = float("nan")
    with pytest.raises(TrainingError, match=r"epoch 0, step 0 \(batch 5\)"):
        module.training_step((cond, layer, voxel), 5)


def test_gradients_are_clipped_per_tensor(module: CaloScoreModule) -> None:
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]
    params[0].grad = torch.tensor([3.0, 4.0, 0.0])       # norm 5 -> clipped to 1
    params[1].grad = torch.full((2, 2), 0.1)             # norm 0.2 -> unchanged
    module.on_before_optimizer_step(torch.optim.Adamax(params))
    assert math.isclose(float(params[0].grad.norm()), module.config.train.grad_clip, rel_tol=1e-5)
    assert torch.allclose(params[0].grad, torch.tensor([0.6, 0.8, 0.0]))
    assert torch.allclose(params[1].grad, torch.full((2, 2), 0.1))


def test_ema_warms_up_then_uses_the_configured_decay() -> None:
    net = torch.nn.Linear(2, 1)
    ema = EMA(net, decay=0.9)
    assert ema.current_decay() == pytest.approx(1 / 10)
    with torch.no_grad():
        net.weight.fill_(1.0)
    start = ema.net.weight.clone()
    ema.update(net)
    assert torch.allclose(ema.net.weight, 0.1 * start + 0.9 * net.weight)
    ema.updates.fill_(1000)
    assert ema.current_decay() == pytest.approx(0.9)
    assert not any(p.requires_grad for p in ema.net.parameters())


def test_optimizer_groups_cover_each_parameter_once(module: CaloScoreModule) -> None:
    module.config.train.lr_horizon_steps = None  # the cosine over this run's own 10 steps
    module.trainer = pl.Trainer(max_steps=10, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    setup = module.configure_optimizers()
    optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    grouped = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == len(list(module.net.parameters()))
    assert [g["name"] for g in optimizer.param_groups] == ["layer", "voxel"]
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(module.config.train.lr)
    assert lrs[5] == pytest.approx(module.config.train.lr / 2)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def _history(client: MlflowClient, run_id: str, name: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, name)]


def test_same_seed_gives_identical_losses(photon_dir: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    files = _files(photon_dir)
    results = [run_training(_config(photon_dir), files=files, run_dir=tmp_path / f"run{i}", tracker=Tracker(uri),
                            experiment_name="determinism", run_name=f"r{i}") for i in range(2)]
    client = MlflowClient(tracking_uri=uri)
    a, b = (r.run_id for r in results)
    assert a != b
    for name in ("train/loss", "train/voxel_loss", "train/layer_loss", "val/loss"):
        assert _history(client, a, name) == _history(client, b, name)
    assert results[0].metrics == results[1].metrics
    assert set(results[0].metrics) == {"val/loss", "val/voxel_loss", "val/layer_loss"}


class _InterruptInSecondEpoch(pl.Callback):
    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_into_the_same_mlflow_run(photon_dir: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    config, files, run_dir = _config(photon_dir, "train.max_epochs=2"), _files(photon_dir), tmp_path / "run"
    kwargs = {"files": files, "run_dir": run_dir, "tracker": Tracker(uri), "experiment_name": "resume",
              "run_name": "r", "tags": {"ablation": "base"}}
    with pytest.raises(KeyboardInterrupt):
        run_training(config, extra_callbacks=[_InterruptInSecondEpoch()], **kwargs)
    first_id = json.loads((run_dir / RUN_FILE).read_text())["run_id"]
    assert (run_dir / "last.ckpt").is_file() and not (run_dir / RESULT_FILE).exists()
    assert "ema.updates" in torch.load(run_dir / "last.ckpt", weights_only=True)["state_dict"]

    result = run_training(config, **kwargs)
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("resume").experiment_id])
    assert [r.info.run_id for r in runs] == [first_id] == [result.run_id]
    run = runs[0]
    assert run.info.status == "RUNNING"  # left open: its owner closes it (a study cell after its evaluation)
    assert run.data.tags["ablation"] == "base" and run.data.tags["data_source"] == "synthetic"
    assert run.data.params["train.max_epochs"] == "2" and run.data.params["data.dataset"] == "1-photons"
    for name in ("train/loss", "lr", "epoch_seconds"):
        steps = [step for step, _ in _history(client, first_id, name)]
        assert len(steps) == 2 and steps[0] < steps[1], name   # epochs 0 and 1, each once
    for name in ("val/loss", "val/layer_loss"):  # 2 epochs of 2 steps: validated after each step, once
        assert [step for step, _ in _history(client, first_id, name)] == [0, 1, 2, 3], name
    assert [step for step, _ in _history(client, first_id, "train_steps/loss")] == [0, 1, 2, 3]  # <= 20 steps
    assert min(v for _, v in _history(client, first_id, "train_steps/lr")) >= 0.99 * config.train.lr
    assert result.epochs == 2 and Path(result.checkpoint_path).is_file()

    again = run_training(config, **kwargs)   # finished: returned, not retrained
    assert again == result
    (run_dir / RESULT_FILE).unlink()         # killed after the last epoch, before result.json
    recovered = run_training(config, **kwargs)
    assert recovered.run_id == first_id and recovered.epochs == 2
    assert recovered.metrics == pytest.approx(result.metrics)
    assert len(_history(client, first_id, "val/loss")) == 4
    assert len(client.search_runs([runs[0].info.experiment_id])) == 1


def test_params_command_prints_each_net_and_the_total(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["params", "--dataset", "1", "--set", "model.layer.num_layer=6"]) == 0
    lines = capsys.readouterr().out.splitlines()
    counts = {line.split()[0]: int(line.split()[1].replace(",", "")) for line in lines[1:]}
    assert set(counts) == {"voxel_net", "layer_net", "energy_embedding", "total"}
    assert counts["total"] == counts["voxel_net"] + counts["layer_net"] + counts["energy_embedding"]
    base = CaloScoreModule(resolve_config("1", "full"), 368, 5).net.parameter_breakdown()
    assert counts["layer_net"] > base["layer_net"] and counts["voxel_net"] == base["voxel_net"]
