"""Wall time of every `ablate` call on a study, killed calls included.

Each call keeps its own file results/<study>/invocations/<n>-<pid>.json (n: the call's number, also
its step in the parent run's `invocation_seconds` history) and rewrites it every TICK_S seconds with
its elapsed time on its own monotonic clock. A call that ends logs its time itself; a call killed
with SIGKILL cannot, so the next call logs the last time its file holds (short by at most TICK_S).
The step number makes the logging idempotent: a step already in the history is never logged again.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from calo_ablate.atomic import atomic_write, pid_namespace
from calo_ablate.runs.names import INVOCATION_SECONDS
from calo_ablate.runs.tracker import Tracker
from calo_ablate.study.queue import pid_alive

FOLDER = "invocations"
TICK_S = 2.0
METRIC = INVOCATION_SECONDS


class InvocationClock:
    """The running call's clock; `record` logs it and every killed call's time to the parent run."""

    def __init__(self, study_dir: Path) -> None:
        self.folder = Path(study_dir) / FOLDER
        self.folder.mkdir(parents=True, exist_ok=True)
        self.step = len(list(self.folder.glob("*.json")))
        self.path = self.folder / f"{self.step}-{os.getpid()}.json"
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._tick()
        self._thread = threading.Thread(target=self._run, daemon=True, name="calo-ablate-clock")
        self._thread.start()

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def _tick(self) -> None:
        with atomic_write(self.path) as handle:
            handle.write(json.dumps({"step": self.step, "pid": os.getpid(), "ns": pid_namespace(),
                                     "seconds": self.seconds()}))

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            self._tick()

    def record(self, tracker: Tracker, parent_run_id: str) -> float:
        """Stop the clock; log this call's time and that of every killed call not yet logged; returns
        this call's seconds."""
        self._stop.set()
        self._thread.join()
        self._tick()
        c = tracker.client
        logged = {m.step for m in c.get_metric_history(parent_run_id, METRIC)}
        for path in sorted(self.folder.glob("*.json")):
            try:
                call = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # written by the rename only: cannot be half a file, but may vanish
            if call["step"] in logged or path == self.path:
                continue
            if call["ns"] == pid_namespace() and not pid_alive(int(call["pid"])):
                c.log_metric(parent_run_id, METRIC, float(call["seconds"]), step=int(call["step"]))
        seconds = self.seconds()
        if self.step not in logged:
            c.log_metric(parent_run_id, METRIC, seconds, step=self.step)
        return seconds
