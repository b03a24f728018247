"""A study on a real PostgreSQL server (started by the fixture): `calo-ablate ablate --storage
postgresql://...` and a separate `calo-ablate worker --study S --storage ...` share its units, each
unit taken once; a worker of another code version is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from calo_ablate.study.queue import StudyQueue
from tests.study.helpers import NO_EVAL, REGISTRY, ablate_args, all_finished, report_rows

CLI = [sys.executable, "-m", "calo_ablate.cli"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], check=False, capture_output=True, text=True, timeout=600)


def test_ablate_and_a_worker_command_share_a_postgresql_study(tmp_path: Path, photon_dir: Path,
                                                             postgres_url: str) -> None:
    (tmp_path / "ablations.yaml").write_text(REGISTRY)
    args = ablate_args(tmp_path, photon_dir, "pg", "higher_lr,less_noise", "--storage", postgres_url,
                       "--seeds", "3", sets=[*NO_EVAL, "train.max_epochs=1"])  # 9 units: both commands take some
    # the worker starts first and waits for the plan, as a batch job submitted alongside `ablate` would
    log = tmp_path / "worker.log"
    with log.open("w") as worker_log:
        worker = subprocess.Popen([*CLI, "worker", "--study", "pg", "--storage", postgres_url,
                                   "--wait-for-study", "300", "--results-dir", str(tmp_path / "results")],
                                  stdout=worker_log, stderr=subprocess.STDOUT)
        ablate = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out, _ = ablate.communicate(timeout=600)
        worker.wait(timeout=600)
    queue = StudyQueue(postgres_url, "pg", create=False)
    assert worker.returncode == 0, log.read_text()
    assert ablate.returncode == 0, out

    trials = queue.trials()
    done = [c for t in trials for c in t.user_attrs.get("cells_done", [])]
    assert sorted(done) == sorted(f"{row}/s{seed}" for row in ("base", "higher_lr", "less_noise")
                                  for seed in range(3))  # each cell once
    pids = {t.user_attrs["pid"] for t in trials if t.user_attrs.get("cells_done")}
    assert len(pids) == 2 and ablate.pid in pids  # the worker command took units too
    rows = report_rows(tmp_path / "results" / "pg")
    assert list(rows.index) == ["base", "higher_lr", "less_noise"] and all_finished(rows, seeds=3)


def test_a_worker_of_another_config_is_refused(tmp_path: Path, photon_dir: Path, postgres_url: str) -> None:
    (tmp_path / "ablations.yaml").write_text(REGISTRY)
    args = ablate_args(tmp_path, photon_dir, "pg-refuse", "base", "--storage", postgres_url,
                       sets=[*NO_EVAL, "train.max_epochs=1"])
    assert run_cli(*args).returncode == 0
    queue = StudyQueue(postgres_url, "pg-refuse", create=False)
    settings = queue.settings()
    queue.save_settings({**settings, "config_hash": "0123456789abcdef"})  # planned from other YAML files
    worker = run_cli("worker", "--study", "pg-refuse", "--storage", postgres_url,
                     "--results-dir", str(tmp_path / "results"))
    assert worker.returncode == 2
    assert "was planned with config_hash 0123456789abcdef" in worker.stderr
    assert "refuses its units" in worker.stderr
