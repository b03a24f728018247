"""Atomic file writes: the one way calo-ablate writes a file that another process may read.

A file is written under a temporary name beside its target, `.<name>.<namespace tag>-<pid>.tmp`, flushed
to disk, and renamed into place only when the write finished: a reader sees the old file or the whole
new one, never half of one, and a write that fails or is interrupted by an exception removes its
temporary file. A write killed outright leaves the temporary file; the name says which writer made it,
so a clean-up (runs/resume.remove_stale_temps) removes it once that writer is gone, and judges a
writer by its pid only on the machine (pid namespace) that wrote it.

    with atomic_write(path) as handle:          # text; atomic_write(path, binary=True) for bytes
        handle.write(text)
    with atomic_path(path) as tmp:              # for writers that open a path themselves (h5py)
        h5py.File(tmp, "w") ...

A download that resumes across calls keeps its partial file under a fixed name instead
(data/download.py's `<name>.part`) and finishes with `move_into_place`.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import IO, Any

__all__ = ["TEMP_PATTERN", "atomic_path", "atomic_write", "move_into_place", "namespace_tag", "pid_namespace", "temp_path",
           "temp_writer"]

TEMP_PATTERN = ".*.tmp"  # what a glob for temporary files of this module (and of tempfile) matches
_WRITER = re.compile(r"(?P<ns>[0-9a-f]{8})-(?P<pid>\d+)")


@cache
def pid_namespace() -> str:
    """'<boot id>/<pid namespace inode>': processes with equal values can see each other's pids
    (two containers with one host name usually cannot)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:  # no procfs: pids are never judged, only beats
        return f"unknown/{socket.gethostname()}/{os.getpid()}"


def namespace_tag() -> str:
    """8 hex digits naming this pid namespace in temporary file names."""
    return hashlib.sha1(pid_namespace().encode()).hexdigest()[:8]


def temp_path(path: Path, pid: int | None = None) -> Path:
    """The temporary file a write of `path` goes through: `.<name>.<namespace tag>-<pid>.tmp`, so that a
    clean-up on another machine sharing the folder never judges this writer by a pid it cannot see."""
    return path.with_name(f".{path.name}.{namespace_tag()}-{os.getpid() if pid is None else pid}.tmp")


def temp_writer(temp: Path) -> tuple[str, int] | None:
    """(namespace tag, pid) of the writer named in a temporary file's name; None for another name."""
    parts = temp.name.rsplit(".", 2)
    writer = _WRITER.fullmatch(parts[-2]) if len(parts) == 3 and parts[-1] == "tmp" else None
    return (writer["ns"], int(writer["pid"])) if writer is not None else None


def move_into_place(tmp: Path, path: Path) -> None:
    """Flush the finished file `tmp` to disk and rename it to `path` (one step for readers)."""
    with tmp.open("rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield the temporary path to write `path` through; when the block ends without an exception the
    file is flushed to disk and renamed to `path`, otherwise it is removed. The folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        move_into_place(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_write(path: str | Path, *, binary: bool = False, encoding: str = "utf-8") -> Iterator[IO[Any]]:
    """Open `path` for writing through a temporary file (see atomic_path): text, or bytes with binary."""
    with atomic_path(path) as tmp, (tmp.open("wb") if binary else tmp.open("w", encoding=encoding)) as handle:
        yield handle
