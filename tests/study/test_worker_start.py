"""A worker that `ablate` starts before planning the study takes the units only once that call's settings
are saved: an earlier call's settings (a rerun, another plan) are not its."""

from __future__ import annotations

from pathlib import Path

import pytest

from calo_ablate.errors import ConfigError
from calo_ablate.study.queue import StudyQueue
from calo_ablate.study.worker import open_planned_study


def _planned(tmp_path: Path, call_id: str) -> str:
    storage = str(tmp_path / "optuna.journal")
    queue = StudyQueue(storage, "s", create=True)
    queue.sync([("unit0", ["base/s0"])])
    queue.save_settings({"study": "s", "call_id": call_id})
    return storage


def test_a_worker_of_one_call_refuses_the_settings_of_another(tmp_path: Path) -> None:
    storage = _planned(tmp_path, "earlier")
    with pytest.raises(ConfigError, match="call later did not plan it"):
        open_planned_study(storage, "s", call_id="later")


def test_a_worker_of_the_call_that_planned_the_study_opens_it(tmp_path: Path) -> None:
    storage = _planned(tmp_path, "this")
    assert open_planned_study(storage, "s", call_id="this").settings()["call_id"] == "this"
    assert open_planned_study(storage, "s").settings()["call_id"] == "this"  # `calo-ablate worker` by hand
