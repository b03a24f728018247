"""CaloChallenge HDF5 files: read (streamed, validated), write (official layout), checksum.

Official layout: `incident_energies` (N, 1) and `showers` (N, n_voxels), both in MeV, gzip; float32
or float64 on read, float32 on write. Validation streams through a file in chunks of bounded size,
collects every problem it finds (one message each, naming the file) and raises DataError once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Self

import h5py
import numpy as np

from calo_ablate.atomic import atomic_path, atomic_write
from calo_ablate.data.catalogue import energy_range_mev
from calo_ablate.data.validation import (
    ENERGIES,
    SHOWERS,
    ContentCheck,
    FileSummary,
    Inspection,
    layout_problems,
)
from calo_ablate.errors import DataError
from calo_ablate.geometry import Geometry, load_geometry

__all__ = [
    "ENERGIES",
    "READ_BUDGET_BYTES",
    "SHOWERS",
    "FileSummary",
    "Inspection",
    "ShowerWriter",
    "count_events",
    "file_md5",
    "inspect_file",
    "iter_showers",
    "read_showers",
    "remember_md5",
    "sidecar_path",
    "validate_file",
    "write_showers",
]

READ_BUDGET_BYTES = 32 * 2**20     # at most this many bytes of float32 showers per chunk in memory
_RULES_VERSION = 1                 # bump when validation rules change: cached verdicts are then redone


class ShowerWriter:
    """Write a file in the official layout chunk by chunk: `incident_energies` (N, 1) and
    `showers` (N, n_voxels), MeV, float32, gzip. The file appears under its name only when the
    `with` block ends without an error (it is written beside it first), so an interrupted write
    never leaves a half file that looks complete.

        with ShowerWriter(path, n_voxels) as writer:
            writer.append(energies_mev, showers_mev)   # (n,) or (n, 1), (n, n_voxels)
    """

    def __init__(self, path: str | Path, n_voxels: int, chunk_events: int = 1000) -> None:
        self.path = Path(path)
        self.n_voxels = n_voxels
        self.chunk_events = chunk_events

    def __enter__(self) -> Self:
        self._stack = ExitStack()
        self._file = h5py.File(self._stack.enter_context(atomic_path(self.path)), "w")
        rows = max(1, min(self.chunk_events, 2**18 // self.n_voxels))  # about 1 MiB per HDF5 chunk
        kw = {"compression": "gzip", "dtype": "float32"}
        self._energies = self._file.create_dataset(
            ENERGIES, shape=(0, 1), maxshape=(None, 1), chunks=(self.chunk_events, 1), **kw)
        self._showers = self._file.create_dataset(
            SHOWERS, shape=(0, self.n_voxels), maxshape=(None, self.n_voxels),
            chunks=(rows, self.n_voxels), **kw)
        return self

    def append(self, energies_mev: np.ndarray, showers_mev: np.ndarray) -> None:
        """Add n events: energies (n,) or (n, 1) MeV, showers (n, n_voxels) MeV."""
        energies = np.asarray(energies_mev, dtype=np.float32).reshape(-1, 1)
        showers = np.asarray(showers_mev, dtype=np.float32)
        if showers.ndim != 2 or showers.shape != (len(energies), self.n_voxels):
            msg = (f"{self.path}: cannot append showers of shape {showers.shape} with {len(energies)} "
                   f"energies: expected ({len(energies)}, {self.n_voxels})")
            raise DataError(msg)
        n, start = len(energies), self._energies.shape[0]
        self._energies.resize(start + n, axis=0)
        self._showers.resize(start + n, axis=0)
        self._energies[start:] = energies
        self._showers[start:] = showers

    def __exit__(self, exc_type, exc, traceback) -> None:
        self._file.close()
        self._stack.__exit__(exc_type, exc, traceback)  # renamed into place, or removed after an error


def write_showers(path: str | Path, energies_mev: np.ndarray, showers_mev: np.ndarray) -> None:
    """Write a whole sample in the official layout: energies (N,) MeV, showers (N, n_voxels) MeV."""
    with ShowerWriter(path, showers_mev.shape[1]) as writer:
        writer.append(energies_mev, showers_mev)


# ---- checksum and the sidecar that caches it --------------------------------------------------

def sidecar_path(path: str | Path) -> Path:
    """`<file>.meta.json`: md5 and validation verdicts, valid while the file's size and mtime hold."""
    path = Path(path)
    return path.with_name(path.name + ".meta.json")


def _stamp(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _sidecar_read(path: Path) -> dict:
    try:
        meta = json.loads(sidecar_path(path).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) and meta.get("stamp") == _stamp(path) else {}


def _sidecar_update(path: Path, **values) -> None:
    meta = _sidecar_read(path) | values | {"file": path.name, "stamp": _stamp(path)}
    try:
        with atomic_write(sidecar_path(path)) as handle:  # workers may read it meanwhile
            handle.write(json.dumps(meta, indent=1) + "\n")
    except OSError:
        pass  # a read-only data folder: the cache is skipped, nothing else changes


def remember_md5(path: str | Path, md5: str) -> None:
    """Store an md5 already computed (e.g. while verifying a download) in the file's sidecar."""
    _sidecar_update(Path(path), md5=md5)


def file_md5(path: str | Path, *, use_cache: bool = True) -> str:
    """MD5 (hex) of a file, read in 1 MiB blocks; cached in the sidecar while size and mtime match."""
    path = Path(path)
    if use_cache and (cached := _sidecar_read(path).get("md5")):
        return cached
    digest = hashlib.md5()
    with path.open("rb") as handle:
        while block := handle.read(2**20):
            digest.update(block)
    md5 = digest.hexdigest()
    if use_cache:
        _sidecar_update(path, md5=md5)
    return md5


# ---- streamed reading, checked chunk by chunk ------------------------------------------------

def _open(path: Path) -> h5py.File:
    if not path.is_file():
        msg = f"{path}: no such file"
        raise DataError(msg)
    try:
        return h5py.File(path, "r")
    except OSError as err:
        msg = f"{path}: not a readable HDF5 file (truncated, or not HDF5 at all): {err}"
        raise DataError(msg) from err


def _chunk_events(n_voxels: int, cap: int | None = None, budget_bytes: int = READ_BUDGET_BYTES) -> int:
    rows = max(1, budget_bytes // (4 * n_voxels))
    return min(rows, cap) if cap else rows


def _stream(f: h5py.File, path: Path, content: ContentCheck, stop: int, chunk: int,
            ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Chunks (start, energies (n,), showers (n, V)) as stored, each checked by `content`."""
    for start in range(0, stop, chunk):
        end = min(start + chunk, stop)
        try:
            energies = f[ENERGIES][start:end].reshape(-1)
            showers = f[SHOWERS][start:end]
        except (OSError, ValueError) as err:
            msg = f"{path}: reading events {start}..{end} failed, the file is truncated or corrupt ({err})"
            raise DataError(msg) from err
        content.add(start, energies, showers)
        yield start, energies, showers


def _raise(problems: list[str]) -> None:
    if problems:
        raise DataError("\n".join(problems))


def _checked_layout(f: h5py.File, path: Path, geometry: Geometry) -> None:
    _raise(layout_problems(f, path, geometry)[0])


def iter_showers(path: str | Path, dataset: str, chunk_events: int = 10000,
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream a file: chunks of (energies (n,) MeV, showers (n, n_voxels) MeV), float32, at most
    `chunk_events` events and about 32 MiB of showers each. Every chunk is validated; DataError
    at the first chunk with a problem."""
    path, geometry = Path(path), load_geometry(dataset)
    with _open(path) as f:
        _checked_layout(f, path, geometry)
        content = ContentCheck(path, geometry, energy_range_mev(dataset))
        chunk = _chunk_events(geometry.n_voxels, chunk_events)
        for _, energies, showers in _stream(f, path, content, f[SHOWERS].shape[0], chunk):
            _raise(content.problems())
            yield energies.astype(np.float32, copy=False), showers.astype(np.float32, copy=False)


def read_showers(path: str | Path, dataset: str, *, max_events: int | None = None,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate a file: (incident energies (N,) MeV, showers (N, n_voxels) MeV), float32.
    `max_events` reads (and checks) only the first events. DataError lists every problem found."""
    path, geometry = Path(path), load_geometry(dataset)
    if max_events is not None and max_events < 1:
        msg = f"{path}: max_events must be at least 1 or None (all events), got {max_events}"
        raise DataError(msg)
    with _open(path) as f:
        _checked_layout(f, path, geometry)
        n = f[SHOWERS].shape[0] if max_events is None else min(max_events, f[SHOWERS].shape[0])
        energies_out = np.empty(n, np.float32)                       # (N,)
        showers_out = np.empty((n, geometry.n_voxels), np.float32)    # (N, V)
        content = ContentCheck(path, geometry, energy_range_mev(dataset))
        for start, energies, showers in _stream(f, path, content, n, _chunk_events(geometry.n_voxels)):
            energies_out[start:start + len(energies)] = energies
            showers_out[start:start + len(energies)] = showers
    _raise(content.problems())
    return energies_out, showers_out


def count_events(path: str | Path) -> int:
    """Number of showers in a file (its `showers` dataset's first dimension), without reading them."""
    path = Path(path)
    with _open(path) as f:
        if not isinstance(f.get(SHOWERS), h5py.Dataset):
            msg = f"{path}: missing dataset '{SHOWERS}'"
            raise DataError(msg)
        return int(f[SHOWERS].shape[0])


# ---- whole-file inspection ------------------------------------------------------------------

def inspect_file(path: str | Path, dataset: str, *, read_budget_bytes: int = READ_BUDGET_BYTES) -> Inspection:
    """Check a whole file against the official layout and the dataset's geometry and energy range,
    streaming in chunks of at most read_budget_bytes of float32 showers; never raises DataError, returns every
    problem found."""
    path, geometry = Path(path), load_geometry(dataset)
    problems: list[str] = []
    try:
        with _open(path) as f:
            problems, streamable = layout_problems(f, path, geometry)
            if not streamable:
                return Inspection(path, geometry.name, problems, None)
            n_events, n_voxels = min(f[ENERGIES].shape[0], f[SHOWERS].shape[0]), f[SHOWERS].shape[1]
            content = ContentCheck(path, geometry, energy_range_mev(dataset), n_voxels == geometry.n_voxels)
            for _ in _stream(f, path, content, n_events, _chunk_events(n_voxels, budget_bytes=read_budget_bytes)):
                pass
            dtype = str(f[SHOWERS].dtype)
    except DataError as err:
        return Inspection(path, geometry.name, [*problems, str(err)], None)
    problems += content.problems()
    summary = None if problems else content.summary(dtype, file_md5(path))
    return Inspection(path, geometry.name, problems, summary)


def validate_file(path: str | Path, dataset: str, *, use_cache: bool = True) -> str:
    """Check a whole file (streamed); DataError listing every problem. Returns its md5. A verdict is
    cached in the sidecar, so an unchanged file is checked once per dataset."""
    path, name = Path(path), load_geometry(dataset).name
    if use_cache and path.is_file() and _sidecar_read(path).get("valid_as", {}).get(name) == _RULES_VERSION:
        return file_md5(path)
    inspection = inspect_file(path, dataset)
    _raise(inspection.problems)
    if use_cache:
        _sidecar_update(path, valid_as=_sidecar_read(path).get("valid_as", {}) | {name: _RULES_VERSION})
    return inspection.valid_summary().md5
