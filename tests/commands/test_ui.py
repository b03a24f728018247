"""`calo-ablate ui` opens the MLflow UI on the study's cells, and stopping it stops every process it started."""

from __future__ import annotations

import signal
import subprocess
import sys
from argparse import Namespace
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from mlflow.tracking import MlflowClient

from calo_ablate.commands import ui as ui_command
from calo_ablate.runs.names import ROLE_CELL, ROLE_STUDY, TAG_ROLE
from calo_ablate.runs.tracker import Tracker
from tests.study.servers import free_port, wait_healthy

STOP_TIMEOUT_S = 60.0


def _store_with_a_parent_and_two_cells(tmp_path: Path) -> tuple[str, str]:
    study_dir = tmp_path / "results" / "mystudy"
    study_dir.mkdir(parents=True)
    uri = f"sqlite:///{study_dir / 'mlflow.db'}"
    exp_id = Tracker(uri).ensure_experiment("mystudy")
    client = MlflowClient(uri)
    parent = client.create_run(exp_id, run_name="mystudy", tags={TAG_ROLE: ROLE_STUDY}).info.run_id
    for seed in (0, 1):
        client.create_run(exp_id, run_name=f"Base s{seed}",
                          tags={TAG_ROLE: ROLE_CELL, "mlflow.parentRunId": parent})
    return uri, exp_id


def test_ui_prints_the_cells_view_of_the_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    uri, exp_id = _store_with_a_parent_and_two_cells(tmp_path)
    assert MlflowClient(uri).get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"
    launched: list[list[str]] = []
    monkeypatch.setattr(ui_command, "serve", lambda command: launched.append(command) or 0)
    assert ui_command.ui(Namespace(results_dir=str(tmp_path / "results"), study="mystudy", port=5123)) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if "http://" in s)
    url = line.split(" at ")[1].split()[0]
    assert url.startswith(f"http://127.0.0.1:5123/#/experiments/{exp_id}/runs?searchFilter=")
    query = parse_qs(url.split("?", 1)[1])
    assert query == {"searchFilter": [ui_command.CELLS_FILTER], "orderByKey": [ui_command.CELLS_ORDER_BY],
                     "orderByAsc": ["true"]}
    assert launched and launched[0][-1] == "5123"


def test_the_cells_filter_selects_the_cells_and_not_the_parent(tmp_path: Path) -> None:
    uri, exp_id = _store_with_a_parent_and_two_cells(tmp_path)
    runs = MlflowClient(uri).search_runs([exp_id], filter_string=ui_command.CELLS_FILTER,
                                         order_by=[f"{ui_command.CELLS_ORDER_BY} ASC"])
    assert [r.info.run_name for r in runs] == ["Base s0", "Base s1"]


def test_sigterm_to_ui_stops_every_process_it_started(tmp_path: Path) -> None:
    _store_with_a_parent_and_two_cells(tmp_path)
    port, log = free_port(), tmp_path / "ui.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "calo_ablate.cli", "ui", "--study", "mystudy", "--port", str(port),
             "--results-dir", str(tmp_path / "results")], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process, log)
        started = ui_command.descendants(process.pid)
        assert started, "mlflow ui runs as a child of calo-ablate ui"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=STOP_TIMEOUT_S) == 128 + signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
    left = sorted(pid for pid in started if ui_command.is_running(pid))
    assert not left, f"processes left running after SIGTERM: {left}"
