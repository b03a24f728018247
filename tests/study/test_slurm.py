"""Worker jobs through submitit: `--launcher local` runs a study's workers as submitit's local jobs
and waits; `--launcher slurm --no-wait` writes an sbatch job array with the asked resources (checked
with a stand-in `sbatch` on PATH that records what it was given); sacct's answers read. The real
cluster: tests/study/test_slurm_cluster.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from calo_ablate.cli import main
from calo_ablate.errors import ConfigError
from calo_ablate.study.launch import parse_sbatch_options, sacct_states
from tests.study.helpers import NO_EVAL, REGISTRY, ablate_args, all_finished, report_rows, trials

FAKE_SBATCH = """#!/bin/sh
# records its arguments and the submission script, answers like sbatch
echo "$@" > "{record}/args"
for last; do :; done
cp "$last" "{record}/script.sh"
echo "Submitted batch job 4242"
"""


def test_local_submitit_jobs_run_the_study(tmp_path: Path, photon_dir: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ablations.yaml").write_text(REGISTRY)
    args = ablate_args(tmp_path, photon_dir, "jobs", "less_noise", "--launcher", "local", "--workers", "2",
                       "--slurm-cpus", "1", sets=[*NO_EVAL, "train.max_epochs=1"])
    assert main(args) == 0
    assert "submitted 2 worker jobs (local)" in capsys.readouterr().out
    study_dir = tmp_path / "results" / "jobs"
    done = [c for t in trials(study_dir) for c in t.user_attrs.get("cells_done", [])]
    assert sorted(done) == ["base/s0", "less_noise/s0"]
    assert all_finished(report_rows(study_dir), seeds=1)
    logs = list((study_dir / "jobs").glob("*/*_log.out"))
    assert len(logs) == 2  # one log per job


def test_slurm_launcher_submits_a_job_array_with_the_resources(tmp_path: Path, photon_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH.format(record=record)), ("srun", "#!/bin/sh\nexit 1\n")):
        (bin_dir / name).write_text(text)  # submitit looks for srun before it submits
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "ablations.yaml").write_text(REGISTRY)
    args = ablate_args(tmp_path, photon_dir, "cluster", "less_noise", "--launcher", "slurm", "--workers", "3",
                       "--slurm-partition", "gpu", "--slurm-time", "90", "--slurm-cpus", "8", "--slurm-gpus", "1",
                       "--slurm-signal", "120", "--slurm-option", "account=hep", "--no-wait", sets=NO_EVAL)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "submitted 2 worker jobs (slurm)" in out  # two train units: no more workers than units
    assert "calo-ablate report --study cluster" in out
    script = (record / "script.sh").read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --array=0-1", "#SBATCH --signal=USR2@120",
                 "#SBATCH --account=hep"):
        assert line in script
    study_dir = tmp_path / "results" / "cluster"
    assert str(study_dir / "jobs") in script  # the logs' folder
    assert all(t.state.name == "WAITING" for t in trials(study_dir))  # the jobs will take them


def test_sacct_lines_are_read_per_array_task(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = "7_0|RUNNING|0:0\n7_[1-2,4]|PENDING|0:0\n7_3|CANCELLED by 0|0:15\n8|COMPLETED|0:0\n"
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, answer, ""))
    states = sacct_states(["7_0", "8"])
    assert states == {"7_0": ("RUNNING", "0:0"), "7_1": ("PENDING", "0:0"), "7_2": ("PENDING", "0:0"),
                      "7_4": ("PENDING", "0:0"), "7_3": ("CANCELLED", "0:15"), "8": ("COMPLETED", "0:0")}


def test_a_malformed_sbatch_option_is_refused() -> None:
    assert parse_sbatch_options(["account=hep", "--qos=long"]) == {"account": "hep", "qos": "long"}
    with pytest.raises(ConfigError, match="--slurm-option 'account': expected KEY=VALUE"):
        parse_sbatch_options(["account"])
