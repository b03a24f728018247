"""Studies with other model families: a tiny CaloDiffusion base beside CaloScore v2, CaloFlow and a user family
(dotted path), and a study whose base is the user family; trained a few steps, sampled and evaluated
through the study path, at smoke size on dataset 1 photons."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from calo_ablate.cli import main
from calo_ablate.report.table import other_family
from calo_ablate.runs.names import REFERENCE
from tests.study.helpers import report_rows, study_table

USER_FAMILY = "tests.study.user_family:GaussianFamily"
MIXED = f"""\
ablations:
  base: {{title: CaloDiffusion, set: {{model.family: calodiffusion}}}}
  half_steps: {{title: Half the steps, set: {{sample.steps_factor: 0.5}}}}
  caloscore: {{title: CaloScore v2, set: {{model.family: caloscore_v2}}}}
  user: {{title: User family, set: {{model.family: "{USER_FAMILY}", model.options.hidden: 8}}}}
  caloflow: {{title: CaloFlow, set: {{model.family: caloflow}}}}
"""
USER_BASE = f"""\
ablations:
  base: {{title: Gaussian, set: {{model.family: "{USER_FAMILY}"}}}}
  wider: {{title: Wider, set: {{model.options.hidden: 32}}}}
"""
TINY = ["data.max_train_events=100", "train.batch_size=32", "evaluate.n_events=50",
        "evaluate.timing_batch_sizes=[1,10]", "evaluate.classifier.hidden=16", "evaluate.classifier.epochs=2",
        "evaluate.classifier.trainings=1", "evaluate.classifier.batch_size=50",
        *(f"families.caloscore_v2.{s}" for s in (
            "sample.steps=4", "model.voxel.widths=[8,8]", "model.voxel.attention=[false,false]", "model.voxel.block_depth=1",
            "model.voxel.lift_channels=4", "model.embed_dim=16", "model.layer.mlp_dim=16")),
        *(f"families.calodiffusion.{s}" for s in (
            "sample.steps=4", "model.widths=[8,8]", "model.embed_hidden=8", "model.embed_dim=8", "model.attention_head_dim=8",
            "model.diffusion_steps=20")),
        *(f"families.caloflow.model.{s}" for s in (
            "flow1.blocks=1", "flow1.hidden_layers=1", "flow1.hidden_features=8",
            "flow2.blocks=1", "flow2.hidden_layers=1", "flow2.hidden_features=8"))]


def run_study(tmp: Path, data: Path, name: str, registry: str) -> tuple[int, Path]:
    (tmp / f"{name}.yaml").write_text(registry)
    args = ["ablate", "--profile", "smoke", "--seeds", "1", "--registry", str(tmp / f"{name}.yaml"),
            "--results-dir", str(tmp / "results"), "--study", name]
    for item in [f"data.data_dir={data}", "trainer.threads=1", *TINY]:
        args += ["--set", item]
    return main(args), tmp / "results" / name


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, photon_dir: Path) -> Path:
    code, study_dir = run_study(tmp_path_factory.mktemp("families"), photon_dir, "mixed", MIXED)
    assert code == 0
    return study_dir


def test_a_mixed_study_reports_every_family_by_sample_quality(mixed: Path) -> None:
    table, rows = study_table(mixed), report_rows(mixed)
    assert table.losses == [("val/loss", "Loss")]  # the base's family, CaloDiffusion, logs one loss
    assert list(rows.index) == [REFERENCE, "base", "half_steps", "caloscore", "user", "caloflow"]
    assert rows.loc["half_steps", "val/loss_mean"] == rows.loc["base", "val/loss_mean"]  # the base's training
    assert rows.loc["half_steps", "val/loss_verdict"] == "equivalent"
    assert "shares the base's training" in rows.loc["half_steps", "note"]
    for name, family in (("caloscore", "caloscore_v2"), ("user", USER_FAMILY), ("caloflow", "caloflow")):
        assert other_family(table, table.row(name)) == family  # compared by sample quality and speed only
        assert not rows.loc[name, "loss_comparable"] and f"model family {family}" in rows.loc[name, "note"]
    assert rows.drop(index=REFERENCE)["auc_low_mean"].between(0.0, 1.0).all()
    assert (rows.loc[["base", "caloscore", "user", "caloflow"], "gen_ms_per_shower_b10_mean"] > 0).all()


def test_cell_runs_record_their_family_and_losses(mixed: Path) -> None:
    client = MlflowClient(f"sqlite:///{mixed / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("mixed").experiment_id],
                              filter_string="tags.`calo_ablate.role` = 'cell'")
    tags = {r.data.tags["calo_ablate.cell"]: (r.data.tags["model_family"], r.data.tags["loss_names"], r.info.status) for r in runs}
    assert tags == {"base/s0": ("calodiffusion", '["loss"]', "FINISHED"),
                    "half_steps/s0": ("calodiffusion", '["loss"]', "FINISHED"),
                    "caloscore/s0": ("caloscore_v2", '["loss", "voxel_loss", "layer_loss"]', "FINISHED"),
                    "user/s0": (USER_FAMILY, '["loss", "mse"]', "FINISHED"),
                    "caloflow/s0": ("caloflow", '["loss", "flow1_nll", "flow2_nll"]', "FINISHED")}
    metrics = {r.data.tags["calo_ablate.cell"]: r.data.metrics for r in runs}
    assert metrics["half_steps/s0"]["sample_steps"] == 2 and metrics["base/s0"]["sample_steps"] == 4
    assert metrics["base/s0"]["n_params"] > 0 and "val/voxel_loss" not in metrics["base/s0"]
    flow = metrics["caloflow/s0"]  # its own losses are recorded, though the table shows the base family's
    assert flow["val/loss"] == pytest.approx(flow["val/flow1_nll"] + flow["val/flow2_nll"], rel=1e-4)
    assert "sample_steps" not in flow  # a flow samples in one pass


def test_a_user_family_as_the_base_sets_the_loss_columns(tmp_path: Path, photon_dir: Path) -> None:
    code, study_dir = run_study(tmp_path, photon_dir, "user", USER_BASE)
    assert code == 0
    table, rows = study_table(study_dir), report_rows(study_dir)
    assert table.losses == [("val/loss", "Loss"), ("val/mse", "Mse")]
    assert rows.loc["wider", "loss_comparable"] and other_family(table, table.row("wider")) is None  # compared
    assert rows.loc["base", "n_params_mean"] == (1 + 1) * 16 + (16 + 1) * 2 * 368  # hidden 16, 368 voxels
