"""Worker processes forked from `ablate` itself: no interpreter start and no imports to wait for.

A forked child starts as a copy of its parent: every module imported already (torch, Lightning, MLflow:
seconds of start-up per worker otherwise), but also with whatever the parent holds. Two things do not
survive a fork, and the rules for them live here:

- GNU OpenMP's thread pool (torch's CPU threads): the child of a parent that ran torch on more than one
  thread hangs in its first operation on more than one thread. The parent of forked workers keeps torch
  to one thread (`hold_one_thread`) until its last fork; work that needs more threads before that (the
  estimate's rate measurement) runs in a process of its own. A parent that ran torch on several threads
  before (a Python session or a test calling the command in-process) is found by a probe
  (`threads_survive_fork`), and its workers then run on one thread each.
- pooled database connections (MLflow's SQLAlchemy store, Optuna's RDB storage): a connection used by a
  parent and its child at once corrupts both sessions. Every pool notes the process that opened each
  connection and a child opens its own instead of using an inherited one (the pool events that
  SQLAlchemy's documentation gives for os.fork, "Using Connection Pools with Multiprocessing").
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import torch
from sqlalchemy import event, exc
from sqlalchemy.pool import Pool

from calo_ablate.errors import EXIT_ERROR, EXIT_INTERRUPTED, CaloAblateError, error_line


@event.listens_for(Pool, "connect")
def _note_process(dbapi_connection: Any, record: Any) -> None:
    record.info["pid"] = os.getpid()


@event.listens_for(Pool, "checkout")
def _refuse_inherited(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    pid = os.getpid()
    if record.info.get("pid", pid) != pid:
        record.dbapi_connection = proxy.dbapi_connection = None  # the parent's to close, not ours
        msg = f"connection opened by process {record.info['pid']}, checked out in its forked child {pid}"
        raise exc.DisconnectionError(msg)


def hold_one_thread() -> None:
    """Keep torch in this process to one thread (before any torch work, in a process that forks workers;
    after its last fork it sets its threads again: the report's classifiers use every core)."""
    torch.set_num_threads(1)


PROBE_TIMEOUT_S = 10.0  # a clean child computes in milliseconds; one that inherited a pool never does


def threads_survive_fork(timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a child forked now can run torch on two threads: False when this process ran torch's
    parallel code before (the child hangs and is killed after `timeout_s` seconds)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        torch.set_num_threads(2)
        torch.ones(1 << 20).exp().sum()  # large enough for a parallel region
        os._exit(0)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return False


class ForkedWorker:
    """A child process running `entry` (its return value is the exit code), seen through the subset of
    subprocess.Popen that the runner uses: pid, returncode, poll, wait, terminate.

    In the child, `environ` is added to os.environ first; a CaloAblateError becomes its message on stderr
    and EXIT_ERROR, a Ctrl-C EXIT_INTERRUPTED (as for the command line), any other exception its traceback
    and exit code 1. The child never returns into the parent's code: it ends with os._exit."""

    def __init__(self, entry: Callable[[], int], environ: Mapping[str, str]) -> None:
        sys.stdout.flush()  # else the child would print the parent's buffered lines again
        sys.stderr.flush()
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:
            os._exit(_child(entry, environ))

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def terminate(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGTERM)


def _child(entry: Callable[[], int], environ: Mapping[str, str]) -> int:
    try:
        os.environ.update(environ)
        return int(entry())
    except CaloAblateError as err:
        print(error_line(err), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except SystemExit as end:
        return end.code if isinstance(end.code, int) else 1
    except BaseException:  # noqa: BLE001 (whatever happens, the child must not return into its parent's code)
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
