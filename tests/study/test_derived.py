"""Derived trainings (a registry entry's `from:`): the student's initial weights, chained keys, the plan's
checks of train.teacher, and smoke studies: a kill in the teacher's and in the student's training, two
workers on a chain, a teacher that fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mlflow.tracking import MlflowClient

from calo_ablate.atomic import pid_namespace
from calo_ablate.cli import main
from calo_ablate.config import Config, resolve_config, train_key
from calo_ablate.data.source import ensure_data
from calo_ablate.errors import ConfigError, TrainingError
from calo_ablate.model.caloscore.distill import DistillModule
from calo_ablate.model.families import load_family
from calo_ablate.runs.faults import MIN_EPOCH_ENV
from calo_ablate.runs.names import TAG_CELL, TAG_ERROR, TEACHER_TRAIN_SECONDS, TRAIN_SECONDS
from calo_ablate.runs.tracker import Tracker
from calo_ablate.runs.train import RESULT_FILE, TrainResult, new_module, run_training, teacher_module
from calo_ablate.study import runner
from calo_ablate.study.cell import TeacherPending, teacher_train_seconds, wait_for_teacher
from calo_ablate.study.plan import make_plan
from calo_ablate.study.queue import StudyQueue
from calo_ablate.study.registry import load_registry
from calo_ablate.study.worker import hand_back
from tests.study.helpers import NO_EVAL, TINY, ablate_args, child_runs, report_rows, stamps, trials

CLI = [sys.executable, "-m", "calo_ablate.cli"]
CHECKSUMS = {"dataset_1_photons_1.hdf5": "a" * 32, "dataset_1_photons_2.hdf5": "b" * 32}
DISTILL = ["model.diffusion.distill.enabled=true", "model.diffusion.distill.steps=2", "sample.steps_factor=0.5"]
CHAIN = """\
ablations:
  base: {title: Base}
  tuned: {title: Fine-tuned from the distilled, from: distilled, set: {train.lr: 1.0e-4}}
  distilled:
    title: Distilled to half the steps
    from: base
    set: {model.diffusion.distill.enabled: true, model.diffusion.distill.steps: 2, sample.steps_factor: 0.5}
  other: {title: Unrelated, set: {model.voxel.block_depth: 2}}
"""


def _registry(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ablations.yaml"
    path.write_text(text)
    return path


# the student's initial weights -----------------------------------------------------------------------
def _config(data_dir: Path, *extra: str) -> Config:
    return resolve_config("1", "smoke", cli_set=[f"data.data_dir={data_dir}", *TINY, "trainer.threads=1", *extra])


@pytest.fixture(scope="module")
def teacher(photon_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A trained teacher's run folder and its best checkpoint's state_dict."""
    root = tmp_path_factory.mktemp("teacher")
    result = run_training(_config(photon_dir), files=ensure_data("1", photon_dir, log=lambda _: None),
                          run_dir=root / "run", tracker=Tracker(f"sqlite:///{root}/mlflow.db"), experiment_name="t",
                          run_name="base/s0")
    return root / "run", torch.load(result.checkpoint_path, map_location="cpu", weights_only=True)["state_dict"]


def _teacher_ema_weights(saved: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What a student started from the teacher holds: the teacher's EMA weights in `net` and in `ema`."""
    return {k: saved[f"ema.{k}"] if k.startswith("net.") else v for k, v in saved.items()}


def _assert_same_weights(module: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = module.state_dict()
    assert set(state) == set(expected)
    for key, value in state.items():
        assert torch.equal(value, expected[key]), key


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("extra", [[], [*DISTILL, "model.diffusion.distill.student_init=teacher"]],
                         ids=["fine-tuning", "distillation"])
def test_a_derived_module_starts_from_the_teachers_ema_weights(teacher: tuple[Path, dict[str, torch.Tensor]],
                                                               photon_dir: Path, extra: list[str]) -> None:
    run_dir, saved = teacher
    assert any(not torch.equal(saved[k], saved[f"ema.{k}"]) for k in saved if k.startswith("net."))  # EMA != net
    config = _config(photon_dir, "train.teacher=base", *extra)
    student = new_module(config, teacher_module(config, run_dir))
    assert isinstance(student, DistillModule) == bool(extra)
    expected = _teacher_ema_weights(saved)
    if extra:  # a distillation round restarts the EMA's warm-up: its weights are the teacher's, its count 0
        expected["ema.updates"] = torch.zeros_like(saved["ema.updates"])
    _assert_same_weights(student, expected)
    assert set(student.state_dict()) == set(load_family(config).module().state_dict())  # module()'s keys only
    params = sum(p.numel() for p in student.parameters())
    assert params == sum(p.numel() for p in load_family(config).module().parameters())  # no teacher in the optimiser


@pytest.mark.usefixtures("one_thread")
def test_a_fresh_distillation_student_has_its_own_weights(teacher: tuple[Path, dict[str, torch.Tensor]],
                                                          photon_dir: Path) -> None:
    run_dir, saved = teacher
    config = _config(photon_dir, "train.teacher=base", *DISTILL, "model.diffusion.distill.student_init=fresh")
    student = new_module(config, teacher_module(config, run_dir))
    state = student.state_dict()
    assert isinstance(student, DistillModule) and set(state) == set(saved)
    assert any(not torch.equal(v, saved[f"ema.{k}"]) for k, v in state.items() if k.startswith("net."))


def test_a_single_training_with_train_teacher_is_refused_naming_the_key(photon_dir: Path, tmp_path: Path) -> None:
    config = _config(photon_dir, "train.teacher=base")
    with pytest.raises(ConfigError, match=r"train.teacher='base': no trained teacher to start from"):
        run_training(config, files=ensure_data("1", photon_dir, log=lambda _: None), run_dir=tmp_path / "run",
                     tracker=Tracker(f"sqlite:///{tmp_path}/mlflow.db"), experiment_name="t", run_name="r")
    assert not (tmp_path / "run").exists()  # refused before anything was written
    assert teacher_module(_config(photon_dir), None) is None


# the plan: chains, keys, checks ---------------------------------------------------------------------
def _plan(path: Path, seeds: int | dict[str, int] = 1, cli_set: tuple[str, ...] = (), only: list[str] | None = None):
    registry = load_registry(path, dataset="1", profile="smoke", cli_set=cli_set).select(only)
    return make_plan(registry, seeds=seeds, checksums=CHECKSUMS)


def test_a_chain_is_planned_teachers_first_with_chained_keys(tmp_path: Path) -> None:
    plan = _plan(_registry(tmp_path, CHAIN), seeds=2)
    for seed in (0, 1):
        base, distilled, tuned = (plan.cell(f"{n}/s{seed}") for n in ("base", "distilled", "tuned"))
        assert [c.name for c in plan.teacher_chain(tuned)] == [f"distilled/s{seed}", f"base/s{seed}"]
        assert plan.teacher_cell(base) is None and plan.teacher_cell(distilled) is base
        assert len({base.train_key, distilled.train_key, tuned.train_key}) == 3
    order = [u.cells[0].name for u in plan.units()]
    for student, teacher in (("tuned", "distilled"), ("distilled", "base")):
        for seed in (0, 1):
            assert order.index(f"{teacher}/s{seed}") < order.index(f"{student}/s{seed}")
    assert plan.cell("tuned/s0").train_key != plan.cell("tuned/s1").train_key  # per seed: its seed's teacher


def test_a_changed_teacher_changes_the_students_keys_and_nothing_else_does(tmp_path: Path) -> None:
    before = _plan(_registry(tmp_path, CHAIN))
    unrelated = _plan(_registry(tmp_path, CHAIN.replace("block_depth: 2", "block_depth: 3")))
    tuned_teacher = _plan(_registry(tmp_path, CHAIN.replace("sample.steps_factor: 0.5}", "sample.steps_factor: 0.5, "
                                                            "train.lr: 5.0e-4}")))
    for name in ("base", "distilled", "tuned"):
        assert unrelated.cell(f"{name}/s0").train_key == before.cell(f"{name}/s0").train_key
    tuned = tuned_teacher.cell("tuned/s0")  # only its teacher (distilled) changed: its own config and key are the same
    assert tuned.config == before.cell("tuned/s0").config
    assert train_key(tuned.config, CHECKSUMS) == train_key(before.cell("tuned/s0").config, CHECKSUMS)
    assert tuned.train_key != before.cell("tuned/s0").train_key
    assert tuned.eval_key != before.cell("tuned/s0").eval_key
    assert tuned_teacher.cell("base/s0").train_key == before.cell("base/s0").train_key


def test_only_a_derived_entry_brings_its_teachers(tmp_path: Path) -> None:
    path = _registry(tmp_path, CHAIN)
    assert _plan(path, only=["tuned"]).registry.names() == ["base", "tuned", "distilled"]
    registry = load_registry(path, dataset="1", profile="smoke")
    assert registry.teacher_chain("tuned") == ["distilled", "base"] and registry.teacher_chain("other") == []


def test_seeds_auto_gives_an_undecided_students_teachers_its_new_seed(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "build_table", lambda tracker, parent: None)
    monkeypatch.setattr(runner, "undecided_rows", lambda table: ["tuned"])
    registry = load_registry(_registry(tmp_path, CHAIN), dataset="1", profile="smoke")
    study = SimpleNamespace(request=SimpleNamespace(max_seeds=5, budget_s=None), log=lambda _: None,
                            registry=registry, tracker=Tracker("unused://"))
    seeds = {"base": 3, "tuned": 3, "distilled": 3, "other": 3}
    following = runner._next_seeds(study, "parent", seeds, clock=None)
    assert following == {"base": 4, "tuned": 4, "distilled": 4, "other": 3}
    _plan(_registry(tmp_path, CHAIN), seeds=following)  # every student's seed has its teachers' cells


@pytest.mark.parametrize(("cli_set", "only", "expected"), [
    (("train.teacher=nope",), ["other"],
     "row 'base' seed 0: train.teacher='nope' (chain base -> nope): names no row of the plan"),
    (("train.teacher=base",), ["other"], "row 'base' seed 0: train.teacher='base' (chain base -> base): a cycle"),
    (("families.caloscore_v2.train.teacher=other",), ["other"],
     "row 'base' seed 0: train.teacher='other' (chain base -> other -> other): a cycle"),
])
def test_a_train_teacher_set_on_the_command_line_is_checked(tmp_path: Path, cli_set: tuple[str, ...],
                                                            only: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        _plan(_registry(tmp_path, CHAIN), cli_set=cli_set, only=only)
    assert expected in str(err.value)


def test_list_shows_the_chain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--registry", str(_registry(tmp_path, CHAIN)), "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "from: distilled (trains from its model, per seed: tuned <- distilled <- base)" in out
    assert "from: base (trains from its model, per seed: distilled <- base)" in out
    assert "train.teacher" not in out


# waiting for a teacher, in the queue -----------------------------------------------------------------
def _gone_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def waiting_student(tmp_path: Path) -> tuple[SimpleNamespace, StudyQueue, list[str]]:
    """A study context of the chain (base, distilled, tuned; one seed), its queue with the units enqueued
    student first (as after a kill of the teacher's unit), and the context's log."""
    plan = _plan(_registry(tmp_path, CHAIN), only=["distilled"])
    log: list[str] = []
    ctx = SimpleNamespace(plan=plan, runs_dir=tmp_path / "runs", log=log.append)
    queue = StudyQueue(str(tmp_path / "optuna.journal"), "q", create=True)
    queue.sync([("student", ["distilled/s0"]), ("teacher", ["base/s0"])])
    return ctx, queue, log


def _result_json(ctx: SimpleNamespace) -> None:
    folder = ctx.runs_dir / ctx.plan.cell("base/s0").train_key
    folder.mkdir(parents=True)
    TrainResult("run", "best.ckpt", {}, 1.0, 1, 1, 2.5).save(folder / RESULT_FILE)


def test_a_student_taken_before_its_queued_teacher_goes_back_behind_it(waiting_student) -> None:
    ctx, queue, _ = waiting_student
    claim = queue.take()
    assert claim.cells == ("distilled/s0",)
    with pytest.raises(TeacherPending, match="its teacher base/s0 waits in the queue"):
        wait_for_teacher(ctx, queue, claim, ctx.plan.cell("distilled/s0"))
    assert hand_back(queue, claim) == ["distilled/s0"]
    assert [queue.take().cells for _ in range(2)] == [("base/s0",), ("distilled/s0",)]


def test_a_student_waits_while_the_teacher_trains_and_again_when_its_worker_died(waiting_student) -> None:
    ctx, queue, log = waiting_student
    student, teacher = queue.take(), queue.take()  # two workers
    assert teacher.cells == ("base/s0",)
    looks: list[int] = []

    def teacher_finishes() -> None:  # called between looks: the teacher's worker writes its result on the 2nd
        looks.append(1)
        if len(looks) == 2:
            _result_json(ctx)

    wait_for_teacher(ctx, queue, student, ctx.plan.cell("distilled/s0"), teacher_finishes, poll_s=0.01)
    assert len(looks) == 2 and "distilled/s0: waiting for the training of its teacher base/s0" in log[0]
    assert teacher_train_seconds(ctx, ctx.plan.cell("distilled/s0")) == {TEACHER_TRAIN_SECONDS: 2.5}
    assert teacher_train_seconds(ctx, ctx.plan.cell("base/s0")) == {}
    (ctx.runs_dir / ctx.plan.cell("base/s0").train_key / RESULT_FILE).unlink()
    queue.storage.set_trial_user_attr(teacher.trial_id, "worker", {"host": "h", "pid": _gone_pid(),
                                                                    "ns": pid_namespace()})
    with pytest.raises(TeacherPending):  # the teacher's worker is gone: its unit is queued again, student behind
        wait_for_teacher(ctx, queue, student, ctx.plan.cell("distilled/s0"), poll_s=0.01)


def test_a_student_whose_teacher_failed_fails_with_the_teachers_error(waiting_student) -> None:
    ctx, queue, _ = waiting_student
    student, teacher = queue.take(), queue.take()
    queue.cell_failed(teacher, "base/s0", "TrainingError: non-finite training loss")
    queue.finish(teacher, None)
    with pytest.raises(TrainingError) as err:
        wait_for_teacher(ctx, queue, student, ctx.plan.cell("distilled/s0"))
    assert "distilled/s0: its teacher's training (base/s0" in str(err.value)
    assert "not queued" in str(err.value) and "non-finite training loss" in str(err.value)


# smoke studies ---------------------------------------------------------------------------------------
def _detail_seen(study_dir: Path, text: str) -> bool:
    try:
        return any(t.state.name == "RUNNING" and text in t.user_attrs.get("detail", "") for t in trials(study_dir))
    except Exception:  # noqa: BLE001 (the journal is not written yet)
        return False


def _kill_when(args: list[str], study_dir: Path, detail: str, log: Path) -> None:
    """Run `ablate` until a unit's progress detail shows `detail`, then kill -9 its process group."""
    with log.open("w") as out:
        proc = subprocess.Popen([*CLI, *args], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, MIN_EPOCH_ENV: "3"})
    deadline = time.monotonic() + 600
    while not _detail_seen(study_dir, detail):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL


def _finished_trainings(study_dir: Path) -> dict[str, TrainResult]:
    return {d.name: TrainResult.load(d / RESULT_FILE) for d in (study_dir / "runs").iterdir()
            if (d / RESULT_FILE).is_file()}


def _cells_done(study_dir: Path) -> list[str]:
    return sorted(c for t in trials(study_dir) for c in t.user_attrs.get("cells_done", []))


def _no_step_twice(study_dir: Path) -> None:
    client = MlflowClient(f"sqlite:///{study_dir / 'mlflow.db'}")
    for run in child_runs(study_dir):
        for name in run.data.metrics:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, name)]
            assert len(steps) == len(set(steps)), f"{run.data.tags[TAG_CELL]}: {name} logged twice at a step"


@pytest.mark.slow  # three `ablate` calls: minutes on a loaded 2-core machine
def test_kills_in_the_teachers_and_the_students_training_resume_into_one_of_each(tmp_path: Path,
                                                                                 photon_dir: Path) -> None:
    _registry(tmp_path, CHAIN)
    args = ablate_args(tmp_path, photon_dir, "killed", "distilled", sets=[*NO_EVAL, "train.max_epochs=2"])
    study_dir = tmp_path / "results" / "killed"
    _kill_when(args, study_dir, "base/s0 epoch 1/2", tmp_path / "first.log")
    assert not _finished_trainings(study_dir)
    _kill_when(args, study_dir, "distilled/s0 epoch 1/2", tmp_path / "second.log")
    second = (tmp_path / "second.log").read_text()
    # the student's unit (queued before the killed teacher's was enqueued again) went back behind it
    assert "distilled/s0: the training of its teacher base/s0 waits in the queue" in second
    teacher_files = stamps(study_dir)
    assert len(_finished_trainings(study_dir)) == 1 and teacher_files
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert {k: v for k, v in stamps(study_dir).items() if k in teacher_files} == teacher_files  # not retrained
    trainings = _finished_trainings(study_dir)
    assert len(trainings) == 2 and sorted(r.epochs for r in trainings.values()) == [2, 2]
    assert sorted(p.name for p in (study_dir / "runs").iterdir()) == sorted(trainings)  # no other training began
    runs = {r.data.tags[TAG_CELL]: r for r in child_runs(study_dir)}
    assert sorted((c, r.info.status) for c, r in runs.items()) == [("base/s0", "FINISHED"), ("distilled/s0", "FINISHED")]
    assert _cells_done(study_dir) == ["base/s0", "distilled/s0"]
    teacher_seconds = runs["base/s0"].data.metrics[TRAIN_SECONDS]
    assert runs["distilled/s0"].data.metrics[TEACHER_TRAIN_SECONDS] == pytest.approx(teacher_seconds)
    assert TEACHER_TRAIN_SECONDS not in runs["base/s0"].data.metrics
    _no_step_twice(study_dir)


@pytest.mark.slow
def test_two_workers_train_each_teacher_of_a_chain_once(tmp_path: Path, photon_dir: Path) -> None:
    _registry(tmp_path, CHAIN)
    args = ablate_args(tmp_path, photon_dir, "chain", "tuned", "--workers", "2", sets=NO_EVAL)
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    study_dir = tmp_path / "results" / "chain"
    for name in ("base", "distilled", "tuned"):  # each cell trained by one worker, once
        assert proc.stdout.count(f"cell {name}/s0: ") == 1, proc.stdout
    assert "waiting for the training of its teacher" in proc.stdout  # the second worker waited
    assert len(_finished_trainings(study_dir)) == 3 and len(list((study_dir / "runs").iterdir())) == 3
    runs = {r.data.tags[TAG_CELL]: r.data.metrics for r in child_runs(study_dir)}
    chain_seconds = runs["base/s0"][TRAIN_SECONDS] + runs["distilled/s0"][TRAIN_SECONDS]
    assert runs["tuned/s0"][TEACHER_TRAIN_SECONDS] == pytest.approx(chain_seconds)
    assert _cells_done(study_dir) == ["base/s0", "distilled/s0", "tuned/s0"]
    teacher_seconds = report_rows(study_dir)[f"{TEACHER_TRAIN_SECONDS}_mean"]
    assert teacher_seconds["tuned"] == pytest.approx(chain_seconds)  # the report's column: what its teachers cost
    _no_step_twice(study_dir)


@pytest.mark.slow
def test_a_teacher_that_fails_fails_its_student_without_waiting(tmp_path: Path, photon_dir: Path) -> None:
    _registry(tmp_path, "ablations:\n  base: {title: Base, set: {train.lr: 1.0e+30}}\n"
                        "  student: {title: Student, from: base}\n")
    args = ablate_args(tmp_path, photon_dir, "broken", "student", sets=NO_EVAL)
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = {r.data.tags[TAG_CELL]: r for r in child_runs(tmp_path / "results" / "broken")}
    assert runs["base/s0"].info.status == "FAILED" and "non-finite" in runs["base/s0"].data.tags[TAG_ERROR]
    error = runs["student/s0"].data.tags[TAG_ERROR]
    assert runs["student/s0"].info.status == "FAILED"
    assert "its teacher's training (base/s0" in error and "non-finite" in error, error
