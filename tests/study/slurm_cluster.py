"""A throwaway single-node SLURM cluster for the tests, started in a folder of its own and stopped by pid.

The OS packages (`make test-servers` installs them as root): slurm-wlm 22.05 (slurmctld, slurmd, the
client commands), slurmdbd with a MariaDB server (sacct reads job states from slurmdbd only) and munge.
Every daemon runs as root with its config, state, logs, pid file and sockets under the cluster's folder:
MariaDB on a unix socket and a free port on 127.0.0.1 without grant tables, munged on its own socket
with a fresh key, slurmdbd, slurmctld and one slurmd whose node has this machine's CPUs and memory.
The client commands find the cluster through SLURM_CONF (set by the fixture for the test's process and
inherited by every job). Partitions: `low` (the default) and `high`, a higher PriorityTier, so that a
job in `high` preempts one in `low` (PreemptType=preempt/partition_prio, PreemptMode=REQUEUE).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.study.servers import free_port

PROGRAMS = ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "mariadb-install-db", "sinfo", "sbatch",
            "sacct", "sacctmgr", "scancel", "scontrol")
START_TIMEOUT_S = 120.0
CLUSTER_NAME = "calo"
PREEMPT_GRACE_S = 30  # a preempted job gets SIGTERM, then SIGKILL this much later
KILL_WAIT_S = 10  # scancel and the time limit: SIGTERM, then SIGKILL this much later


def missing_programs() -> list[str]:
    return [p for p in PROGRAMS if shutil.which(p) is None and not Path("/usr/sbin", p).is_file()]


def _program(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _node_line(name: str) -> str:
    """The node as `slurmd -C` sees this machine (CPUs, sockets, cores, threads, memory in MB)."""
    out = subprocess.run([_program("slurmd"), "-C"], check=True, capture_output=True, text=True).stdout
    fields = out.splitlines()[0].split()[1:]  # drop NodeName=<host>
    return f"NodeName={name} NodeHostname={socket.gethostname()} NodeAddr=127.0.0.1 {' '.join(fields)} State=UNKNOWN"


@dataclass
class SlurmCluster:
    root: Path
    env: dict[str, str] = field(default_factory=dict)  # SLURM_CONF for the client commands
    pids: dict[str, int] = field(default_factory=dict)
    node: str = "calo-node"

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def command(self, *args: str, check: bool = True) -> str:
        """Run a SLURM client command against this cluster; returns its stdout."""
        result = subprocess.run([_program(args[0]), *args[1:]], env={**os.environ, **self.env}, check=False,
                                capture_output=True, text=True, timeout=60)
        if check and result.returncode:
            msg = f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
            raise RuntimeError(msg)
        return result.stdout

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for log in sorted(self.root.glob("*.log")):
            parts.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(parts)

    # start -------------------------------------------------------------------------------------------
    def _wait_for(self, what: str, ready: Callable[[], object]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.5)
        msg = f"the test SLURM cluster: {what} not ready after {START_TIMEOUT_S:.0f} s\n{self.log_tail()}"
        raise RuntimeError(msg)

    def _pid_from(self, name: str, pid_file: Path) -> None:
        self._wait_for(f"{name} (pid file {pid_file})", lambda: pid_file.is_file() and pid_file.read_text().strip())
        self.pids[name] = int(pid_file.read_text().strip())

    def _start_mariadb(self) -> int:
        data, sock = self.root / "mysql", self.root / "mysql.sock"
        subprocess.run([_program("mariadb-install-db"), "--no-defaults", f"--datadir={data}", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, text=True)
        port = free_port()
        with (self.root / "mariadb.log").open("w") as log:
            proc = subprocess.Popen([_program("mariadbd"), "--no-defaults", f"--datadir={data}", "--user=root",
                                     f"--socket={sock}", f"--port={port}", "--bind-address=127.0.0.1",
                                     f"--pid-file={self.root / 'mariadb.pid'}", "--skip-grant-tables",
                                     "--innodb-buffer-pool-size=32M", "--skip-log-bin"],
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pids["mariadbd"] = proc.pid

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        self._wait_for("mariadbd", listening)
        return port

    def _start_munge(self) -> None:
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        (self.root / "munge").mkdir(mode=0o700)
        self.root.chmod(0o755)  # munged wants its socket's folder searchable by every user
        subprocess.run([_program("munged"), "--force", f"--key-file={key}", f"--socket={self.root / 'munge.sock'}",
                        f"--pid-file={self.root / 'munged.pid'}", f"--log-file={self.root / 'munged.log'}",
                        f"--seed-file={self.root / 'munge' / 'seed'}"], check=True, capture_output=True, text=True)
        self._pid_from("munged", self.root / "munged.pid")

    def _write_configs(self, db_port: int) -> None:
        root, host = self.root, socket.gethostname()
        auth = f"AuthType=auth/munge\nAuthInfo=socket={root / 'munge.sock'}\n"
        dbd_port = free_port()
        dbd = self.root / "slurmdbd.conf"
        dbd.write_text(
            f"{auth}DbdHost={host}\nDbdAddr=127.0.0.1\nDbdPort={dbd_port}\nSlurmUser=root\n"
            f"PidFile={root / 'slurmdbd.pid'}\nLogFile={root / 'slurmdbd.log'}\nDebugLevel=info\n"
            f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\nStoragePort={db_port}\n"
            f"StorageUser=root\nStorageLoc=slurm_acct_db\n")
        dbd.chmod(0o600)  # slurmdbd refuses a config others can read
        (root / "spool").mkdir()
        (root / "state").mkdir()
        self.conf.write_text(f"""\
ClusterName={CLUSTER_NAME}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
{auth}CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root / 'state'}
SlurmdSpoolDir={root / 'spool'}
SlurmctldPidFile={root / 'slurmctld.pid'}
SlurmdPidFile={root / 'slurmd.pid'}
SlurmctldLogFile={root / 'slurmctld.log'}
SlurmdLogFile={root / 'slurmd.log'}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait={KILL_WAIT_S}
MinJobAge=300
JobRequeue=1
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={dbd_port}
AccountingStoragePass={root / "munge.sock"}
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
{_node_line(self.node)}
PartitionName=low Nodes={self.node} Default=YES PriorityTier=1 MaxTime=INFINITE State=UP GraceTime={PREEMPT_GRACE_S}
PartitionName=high Nodes={self.node} PriorityTier=10 PreemptMode=OFF MaxTime=INFINITE State=UP
""")
        self.env = {"SLURM_CONF": str(self.conf)}

    def start(self) -> None:
        db_port = self._start_mariadb()
        self._start_munge()
        self._write_configs(db_port)
        env = {**os.environ, **self.env}
        # slurmdbd has no -f: it reads slurmdbd.conf beside $SLURM_CONF
        subprocess.run([_program("slurmdbd")], env=env, check=True, capture_output=True, text=True)
        self._pid_from("slurmdbd", self.root / "slurmdbd.pid")
        self._wait_for("slurmdbd (sacctmgr)", lambda: self._answers("sacctmgr", "-n", "list", "cluster"))
        self.command("sacctmgr", "-i", "add", "cluster", CLUSTER_NAME, check=False)  # exists: fine
        subprocess.run([_program("slurmctld"), "-f", str(self.conf)], env=env, check=True, capture_output=True,
                       text=True)
        self._pid_from("slurmctld", self.root / "slurmctld.pid")
        subprocess.run([_program("slurmd"), "-f", str(self.conf), "-N", self.node], env=env, check=True,
                       capture_output=True, text=True)
        self._pid_from("slurmd", self.root / "slurmd.pid")
        self._wait_for("the node (sinfo idle)", self.node_idle)

    def _answers(self, *args: str) -> bool:
        return subprocess.run([_program(args[0]), *args[1:]], env={**os.environ, **self.env}, check=False,
                              capture_output=True).returncode == 0

    def node_idle(self) -> bool:
        out = self.command("sinfo", "-h", "-N", "-o", "%t", check=False).split()
        return bool(out) and all(state == "idle" for state in out)

    # stop --------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """End every daemon by its pid (the node's jobs first), SIGKILL after a grace."""
        if "slurmctld" in self.pids:
            self.command("scancel", "--full", "--user", "root", check=False)
        for name in ("slurmd", "slurmctld", "slurmdbd", "munged", "mariadbd"):
            pid = self.pids.pop(name, None)
            if pid is not None:
                _end(pid)


def _end(pid: int, grace_s: float = 15.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)  # our child (mariadbd): reap it
            if finished:
                return
        except ChildProcessError:  # a daemon that forked away: not our child
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A started single-node cluster (sinfo shows its node idle); SLURM_CONF points at it meanwhile."""
    missing = missing_programs()
    if missing:
        pytest.skip(f"no SLURM test cluster: {', '.join(missing)} missing; as root, `make test-servers` installs "
                    "slurm-wlm, slurmdbd, mariadb-server and munge")
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster runs its daemons as root (CI does): not root here")
    root = Path(tempfile.mkdtemp(prefix="calo-slurm-"))  # short: sockets have at most 107 bytes
    cluster = SlurmCluster(root)
    previous = os.environ.get("SLURM_CONF")
    try:
        cluster.start()
        os.environ["SLURM_CONF"] = str(cluster.conf)
        yield cluster
    finally:
        cluster.stop()
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        shutil.rmtree(root, ignore_errors=True)
