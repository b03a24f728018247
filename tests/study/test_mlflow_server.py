"""A study's workers logging to a real `mlflow server` (started by the fixture on 127.0.0.1), and the
report rebuilt from that server alone in another folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from calo_ablate.cli import main
from tests.study.helpers import NO_EVAL, REGISTRY, ablate_args, report_rows


def test_two_workers_log_to_an_mlflow_server_and_the_report_is_rebuilt_from_it(
        tmp_path: Path, photon_dir: Path, mlflow_server: str) -> None:
    (tmp_path / "ablations.yaml").write_text(REGISTRY)
    args = ablate_args(tmp_path, photon_dir, "served", "less_noise", "--workers", "2",
                       "--tracking-uri", mlflow_server, sets=[*NO_EVAL, "train.max_epochs=1"])
    assert main(args) == 0
    study_dir = tmp_path / "results" / "served"
    assert not (study_dir / "mlflow.db").exists()  # everything went to the server

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("served")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`calo_ablate.role` = 'cell'")
    assert sorted((r.data.tags["calo_ablate.cell"], r.info.status) for r in runs) == \
        [("base/s0", "FINISHED"), ("less_noise/s0", "FINISHED")]
    for run in runs:  # validated several times in its one epoch, each step once
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")]
        assert len(steps) >= 1 and len(steps) == len(set(steps))
    artifacts = [a.path for a in client.list_artifacts(runs[0].info.run_id)]
    assert "config.yaml" in artifacts  # served by the server's artifact store

    elsewhere = tmp_path / "elsewhere"
    assert main(["report", "--study", "served", "--tracking-uri", mlflow_server,
                 "--results-dir", str(elsewhere)]) == 0
    pd.testing.assert_frame_equal(report_rows(elsewhere / "served"), report_rows(study_dir))
    assert (elsewhere / "served" / "loss_curves.png").is_file()
