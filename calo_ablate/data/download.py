"""Download the official CaloChallenge files (standard library only, plus tqdm for the bar).

Each file is fetched into `<name>.part` beside its destination, resumed with an HTTP Range request
when a `.part` is already there, checked against its MD5 and only then renamed into place. A file
that fails the check is removed and never replaces anything; an interrupted one stays as `.part`.

Where the files come from: `<base>/api/records/<id>` (a Zenodo record: file names, MD5s, links),
with `<base>` = https://zenodo.org unless `--base-url` or CALO_ABLATE_BASE_URL names a mirror. A
mirror without that record may serve the files as `<base>/<name>`; MD5s then come from the
catalogue or the mirror's `<base>/md5sums.txt` (the output of `md5sum *.hdf5`).
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from calo_ablate.atomic import move_into_place
from calo_ablate.data.calochallenge import file_md5, remember_md5
from calo_ablate.data.catalogue import Role, official_files, record_of
from calo_ablate.errors import DownloadError

__all__ = [
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "RemoteFile",
    "base_url",
    "download_dataset",
    "download_file",
    "remote_files",
]

DEFAULT_BASE_URL = "https://zenodo.org"
BASE_URL_ENV = "CALO_ABLATE_BASE_URL"
_BLOCK = 2**20
_USER_AGENT = "calo-ablate/0.1 (CaloChallenge downloader)"


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: its official name, URL, expected MD5 and size in bytes (None if unknown)."""

    name: str
    url: str
    md5: str
    size: int | None = None


def base_url(argument: str | None = None) -> str:
    """The download root: the argument, else $CALO_ABLATE_BASE_URL, else https://zenodo.org."""
    return (argument or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


def _get(url: str, timeout: float, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, **(headers or {})})
    return urllib.request.urlopen(request, timeout=timeout)


def _get_text(url: str, timeout: float) -> str | None:
    """The body of a small document, or None when the server answers 404."""
    try:
        with _get(url, timeout) as response:
            return response.read().decode("utf-8")
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        msg = f"{url}: HTTP {err.code} {err.reason}"
        raise DownloadError(msg) from err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        msg = f"{url}: cannot connect ({getattr(err, 'reason', err)}); check the network or --base-url"
        raise DownloadError(msg) from err


def _record_listing(root: str, record_id: str, timeout: float) -> dict[str, RemoteFile] | None:
    """Files of a Zenodo record as served at `<root>/api/records/<id>`; None if there is no record."""
    url = f"{root}/api/records/{record_id}"
    text = _get_text(url, timeout)
    if text is None:
        return None
    try:
        files = json.loads(text).get("files", [])
    except (ValueError, AttributeError):
        return None  # a mirror that answers with something other than a record
    if isinstance(files, dict):  # InvenioRDM layout: {"entries": {key: {...}}}
        files = list(files.get("entries", {}).values())
    listing = {}
    for entry in files:
        key, checksum, links = entry.get("key"), entry.get("checksum", ""), entry.get("links", {})
        if not key or not checksum.startswith("md5:"):
            continue
        link = links.get("content") or links.get("download") or links.get("self", "")
        if not link.endswith("/content"):
            link = f"{root}/records/{record_id}/files/{key}?download=1"
        listing[key] = RemoteFile(key, link, checksum.removeprefix("md5:"), entry.get("size"))
    return listing


def _mirror_md5s(root: str, timeout: float) -> dict[str, str]:
    """`<root>/md5sums.txt` as {file name: md5}, empty if the mirror serves none."""
    text = _get_text(f"{root}/md5sums.txt", timeout) or ""
    pairs = (line.split() for line in text.splitlines())
    return {pair[1].lstrip("*"): pair[0].lower() for pair in pairs if len(pair) == 2}


def remote_files(dataset: str, role: Role | str = "all", root: str | None = None, *,
                 timeout: float = 60.0) -> list[RemoteFile]:
    """Where to fetch a dataset's files and the MD5 each must have."""
    root = base_url(root)
    record = record_of(dataset)
    wanted = official_files(dataset, role)
    listing = _record_listing(root, record.zenodo_record, timeout)
    result = []
    if listing is not None:
        for file in wanted:
            if file.name not in listing:
                msg = (f"{root}/api/records/{record.zenodo_record}: the record does not list {file.name} "
                       f"(it lists: {', '.join(sorted(listing)) or 'no files'})")
                raise DownloadError(msg)
            remote = listing[file.name]
            if file.md5 and remote.md5 != file.md5:
                msg = (f"{root}/api/records/{record.zenodo_record}: {file.name} is listed with md5 "
                       f"{remote.md5}, but the published md5 is {file.md5}: refusing to download it")
                raise DownloadError(msg)
            result.append(remote)
        return result
    mirror = {} if all(f.md5 for f in wanted) else _mirror_md5s(root, timeout)
    for file in wanted:
        md5 = file.md5 or mirror.get(file.name)
        if not md5:
            msg = (f"{root}: no MD5 known for {file.name}: the mirror serves neither a Zenodo record at "
                   f"{root}/api/records/{record.zenodo_record} nor a {root}/md5sums.txt listing it")
            raise DownloadError(msg)
        result.append(RemoteFile(file.name, f"{root}/{file.name}", md5))
    return result


def _fetch(remote: RemoteFile, part: Path, progress: bool, timeout: float, log: Callable[[str], None]) -> None:
    """Append the missing bytes of `remote` to `part` (resuming from its size)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = _get(remote.url, timeout, headers)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            return  # nothing left to fetch: the .part is complete (or too long, which the MD5 tells)
        msg = f"{remote.url}: HTTP {err.code} {err.reason} (downloading {remote.name})"
        raise DownloadError(msg) from err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        msg = f"{remote.url}: cannot connect ({getattr(err, 'reason', err)}) while downloading {remote.name}"
        raise DownloadError(msg) from err
    with response:
        if offset and response.status == 206:
            log(f"resuming {remote.name} at byte {offset} from {part}")
        elif offset:
            log(f"{remote.url} did not honour the resume request: downloading {remote.name} from the start")
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else remote.size
        received = offset
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=remote.name, disable=not (progress and sys.stderr.isatty()))
        with part.open("ab" if offset else "wb") as out, bar:
            while True:
                try:
                    block = response.read(_BLOCK)
                except (OSError, http.client.HTTPException) as err:
                    msg = (f"{remote.url}: the connection broke after {received} of {total or '?'} bytes "
                           f"({err!r}); the partial file {part} is kept: run the same command again to resume")
                    raise DownloadError(msg) from err
                if not block:
                    break
                out.write(block)
                received += len(block)
                bar.update(len(block))
    if total is not None and received < total:
        msg = (f"{remote.url}: the connection closed after {received} of {total} bytes; the partial file "
               f"{part} is kept: run the same command again to resume")
        raise DownloadError(msg)


def download_file(remote: RemoteFile, dest: str | Path, *, progress: bool = True, timeout: float = 60.0,
                  log: Callable[[str], None] = print) -> Path:
    """Fetch one file to `dest`, verified by MD5; an existing file with the right MD5 is kept as is."""
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    if dest.exists():
        existing = file_md5(dest)
        if existing == remote.md5:
            log(f"{dest}: already there, md5 {existing} verified")
            return dest
        log(f"{dest}: md5 is {existing}, expected {remote.md5}: downloading it again "
            "(the file is replaced only by a copy that verifies)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if remote.size is not None and part.exists() and part.stat().st_size > remote.size:
        part.unlink()  # longer than the published file: cannot be a prefix of it
    if not (remote.size is not None and part.exists() and part.stat().st_size == remote.size):
        _fetch(remote, part, progress, timeout, log)
    got = file_md5(part, use_cache=False)
    if got != remote.md5:
        part.unlink()
        msg = (f"{remote.url}: the downloaded {remote.name} has md5 {got}, expected {remote.md5}; it was "
               f"deleted and nothing was placed at {dest}: run the command again to retry from the start")
        raise DownloadError(msg)
    move_into_place(part, dest)
    remember_md5(dest, got)
    log(f"{dest}: downloaded, md5 {got} verified")
    return dest


def download_dataset(dataset: str, data_dir: str | Path = "data", *, role: Role | str = "all",
                     root: str | None = None, progress: bool = True, timeout: float = 60.0,
                     log: Callable[[str], None] = print) -> list[Path]:
    """Fetch a dataset's official files (one role or all) into `data_dir`; returns their paths."""
    remotes = remote_files(dataset, role, root, timeout=timeout)
    record = record_of(dataset)
    log(f"dataset {record.dataset}: {len(remotes)} file(s) from {base_url(root)} "
        f"(Zenodo record {record.zenodo_record}, doi:{record.doi})")
    return [download_file(r, Path(data_dir) / r.name, progress=progress, timeout=timeout, log=log)
            for r in remotes]
