"""`calo-ablate ui`: the MLflow UI for a study's store, opened on the study's cells, stopped as a whole.

`mlflow ui` starts a web server with worker processes and job runners of its own. They run in a
process group (and session) of their own, so a Ctrl-C, SIGTERM or SIGHUP to this command stops every
one of them: first with SIGTERM, then, after STOP_GRACE_S, with SIGKILL; descendants that left the
group are found through /proc and stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path
from urllib.parse import quote, urlencode

from calo_ablate.commands.options import Subcommands, add_results_dir
from calo_ablate.runs.names import ROLE_CELL, TAG_ROLE
from calo_ablate.runs.tracker import Tracker
from calo_ablate.study.runner import find_store

__all__ = ["CELLS_FILTER", "CELLS_ORDER_BY", "cells_view_url", "descendants", "is_running", "register", "serve",
           "stop_tree", "ui"]

CELLS_FILTER = f"tags.`{TAG_ROLE}` = '{ROLE_CELL}'"
# MLflow's UI nests child runs under their parent unless the view is filtered and sorted by something other
# than the start time: sorted by run name, the cells ("<title> s<seed>") show flat, each row's seeds together
CELLS_ORDER_BY = "tags.`mlflow.runName`"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_GRACE_S = 10.0
POLL_S = 0.2


def cells_view_url(address: str, experiment_id: str | None) -> str:
    """The runs view of the experiment filtered to the study's cells, flat and sorted by name (the parent run
    and search trials hidden)."""
    if experiment_id is None:
        return address
    query = urlencode({"searchFilter": CELLS_FILTER, "orderByKey": CELLS_ORDER_BY, "orderByAsc": "true"},
                      quote_via=quote)
    return f"{address}/#/experiments/{experiment_id}/runs?{query}"


def descendants(pid: int) -> set[int]:
    """The pids of every live process below `pid` (children, grandchildren, ...), read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name (field 2) is in parentheses and may hold spaces: the ppid follows its last ')'
        parent = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _signal_all(process: subprocess.Popen[bytes], pids: set[int], signum: int) -> None:
    for send in (lambda: os.killpg(process.pid, signum), *(lambda p=p: os.kill(p, signum) for p in pids)):
        try:
            send()
        except (ProcessLookupError, PermissionError):
            pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_tree(process: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """Stop `process`, its process group and every descendant: SIGTERM, then SIGKILL after grace_s."""
    pids = descendants(process.pid)
    _signal_all(process, pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        process.poll()
        pids |= descendants(process.pid) if process.returncode is None else set()
        if process.returncode is not None and not _group_alive(process.pid) and not any(is_running(p) for p in pids):
            return
        time.sleep(POLL_S)
    _signal_all(process, pids | descendants(process.pid), signal.SIGKILL)
    process.wait()


def is_running(pid: int) -> bool:
    """True when `pid` is a live process (a zombie waiting for its parent's wait() does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def serve(command: list[str]) -> int:
    """Run `command` in a session of its own until it exits or this process gets SIGINT, SIGTERM or SIGHUP;
    then stop everything it started. Returns its exit code, or 128 + the signal that stopped it."""
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: received.append(signum)) for s in STOP_SIGNALS}
    process = subprocess.Popen(command, start_new_session=True)
    try:
        while process.poll() is None and not received:
            time.sleep(POLL_S)
    finally:
        stop_tree(process)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 128 + received[0] if received else int(process.returncode or 0)


def ui(args: Namespace) -> int:
    """`calo-ablate ui [--study S]`: the MLflow UI on 127.0.0.1 for a study's store (default: the newest)."""
    db = find_store(args.results_dir, args.study)
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow) if mlflow.is_file() else "mlflow", "ui", "--backend-store-uri", f"sqlite:///{db}",
               "--host", "127.0.0.1", "--port", str(args.port)]
    exp_id = Tracker(f"sqlite:///{db}").find_experiment(db.parent.name)
    url = cells_view_url(f"http://127.0.0.1:{args.port}", exp_id)
    print(f"MLflow UI for {db.parent.name}: the study's cells at {url} (Ctrl-C stops it and every process "
          "it started)", flush=True)
    code = serve(command)
    print("MLflow UI stopped", flush=True)
    return code


def register(commands: Subcommands) -> None:
    p = commands.add_parser("ui", help="serve the MLflow UI on 127.0.0.1 for a study's store")
    p.add_argument("--study", default=None, help="study name (default: the newest study)")
    p.add_argument("--port", type=int, default=5000)
    add_results_dir(p)
    p.set_defaults(run=ui)
