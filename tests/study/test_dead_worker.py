"""A worker that dies while the others finish the study: `ablate` names it and how it died in one line and
exits 0, because every cell is done; the temp file of a write killed before its rename is removed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from calo_ablate.atomic import temp_path
from calo_ablate.runs.faults import MIN_EPOCH_ENV
from calo_ablate.runs.resume import STALE_TEMP_S, remove_stale_temps
from calo_ablate.study.queue import pid_alive
from tests.study.helpers import NO_EVAL, REGISTRY, ablate_args, child_runs, trials

CLI = [sys.executable, "-m", "calo_ablate.cli"]


def _gone_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _training_worker(study_dir: Path) -> int | None:
    """The pid of a worker whose unit has finished an epoch, once there is one."""
    try:
        for trial in trials(study_dir):
            if trial.state.name == "RUNNING" and "epoch" in trial.user_attrs.get("detail", ""):
                return int(trial.user_attrs["pid"])
    except Exception:  # noqa: BLE001 (the journal is not written yet)
        return None
    return None


def test_a_killed_worker_is_named_and_the_study_exits_0_when_every_cell_is_done(tmp_path: Path,
                                                                                 photon_dir: Path) -> None:
    (tmp_path / "ablations.yaml").write_text(REGISTRY)
    study_dir = tmp_path / "results" / "dead"
    pid = _gone_pid()
    stale = temp_path(study_dir / "invocations" / f"0-{pid}.json", pid)
    stale.parent.mkdir(parents=True)
    stale.write_text('{"step": 0, "pi')  # half a write
    old = time.time() - 60
    os.utime(stale, (old, old))
    args = ablate_args(tmp_path, photon_dir, "dead", "less_noise", "--workers", "2",
                       sets=[*NO_EVAL, "train.max_epochs=3"])
    with (tmp_path / "ablate.log").open("w") as log:
        proc = subprocess.Popen([*CLI, *args], stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, MIN_EPOCH_ENV: "2"})
    deadline = time.monotonic() + 600
    while (victim := _training_worker(study_dir)) is None:
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "ablate.log").read_text()
        time.sleep(0.5)
    os.kill(victim, signal.SIGKILL)  # as the OOM killer would
    proc.wait(timeout=600)
    out = (tmp_path / "ablate.log").read_text()
    assert proc.returncode == 0, out
    assert f"complete: 2/2 cells done; worker pid {victim} killed by SIGKILL" in out
    assert f"removed {stale}" in out and not stale.exists()
    runs = child_runs(study_dir)
    assert sorted((r.data.tags["calo_ablate.cell"], r.info.status) for r in runs) == \
        [("base/s0", "FINISHED"), ("less_noise/s0", "FINISHED")]  # the killed unit resumed into its run


def test_only_temp_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    now = time.time()
    dead = temp_path(tmp_path / "result.json", _gone_pid())
    fresh_dead = temp_path(tmp_path / "clock.json", _gone_pid())
    alive = temp_path(tmp_path / "result.json")
    elsewhere = tmp_path / f".run.json.00000000-{_gone_pid()}.tmp"  # another machine's writer, pid unseen
    kept = tmp_path / "result.json"
    for path in (dead, fresh_dead, alive, elsewhere, kept):
        path.write_text("{}")
    for path in (dead, alive, elsewhere, kept):
        os.utime(path, (now - 60, now - 60))
    assert remove_stale_temps([tmp_path], pid_alive) == [dead]
    assert fresh_dead.exists() and alive.exists() and elsewhere.exists() and kept.exists()
    old = now - STALE_TEMP_S - 60
    os.utime(elsewhere, (old, old))  # removed whoever wrote it
    assert remove_stale_temps([tmp_path], pid_alive) == [elsewhere]
