"""Throwaway servers started by the tests themselves: PostgreSQL (the OS packages' initdb and pg_ctl,
listening only on a unix socket in a temp dir), an MLflow tracking server on 127.0.0.1 (SQLite
backend, artifacts served by the server) and one as on a cluster (a PostgreSQL backend store and a
shared artifact folder that the clients write to directly). All are ended (and their files removed)
when the test session or module is over. Imported by tests/study/conftest.py."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

START_TIMEOUT_S = 120.0


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _pg(bindir: Path, program: str, *args: str) -> None:
    """Run a PostgreSQL program; as root, as the `postgres` user of the OS packages (the server refuses root)."""
    command = [str(bindir / program), *args]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, text=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """postgresql://postgres@/calo?host=<socket dir> of a fresh server, stopped at the session's end."""
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb): apt-get install postgresql (.ci/run does)")
    root = Path(tempfile.mkdtemp(prefix="calo-pg-"))  # short: a socket path has at most 107 bytes
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    _pg(bindir, "initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
    _pg(bindir, "pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", str(int(START_TIMEOUT_S)),
        "-o", f"-k {sock} -c listen_addresses='' -c fsync=off", "start")
    try:
        _pg(bindir, "createdb", "-h", str(sock), "-U", "postgres", "calo")
        yield f"postgresql://postgres@/calo?host={sock}"
    finally:
        _pg(bindir, "pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    """Return once `url`/health answers 200; fail the test with the log's tail if `proc` exits or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow server not healthy after {START_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")


@contextmanager
def _serve_mlflow(root: Path, store_args: list[str]) -> Iterator[str]:
    """http://127.0.0.1:PORT of an `mlflow server` in its own process group, killed as a group afterwards
    (its uvicorn workers outlive a SIGTERM to the parent alone)."""
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    log = root / "server.log"
    command = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *store_args]
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield url
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=10)
                time.sleep(0.5)  # the group's other processes end after the leader
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An MLflow server with a SQLite backend store, serving the artifacts itself."""
    root = tmp_path_factory.mktemp("mlflow-server")
    with _serve_mlflow(root, ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                              "--artifacts-destination", str(root / "artifacts")]) as url:
        yield url


@dataclass(frozen=True)
class ClusterTracking:
    url: str  # http://127.0.0.1:PORT
    artifacts: Path  # the shared artifact folder


@pytest.fixture(scope="module")
def mlflow_postgres_server(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[ClusterTracking]:
    """An MLflow server as on a cluster: its backend store a PostgreSQL database (a fresh one on the
    session's server), its artifact root a folder that every client writes to directly (--no-serve-artifacts;
    on a cluster a filesystem the nodes share)."""
    root = tmp_path_factory.mktemp("mlflow-pg")
    database = f"mlflow_{root.name.replace('-', '_')}"
    host = parse_qs(urlsplit(postgres_url).query)["host"][0]
    _pg(_postgres_bin(), "createdb", "-h", host, "-U", "postgres", database)
    artifacts = root / "artifacts"
    artifacts.mkdir()
    backend = f"postgresql+psycopg://postgres@/{database}?host={host}"
    with _serve_mlflow(root, ["--backend-store-uri", backend, "--default-artifact-root", artifacts.as_uri(),
                              "--no-serve-artifacts"]) as url:
        yield ClusterTracking(url, artifacts)
