"""Tests for minirn/data/download.py: the root directory, verified atomic downloads (no network needed)."""
import hashlib
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from minirn.data import load_dataset
from minirn.data.download import (
    REMOTE_FILES,
    ChecksumError,
    DatasetNotFoundError,
    DownloadError,
    RemoteFile,
    data_root,
    dataset_files,
    download_file,
    fetch,
)

PAYLOAD = bytes(range(256)) * 4001 + b"tail"  # ~1 MB, several reads of the fake response
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class FakeResponse:
    """Stands in for urlopen's HTTP response: a context manager that serves ``data`` in small reads.

    With ``error``, reading raises it once ``error_at`` bytes have been served.
    """

    def __init__(self, data, error=None, error_at=0, read_size=65536):
        self.data, self.position, self.read_size = data, 0, read_size
        self.error, self.error_at = error, error_at
        self.headers = {"Content-Length": str(len(data))}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, n=-1):
        if self.error is not None and self.position >= self.error_at:
            raise self.error
        chunk = self.data[self.position:self.position + min(n, self.read_size)]
        self.position += len(chunk)
        return chunk


class FakeOpener:
    """A fake ``urlopen``: maps URLs to responses (or exceptions to raise) and records calls."""

    def __init__(self, responses):
        self.responses, self.calls = responses, []

    def __call__(self, url, timeout=None):
        self.calls.append((url, timeout))
        response = self.responses[url]
        if isinstance(response, BaseException):
            raise response
        return response


def offline(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def files_in(directory):
    return sorted(p.name for p in Path(directory).iterdir())


# ----------------------------------------------------------------------------
# where the data lives
# ----------------------------------------------------------------------------
def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIRN_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("MINIRN_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_root() == tmp_path / ".cache" / "minirn"


# ----------------------------------------------------------------------------
# download_file
# ----------------------------------------------------------------------------
def test_download_success(tmp_path):
    opener = FakeOpener({"https://example.org/f.gz": FakeResponse(PAYLOAD)})
    path = download_file("https://example.org/f.gz", tmp_path / "sub" / "f.gz", PAYLOAD_SHA256,
                         urlopen=opener, progress=False)
    assert path == tmp_path / "sub" / "f.gz"
    assert path.read_bytes() == PAYLOAD
    assert files_in(tmp_path / "sub") == ["f.gz"]  # no temporary file left over
    assert opener.calls[0][1] is not None  # a timeout is always given


def test_download_checksum_mismatch_keeps_nothing(tmp_path):
    opener = FakeOpener({"u": FakeResponse(PAYLOAD)})
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ChecksumError, match=f"checksum mismatch.*expected SHA-256 {wrong}, got {PAYLOAD_SHA256}"):
        download_file("u", tmp_path / "f.gz", wrong, urlopen=opener, progress=False)
    assert files_in(tmp_path) == []


def test_download_offline_is_clear_and_keeps_nothing(tmp_path):
    with pytest.raises(DownloadError, match="could not download https://example.org/f.gz.*offline") as info:
        download_file("https://example.org/f.gz", tmp_path / "f.gz", PAYLOAD_SHA256, urlopen=offline, progress=False)
    assert "name resolution" in str(info.value)
    assert isinstance(info.value.__cause__, urllib.error.URLError)
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("error", [ConnectionResetError("reset by peer"), KeyboardInterrupt()])
def test_download_interrupted_midway_keeps_nothing(tmp_path, error):
    response = FakeResponse(PAYLOAD, error=error, error_at=200_000)
    expected = KeyboardInterrupt if isinstance(error, KeyboardInterrupt) else DownloadError
    with pytest.raises(expected):
        download_file("u", tmp_path / "f.gz", PAYLOAD_SHA256, urlopen=FakeOpener({"u": response}), progress=False)
    assert response.position >= 200_000  # it really failed part-way through
    assert files_in(tmp_path) == []


def test_failed_download_leaves_existing_file_untouched(tmp_path):
    (tmp_path / "f.gz").write_bytes(b"old contents")
    with pytest.raises(ChecksumError):
        download_file("u", tmp_path / "f.gz", "0" * 64, urlopen=FakeOpener({"u": FakeResponse(PAYLOAD)}),
                      progress=False)
    assert (tmp_path / "f.gz").read_bytes() == b"old contents"
    assert files_in(tmp_path) == ["f.gz"]


def test_fetch_falls_back_to_the_next_mirror(tmp_path):
    remote = RemoteFile("f.gz", PAYLOAD_SHA256, ("https://a/f.gz", "https://b/f.gz"))
    opener = FakeOpener({"https://a/f.gz": urllib.error.URLError("down"), "https://b/f.gz": FakeResponse(PAYLOAD)})
    assert fetch(remote, tmp_path, urlopen=opener, progress=False).read_bytes() == PAYLOAD
    assert [url for url, _ in opener.calls] == ["https://a/f.gz", "https://b/f.gz"]


def test_fetch_reports_every_failed_mirror(tmp_path):
    remote = RemoteFile("f.gz", "0" * 64, ("https://a/f.gz", "https://b/f.gz"))
    opener = FakeOpener({"https://a/f.gz": FakeResponse(PAYLOAD), "https://b/f.gz": FakeResponse(PAYLOAD)})
    with pytest.raises(ChecksumError, match=r"(?s)https://a/f\.gz.*https://b/f\.gz"):
        fetch(remote, tmp_path, urlopen=opener, progress=False)
    assert files_in(tmp_path) == []


# ----------------------------------------------------------------------------
# dataset_files and load_dataset(download=True)
# ----------------------------------------------------------------------------
def test_dataset_files_downloads_only_what_is_missing(tmp_path, monkeypatch):
    other = b"second file"
    monkeypatch.setitem(REMOTE_FILES, "toy", (
        RemoteFile("a.bin", PAYLOAD_SHA256, ("https://x/a.bin",)),
        RemoteFile("b.bin", hashlib.sha256(other).hexdigest(), ("https://x/b.bin",)),
    ))
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "a.bin").write_bytes(b"already here")
    with pytest.raises(DatasetNotFoundError, match="b.bin") as info:
        dataset_files("toy", tmp_path)
    assert "a.bin" not in str(info.value)
    opener = FakeOpener({"https://x/b.bin": FakeResponse(other)})
    files = dataset_files("toy", tmp_path, download=True, urlopen=opener, progress=False)
    assert files == {"a.bin": tmp_path / "toy" / "a.bin", "b.bin": tmp_path / "toy" / "b.bin"}
    assert [url for url, _ in opener.calls] == ["https://x/b.bin"]
    assert files["b.bin"].read_bytes() == other


def test_load_dataset_download_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DownloadError, match="every source of train-images-idx3-ubyte.gz failed"):
        load_dataset("mnist", root=tmp_path, download=True)
    assert files_in(tmp_path / "mnist") == []


# ----------------------------------------------------------------------------
# the table of remote files
# ----------------------------------------------------------------------------
def test_remote_file_table_is_well_formed():
    assert set(REMOTE_FILES) == {"mnist", "fashion-mnist", "cifar10"}
    digests = [r.sha256 for remotes in REMOTE_FILES.values() for r in remotes]
    assert len(set(digests)) == len(digests) == 9
    for remotes in REMOTE_FILES.values():
        for remote in remotes:
            assert re.fullmatch(r"[0-9a-f]{64}", remote.sha256)
            assert remote.urls and all(url.endswith("/" + remote.filename) for url in remote.urls)
    assert [r.filename for r in REMOTE_FILES["cifar10"]] == ["cifar-10-binary.tar.gz"]  # never the pickled version
