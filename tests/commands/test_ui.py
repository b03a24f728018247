"""`calo-ablate ui` points at the study's runs view; the study's experiment is a model-training one."""

from __future__ import annotations

import subprocess
from argparse import Namespace
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from calo_ablate.commands import study as commands
from calo_ablate.runs.record import ensure_experiment


def test_ui_prints_the_runs_view_of_the_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    study_dir = tmp_path / "results" / "mystudy"
    study_dir.mkdir(parents=True)
    uri = f"sqlite:///{study_dir / 'mlflow.db'}"
    exp_id = ensure_experiment(uri, "mystudy")
    assert MlflowClient(uri).get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"
    launched: list[list[str]] = []
    monkeypatch.setattr(subprocess, "call", lambda command: launched.append(command) or 0)
    assert commands.ui(Namespace(results_dir=str(tmp_path / "results"), study="mystudy", port=5123)) == 0
    assert f"http://127.0.0.1:5123/#/experiments/{exp_id}/runs" in capsys.readouterr().out
    assert launched and launched[0][-1] == "5123"
