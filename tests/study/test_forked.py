"""Workers forked from `ablate`: their exit codes and errors as a command's, the parent's buffered output
not printed twice, database connections not shared with the parent, torch threads usable in a child of a
parent that kept to one thread, and the probe that finds a parent that did not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from calo_ablate.errors import EXIT_ERROR, ConfigError
from calo_ablate.runs.tracker import Tracker
from calo_ablate.study.forked import ForkedWorker
from calo_ablate.study.worker import EXIT_STOPPED, describe_process_end


def _raise(err: BaseException) -> int:
    raise err


def _wait(worker: ForkedWorker, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    while worker.poll() is None:
        if time.monotonic() > deadline:
            os.kill(worker.pid, signal.SIGKILL)
            pytest.fail(f"forked worker {worker.pid} still running after {timeout_s} s")
        time.sleep(0.05)
    return worker.wait()


@pytest.mark.parametrize("code", [0, 1, EXIT_STOPPED])
def test_the_entry_s_value_is_the_exit_code(code: int) -> None:
    worker = ForkedWorker(lambda: code, {})
    assert _wait(worker) == code
    assert describe_process_end(worker).died is (code not in (0, 1))


def test_an_error_is_its_message_and_exit_code_2_without_a_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    worker = ForkedWorker(lambda: _raise(ConfigError("registry.yaml: entry 'x': key 'lr' expected a number")), {})
    assert _wait(worker) == EXIT_ERROR
    err = capfd.readouterr().err
    assert "calo-ablate: error: registry.yaml: entry 'x'" in err and "Traceback" not in err


def test_an_unexpected_exception_exits_1_with_its_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    worker = ForkedWorker(lambda: _raise(ZeroDivisionError("a bug")), {})
    assert _wait(worker) == 1
    assert "Traceback" in capfd.readouterr().err


def test_the_child_gets_its_environment_and_the_parent_keeps_its_own(tmp_path: Path) -> None:
    out = tmp_path / "seen"

    def entry() -> int:
        out.write_text(os.environ["CALO_ABLATE_TEST_FORK"])
        return 0

    assert _wait(ForkedWorker(entry, {"CALO_ABLATE_TEST_FORK": "child's"})) == 0
    assert out.read_text() == "child's"
    assert "CALO_ABLATE_TEST_FORK" not in os.environ


def test_terminate_and_kill_are_seen_as_signals() -> None:
    worker = ForkedWorker(lambda: time.sleep(60) or 0, {})
    worker.terminate()
    assert _wait(worker) == -signal.SIGTERM
    worker = ForkedWorker(lambda: time.sleep(60) or 0, {})
    os.kill(worker.pid, signal.SIGKILL)
    assert _wait(worker) == -signal.SIGKILL
    end = describe_process_end(worker)
    assert end.died and "killed by SIGKILL" in end.how


def test_the_parent_s_buffered_output_is_printed_once() -> None:
    script = ("import sys\nfrom calo_ablate.study.forked import ForkedWorker\n"
              "sys.stdout.write('parent line\\n')\n"  # buffered: stdout is a pipe
              "w = ForkedWorker(lambda: print('child line') or 0, {})\nsys.exit(w.wait())\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.count("parent line") == 1 and out.count("child line") == 1


def test_a_child_opens_its_own_database_connection(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.connect() as conn:  # the parent's connection, back in the pool
        conn.execute(text("create table t (x integer)"))
        conn.commit()
        inherited = id(conn.connection.dbapi_connection)
    result = tmp_path / "child"

    def entry() -> int:
        with engine.connect() as own:
            own.execute(text("insert into t values (1)"))
            own.commit()
            result.write_text(str(id(own.connection.dbapi_connection) != inherited))
        return 0

    assert _wait(ForkedWorker(entry, {})) == 0
    assert result.read_text() == "True"
    with engine.connect() as conn:  # the parent's own connection still works
        assert conn.execute(text("select count(*) from t")).scalar() == 1


def test_parent_and_forked_child_log_to_one_mlflow_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri)
    experiment = tracker.ensure_experiment("fork")
    parent_run = tracker.client.create_run(experiment).info.run_id

    def entry() -> int:
        child = Tracker(uri)
        run = child.client.create_run(experiment).info.run_id
        for step in range(5):
            child.client.log_metric(run, "x", float(step), step=step)
        return 0

    worker = ForkedWorker(entry, {})
    for step in range(5):
        tracker.client.log_metric(parent_run, "y", float(step), step=step)
    assert _wait(worker) == 0
    runs = tracker.client.search_runs([experiment])
    assert len(runs) == 2
    assert sorted(m.value for r in runs for m in tracker.client.get_metric_history(r.info.run_id, "x")) == [
        0.0, 1.0, 2.0, 3.0, 4.0]


# in a fresh interpreter each: this test process has run torch on several threads already
HELD_PARENT = """
import sys, torch
from calo_ablate.study.forked import ForkedWorker, hold_one_thread, threads_survive_fork
hold_one_thread()
a = torch.randn(512, 512)
(a @ a).sum()  # the parent's own torch work, on its one thread
assert threads_survive_fork()

def entry():
    torch.set_num_threads(2)
    b = torch.ones(512, 512)
    return 0 if float((b @ b).sum()) == 512.0 ** 3 else 1

sys.exit(ForkedWorker(entry, {}).wait())
"""

THREADED_PARENT = """
import sys, torch
from calo_ablate.study.forked import threads_survive_fork
torch.set_num_threads(2)
torch.ones(1 << 20).exp().sum()  # a parallel region: GNU OpenMP's pool now exists
sys.exit(0 if threads_survive_fork(timeout_s=5.0) else 3)
"""


def test_a_child_of_a_one_thread_parent_computes_on_several_threads() -> None:
    assert subprocess.run([sys.executable, "-c", HELD_PARENT], timeout=300, check=False).returncode == 0


def test_the_probe_finds_a_parent_that_ran_torch_on_several_threads() -> None:
    assert subprocess.run([sys.executable, "-c", THREADED_PARENT], timeout=300, check=False).returncode == 3
