"""Downloads from a local HTTP server on 127.0.0.1 (no real network): resume, MD5, atomic placement."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from calo_ablate.cli import main
from calo_ablate.data.calochallenge import sidecar_path
from calo_ablate.data.catalogue import official_files, record_of
from calo_ablate.data.download import RemoteFile, download_dataset, download_file, remote_files
from calo_ablate.errors import ConfigError, DownloadError

PAYLOAD = np.random.default_rng(0).bytes(300_000)


class Server:
    """Serves `files` (URL path -> bytes) with Range support; `corrupt` paths get altered bytes;
    `cut[path] = n` sends only n bytes of the body once, then closes the connection."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.corrupt: set[str] = set()
        self.cut: dict[str, int] = {}
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []   # (path, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                server.requests.append((path, self.headers.get("Range")))
                if path not in server.files:
                    self.send_error(404)
                    return
                body = server.files[path]
                if path in server.corrupt:
                    body = bytes(b ^ 0x5A for b in body[:100]) + body[100:]
                start = 0
                if self.headers.get("Range") and not server.ignore_range:
                    start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                limit = server.cut.pop(path, None)
                self.wfile.write(body[start:] if limit is None else body[start:start + limit])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    thread = threading.Thread(target=s.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def remote(server: Server, name: str = "f.hdf5", data: bytes = PAYLOAD) -> RemoteFile:
    server.files[f"/{name}"] = data
    return RemoteFile(name, f"{server.url}/{name}", md5(data))


def test_normal_download(server: Server, tmp_path: Path) -> None:
    dest = download_file(remote(server), tmp_path / "f.hdf5", progress=False, log=lambda _: None)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "f.hdf5.part").exists()
    assert md5(PAYLOAD) in sidecar_path(dest).read_text()    # the md5 is cached: no re-hash later


def test_corrupted_body_places_nothing(server: Server, tmp_path: Path) -> None:
    r = remote(server)
    server.corrupt.add("/f.hdf5")
    with pytest.raises(DownloadError) as err:
        download_file(r, tmp_path / "f.hdf5", progress=False, log=lambda _: None)
    message = str(err.value)
    assert r.url in message and f"expected {r.md5}" in message and str(tmp_path / "f.hdf5") in message
    assert list(tmp_path.iterdir()) == []


def test_bad_existing_file_is_kept_when_the_new_copy_fails(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "f.hdf5"
    dest.write_bytes(b"an older, different file")
    r = remote(server)
    server.corrupt.add("/f.hdf5")
    with pytest.raises(DownloadError, match="nothing was placed"):
        download_file(r, dest, progress=False, log=lambda _: None)
    assert dest.read_bytes() == b"an older, different file"
    server.corrupt.clear()
    download_file(r, dest, progress=False, log=lambda _: None)    # a good copy replaces it
    assert dest.read_bytes() == PAYLOAD


def test_cut_connection_then_resume(server: Server, tmp_path: Path) -> None:
    r = remote(server)
    server.cut["/f.hdf5"] = 120_000
    with pytest.raises(DownloadError, match="run the same command again to resume") as err:
        download_file(r, tmp_path / "f.hdf5", progress=False, log=lambda _: None)
    assert r.url in str(err.value)
    part = tmp_path / "f.hdf5.part"
    assert part.stat().st_size == 120_000 and not (tmp_path / "f.hdf5").exists()
    logs: list[str] = []
    download_file(r, tmp_path / "f.hdf5", progress=False, log=logs.append)
    assert server.requests[-1] == ("/f.hdf5", "bytes=120000-")
    assert (tmp_path / "f.hdf5").read_bytes() == PAYLOAD and not part.exists()
    assert any("resuming" in line for line in logs)


def test_server_without_range_support_restarts(server: Server, tmp_path: Path) -> None:
    r = remote(server)
    (tmp_path / "f.hdf5.part").write_bytes(PAYLOAD[:1000])
    server.ignore_range = True
    download_file(r, tmp_path / "f.hdf5", progress=False, log=lambda _: None)
    assert (tmp_path / "f.hdf5").read_bytes() == PAYLOAD


def test_complete_part_file_is_verified_without_body(server: Server, tmp_path: Path) -> None:
    r = remote(server)
    (tmp_path / "f.hdf5.part").write_bytes(PAYLOAD)      # all bytes already there: the server says 416
    download_file(r, tmp_path / "f.hdf5", progress=False, log=lambda _: None)
    assert (tmp_path / "f.hdf5").read_bytes() == PAYLOAD


def test_verified_file_is_not_downloaded_again(server: Server, tmp_path: Path) -> None:
    r = remote(server)
    (tmp_path / "f.hdf5").write_bytes(PAYLOAD)
    logs: list[str] = []
    download_file(r, tmp_path / "f.hdf5", progress=False, log=logs.append)
    assert server.requests == [] and "already there" in logs[0]


def test_missing_file_names_the_url(server: Server, tmp_path: Path) -> None:
    r = RemoteFile("gone.hdf5", f"{server.url}/gone.hdf5", "0" * 32)
    with pytest.raises(DownloadError, match=r"gone\.hdf5: HTTP 404"):
        download_file(r, tmp_path / "gone.hdf5", progress=False, log=lambda _: None)


def zenodo_record(server: Server, record: str, files: dict[str, bytes]) -> None:
    """Serve a Zenodo-style record JSON at /api/records/<id> and its files' content links."""
    entries = []
    for name, data in files.items():
        link = f"/api/records/{record}/files/{name}/content"
        server.files[link] = data
        entries.append({"key": name, "size": len(data), "checksum": f"md5:{md5(data)}",
                        "links": {"self": f"{server.url}{link}"}})
    server.files[f"/api/records/{record}"] = json.dumps({"id": int(record), "files": entries}).encode()


def test_dataset_from_a_zenodo_record(server: Server, tmp_path: Path) -> None:
    zenodo_record(server, "6366270", {"dataset_2_1.hdf5": PAYLOAD, "dataset_2_2.hdf5": PAYLOAD[::-1]})
    paths = download_dataset("2", tmp_path, role="train", root=server.url, progress=False, log=lambda _: None)
    assert paths == [tmp_path / "dataset_2_1.hdf5"] and paths[0].read_bytes() == PAYLOAD
    assert not (tmp_path / "dataset_2_2.hdf5").exists()


def test_record_md5_must_match_the_published_one(server: Server, tmp_path: Path) -> None:
    zenodo_record(server, "8099322", {"dataset_1_photons_1.hdf5": PAYLOAD, "dataset_1_photons_2.hdf5": PAYLOAD})
    with pytest.raises(DownloadError, match="published md5 is 005d2adeda7db034b388112661265656"):
        remote_files("1-photons", "train", server.url)


def test_plain_mirror_with_md5sums(server: Server, tmp_path: Path) -> None:
    server.files["/dataset_2_2.hdf5"] = PAYLOAD
    server.files["/md5sums.txt"] = f"{md5(PAYLOAD)}  dataset_2_2.hdf5\n".encode()
    paths = download_dataset("2", tmp_path, role="eval", root=server.url, progress=False, log=lambda _: None)
    assert paths[0].read_bytes() == PAYLOAD


def test_plain_mirror_without_checksums_is_refused(server: Server) -> None:
    server.files["/dataset_2_1.hdf5"] = PAYLOAD
    with pytest.raises(DownloadError, match="no MD5 known for dataset_2_1.hdf5"):
        remote_files("2", "train", server.url)


def test_cli_download_uses_the_environment_base_url(server: Server, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    zenodo_record(server, "6366270", {"dataset_2_1.hdf5": PAYLOAD, "dataset_2_2.hdf5": PAYLOAD[::-1]})
    monkeypatch.setenv("CALO_ABLATE_BASE_URL", server.url)
    assert main(["data", "download", "--dataset", "2", "--data-dir", str(tmp_path)]) == 0
    assert (tmp_path / "dataset_2_2.hdf5").read_bytes() == PAYLOAD[::-1]
    assert "2 file(s) ready" in capsys.readouterr().out
    server.corrupt.add("/api/records/6366270/files/dataset_2_1.hdf5/content")
    (tmp_path / "dataset_2_1.hdf5").unlink()
    assert main(["data", "download", "--dataset", "2", "--role", "train", "--data-dir", str(tmp_path),
                 "--base-url", server.url]) == 2
    err = capsys.readouterr().err
    assert "calo-ablate: error:" in err and "dataset_2_1.hdf5" in err and "Traceback" not in err


def test_catalogue_names_roles_and_records() -> None:
    assert [f.name for f in official_files("3", "train")] == ["dataset_3_1.hdf5", "dataset_3_2.hdf5"]
    assert [f.name for f in official_files("3", "eval")] == ["dataset_3_3.hdf5", "dataset_3_4.hdf5"]
    photons = official_files("1")
    assert [(f.name, f.role, f.events) for f in photons] == [
        ("dataset_1_photons_1.hdf5", "train", 121_000), ("dataset_1_photons_2.hdf5", "eval", 121_000)]
    assert photons[0].md5 == "005d2adeda7db034b388112661265656"
    assert [f.events for f in official_files("1-pions")] == [120_230, 120_230]
    assert {d: record_of(d).doi for d in ("1-pions", "2", "3")} == {
        "1-pions": "10.5281/zenodo.8099322", "2": "10.5281/zenodo.6366270", "3": "10.5281/zenodo.6366323"}
    with pytest.raises(ConfigError, match="expected train, eval or all"):
        official_files("2", "test")
