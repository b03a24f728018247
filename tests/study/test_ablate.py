"""The ablation study end to end at smoke size with a tiny model: table rows, shared training, failure
isolation and retry, rerun without retraining, two workers, --fail-fast, kill -9 and resume, search,
and the report rebuilt from MLflow alone."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from calo_ablate.cli import main
from calo_ablate.report.table import run_description
from calo_ablate.runs.names import GEN_MS_PREFIX, REFERENCE, TAG_DATA_SOURCE, TAG_PROFILE
from tests.study.helpers import NO_EVAL, REGISTRY, ablate_args, child_runs, report_rows, stamps, trials


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, photon_dir: Path) -> dict:
    """One study, two workers: base (+ fewer_steps sharing its training), less_noise and a failing cell."""
    tmp = tmp_path_factory.mktemp("study")
    (tmp / "ablations.yaml").write_text(REGISTRY)
    args = ablate_args(tmp, photon_dir, "smoke", "fewer_steps,less_noise,broken", "--workers", "2")
    code = main(args)
    return {"tmp": tmp, "data": photon_dir, "args": args, "code": code, "dir": tmp / "results" / "smoke",
            "runs": {r.data.tags["calo_ablate.cell"]: r.info.run_id for r in child_runs(tmp / "results" / "smoke")}}


def test_table_rows_in_registry_order_with_failure_and_sharing(study: dict) -> None:
    assert study["code"] == 1  # one cell failed
    rows = report_rows(study["dir"])
    assert list(rows.index) == [REFERENCE, "base", "broken", "fewer_steps", "less_noise"]
    assert list(rows["title"]) == ["reference vs reference", "Base", "Broken on purpose", "Fewer time steps",
                                   "Decrease noise"]
    losses = ["val/loss", "val/voxel_loss", "val/layer_loss"]
    for metric in [*losses, "n_params", "seconds_per_epoch", "gen_ms_per_shower_b10", "sep_e_ratio", "sep_mean",
                   "auc_low", "auc_high", "fpd"]:
        assert pd.notna(rows.loc["base", f"{metric}_mean"]), metric  # trained, timed and evaluated
    assert rows.loc["broken", "failed"] == 1
    assert "s0 failed: TrainingError: non-finite training loss" in rows.loc["broken", "note"]
    assert "shares the base's training" in rows.loc["fewer_steps", "note"]
    for metric in losses:  # the same training: the base's very losses, equivalent
        assert rows.loc["fewer_steps", f"{metric}_mean"] == rows.loc["base", f"{metric}_mean"]
        assert rows.loc["fewer_steps", f"{metric}_verdict"] == "equivalent"
    assert not rows.loc["less_noise", "loss_comparable"] and rows.loc["less_noise", "val/loss_verdict"] == "undecided"
    for name in ("loss_curves.png", "histograms.png", "table.md"):
        assert (study["dir"] / name).is_file()
    client = MlflowClient(f"sqlite:///{study['dir'] / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on runs
    parent = client.search_runs([experiment.experiment_id], filter_string="tags.`calo_ablate.role` = 'study'")[0]
    assert parent.data.tags[TAG_DATA_SOURCE] == "synthetic" and parent.data.tags[TAG_PROFILE] == "smoke"
    assert parent.data.tags["mlflow.note.content"] == run_description((study["dir"] / "table.md").read_text())


def test_two_workers_ran_every_cell_once(study: dict) -> None:
    names = sorted(study["runs"])
    assert names == ["base/s0", "broken/s0", "fewer_steps/s0", "less_noise/s0"]  # one run per cell
    titles = sorted(r.info.run_name for r in child_runs(study["dir"]))
    assert titles == ["Base s0", "Broken on purpose s0", "Decrease noise s0", "Fewer time steps s0"]
    done = [c for t in trials(study["dir"]) for c in t.user_attrs.get("cells_done", [])]
    assert sorted(done) == sorted(["reference", "base/s0", "fewer_steps/s0", "less_noise/s0"])
    results = list((study["dir"] / "runs").glob("*/result.json"))
    assert len(results) == 2  # base (shared with fewer_steps) and less_noise; broken never finished
    pids = {t.user_attrs.get("pid") for t in trials(study["dir"])}
    assert len(pids) == 2  # both workers took units


def test_report_rebuilds_from_mlflow_alone(study: dict, tmp_path: Path) -> None:
    elsewhere = tmp_path / "results" / "smoke"
    elsewhere.mkdir(parents=True)
    shutil.copy(study["dir"] / "mlflow.db", elsewhere / "mlflow.db")
    assert main(["report", "--study", "smoke", "--results-dir", str(tmp_path / "results")]) == 0
    pd.testing.assert_frame_equal(report_rows(elsewhere), report_rows(study["dir"]))
    assert (elsewhere / "loss_curves.png").is_file()
    assert not (elsewhere / "histograms.png").exists()  # needs the cached samples, which stayed behind


def test_rerun_retries_the_failed_cell_and_retrains_nothing_else(study: dict,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    before, n_trials = stamps(study["dir"]), len(trials(study["dir"]))
    args = [a for a in study["args"] if a not in ("--workers", "2")]
    assert main(args) == 1  # retried, fails again
    assert "1 cells to run" in capsys.readouterr().out
    assert stamps(study["dir"]) == before
    assert len(trials(study["dir"])) == n_trials + 1  # one new attempt: the failed unit
    after = {r.data.tags["calo_ablate.cell"]: r.info.run_id for r in child_runs(study["dir"])}
    assert after == study["runs"]  # the retry went into the same run

    only_good = list(args)
    only_good[only_good.index("--only") + 1] = "fewer_steps,less_noise"
    assert main(only_good) == 0
    assert "0 cells to run" in capsys.readouterr().out
    assert stamps(study["dir"]) == before
    assert len(trials(study["dir"])) == n_trials + 1
    assert {r.data.tags["calo_ablate.cell"]: r.info.run_id for r in child_runs(study["dir"])} == study["runs"]
    assert "broken" not in report_rows(study["dir"]).index


def test_fail_fast_stops_at_the_first_failure(study: dict, capsys: pytest.CaptureFixture[str]) -> None:
    args = ablate_args(study["tmp"], study["data"], "failfast", "broken,higher_lr", "--fail-fast", sets=NO_EVAL)
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "study stopped: --fail-fast: broken/s0 failed" in captured.out
    rows = report_rows(study["tmp"] / "results" / "failfast")
    assert list(rows.index) == ["base", "broken", "higher_lr"]
    assert "s0 failed" in rows.loc["broken", "note"] and "s0 not run" in rows.loc["higher_lr", "note"]
    assert rows.loc["higher_lr", "finished"] == 0
    evaluated = [c for c in rows.columns if c.startswith(("auc", "sep_", GEN_MS_PREFIX))]
    assert evaluated == []  # no evaluation, no such metrics


def test_kill_9_of_the_process_group_then_resume_into_the_same_runs(study: dict) -> None:
    args = ablate_args(study["tmp"], study["data"], "killed", "base", sets=[*NO_EVAL, "train.max_epochs=3"])
    study_dir = study["tmp"] / "results" / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "calo_ablate.cli", *args], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list((study_dir / "runs").glob("*/last.ckpt")):  # killed after its first checkpoint
        assert proc.poll() is None, "the study ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted = {r.data.tags["calo_ablate.cell"]: r.info.run_id for r in child_runs(study_dir)}
    assert list(interrupted) == ["base/s0"]

    assert main(args) == 0
    runs = child_runs(study_dir)
    assert [(r.info.run_name, r.info.run_id, r.info.status) for r in runs] == \
           [("Base s0", interrupted["base/s0"], "FINISHED")]
    client = MlflowClient(f"sqlite:///{study_dir / 'mlflow.db'}")
    steps = [m.step for m in client.get_metric_history(interrupted["base/s0"], "val/loss")]
    assert len(set(steps)) == 9  # 3 epochs of 3 steps, fewer than 4 epochs: validated after every step
    # resumed from the checkpoint: the first epoch, finished before the kill, was never trained again
    # (an epoch cut short by the kill is trained again and may be logged twice)
    assert steps.count(min(steps)) == 1
    assert any(t.user_attrs.get("interrupted") for t in trials(study_dir))


def test_search_reports_its_best_trial(study: dict) -> None:
    args = ablate_args(study["tmp"], study["data"], "search", "lr_search", sets=NO_EVAL)
    assert main(args) == 0
    study_dir = study["tmp"] / "results" / "search"
    row = report_rows(study_dir).loc["lr_search"]
    assert row["search_trials_mean"] == 2  # the trials its search ran
    assert "best of 2 trials" in row["note"] and "train.lr = " in row["note"]
    client = MlflowClient(f"sqlite:///{study_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("search")
    nested = client.search_runs([exp.experiment_id], filter_string="tags.`calo_ablate.role` = 'search_trial'")
    assert len(nested) == 2


KILL_IN_EVALUATION = """
import os, signal, sys
import calo_ablate.study.cell as cell
cell.evaluate_samples = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
from calo_ablate.cli import main
from calo_ablate.runs.names import GEN_MS_PREFIX, REFERENCE, TAG_DATA_SOURCE, TAG_PROFILE
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_during_evaluation_never_leaves_a_finished_run(study: dict) -> None:
    args = ablate_args(study["tmp"], study["data"], "evalkill", "base")
    study_dir = study["tmp"] / "results" / "evalkill"
    proc = subprocess.run([sys.executable, "-c", KILL_IN_EVALUATION, *args], check=False, capture_output=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL
    runs = {r.data.tags["calo_ablate.cell"]: r for r in child_runs(study_dir)}
    assert runs["base/s0"].info.status == "RUNNING"  # trained, killed while evaluating: not done
    assert "val/loss" in runs["base/s0"].data.metrics and "auc_low" not in runs["base/s0"].data.metrics

    assert main(args) == 0  # the rerun evaluates the trained model into the same run
    after = {r.data.tags["calo_ablate.cell"]: r for r in child_runs(study_dir)}
    assert after["base/s0"].info.run_id == runs["base/s0"].info.run_id
    assert after["base/s0"].info.status == "FINISHED" and "auc_low" in after["base/s0"].data.metrics
