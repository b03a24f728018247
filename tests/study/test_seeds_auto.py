"""`calo-ablate ablate --seeds auto`: seeds added one at a time to the undecided rows, the cap, the budget,
and a finished study continued with a higher cap (tiny model, no evaluation; slow: about a minute)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from calo_ablate.cli import main
from calo_ablate.report.stats import Design
from calo_ablate.study import runner
from tests.study.helpers import NO_EVAL, REGISTRY, ablate_args, child_runs, report_rows, stamps, study_table

pytestmark = pytest.mark.slow


def _auto_args(tmp: Path, data: Path, *extra: str) -> list[str]:
    args = ablate_args(tmp, data, "auto", "fewer_steps,higher_lr", *extra, sets=NO_EVAL)
    args[args.index("--seeds") + 1] = "auto"
    return args


def _cells(study_dir: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for run in child_runs(study_dir):
        out.setdefault(run.data.tags["ablation"], []).append(int(run.data.tags["seed"]))
    return {k: sorted(v) for k, v in out.items()}


def _parent_tags(study_dir: Path) -> dict[str, str]:
    client = MlflowClient(f"sqlite:///{study_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(study_dir.name)
    return client.search_runs([exp.experiment_id], filter_string="tags.`calo_ablate.role` = 'study'")[0].data.tags


def test_seeds_are_added_to_undecided_rows_until_the_cap_and_a_higher_cap_continues(
        tmp_path: Path, photon_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ablations.yaml").write_text(REGISTRY)
    study_dir = tmp_path / "results" / "auto"
    # "Increased learning rate" never decides (whatever the numbers): it takes every seed up to the cap
    monkeypatch.setattr(runner, "undecided_rows", lambda table: ["higher_lr"])
    assert main(_auto_args(tmp_path, photon_dir, "--max-seeds", "4")) == 0
    out = capsys.readouterr().out
    assert "seed 4 for base, higher_lr" in out and "the cap of 4 seeds is reached" in out
    assert _cells(study_dir) == {"base": [0, 1, 2, 3], "fewer_steps": [0, 1, 2], "higher_lr": [0, 1, 2, 3]}
    tags = _parent_tags(study_dir)
    assert json.loads(tags["seeds_by_row"]) == {"base": 4, "fewer_steps": 3, "higher_lr": 4}
    assert json.loads(tags["seed_design"]) == {"first": 3, "cap": 4}
    assert study_table(study_dir).design == Design(3, 4)  # the report's rules: looks at 3..4 seeds
    rows = report_rows(study_dir)
    assert rows["finished"].to_dict() == {"base": 4, "fewer_steps": 3, "higher_lr": 4} and not rows["failed"].any()
    assert "not run" not in rows.loc["fewer_steps", "note"]  # decided at 3 seeds: not missing its later seeds

    before = stamps(study_dir)
    assert main(_auto_args(tmp_path, photon_dir, "--max-seeds", "5")) == 0
    assert _cells(study_dir) == {"base": [0, 1, 2, 3, 4], "fewer_steps": [0, 1, 2], "higher_lr": [0, 1, 2, 3, 4]}
    after = stamps(study_dir)
    assert all(after[p] == t for p, t in before.items())  # nothing trained again
    assert study_table(study_dir).design == Design(3, 5)


def test_the_budget_stops_before_a_round_that_would_not_fit(tmp_path: Path, photon_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ablations.yaml").write_text(REGISTRY)
    monkeypatch.setattr(runner, "undecided_rows", lambda table: ["higher_lr"])
    assert main(_auto_args(tmp_path, photon_dir, "--max-seeds", "6", "--budget", "1s")) == 0
    assert "the budget of 0.0 min would be passed" in capsys.readouterr().out
    assert _cells(tmp_path / "results" / "auto") == {"base": [0, 1, 2], "fewer_steps": [0, 1, 2],
                                                     "higher_lr": [0, 1, 2]}


def test_bad_seed_options_are_refused(tmp_path: Path, photon_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ablations.yaml").write_text(REGISTRY)
    args = _auto_args(tmp_path, photon_dir)
    args[args.index("--seeds") + 1] = "many"
    assert main(args) == 2
    assert "--seeds 'many': expected a positive number of seeds or 'auto'" in capsys.readouterr().err
    assert main(_auto_args(tmp_path, photon_dir, "--budget", "soon")) == 2
    assert "--budget 'soon'" in capsys.readouterr().err

