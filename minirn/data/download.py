"""Where dataset files live, and how they are fetched safely.

Files are looked up under a *root* directory: the ``root`` argument, else the
environment variable ``MINIRN_DATA``, else ``~/.cache/minirn``; each dataset
has its own folder (``<root>/mnist/train-images-idx3-ubyte.gz``).

Nothing is downloaded unless asked (``download=True``).  A download is

1. streamed (with a tqdm progress bar) into a temporary file *in the target
   directory*, hashing the bytes as they arrive;
2. checked against the SHA-256 pinned in :data:`REMOTE_FILES` below;
3. moved into place with ``os.replace`` (atomic on one file system).

Any failure (offline, HTTP error, checksum mismatch, interrupt) deletes the
temporary file, so a half-written or tampered file never sits where the
loaders look.  The files are only ever *parsed* (IDX headers, raw CIFAR
bytes), never unpickled.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

ENV_VAR = "MINIRN_DATA"
DEFAULT_ROOT = Path("~/.cache/minirn")
CHUNK_BYTES = 1 << 20


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not on disk and ``download=True`` was not given."""


class DownloadError(OSError):
    """A file could not be downloaded (no network, HTTP error, ...)."""


class ChecksumError(DownloadError):
    """Downloaded bytes differ from the pinned SHA-256: the file was not kept."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name on disk, pinned SHA-256, and URLs to try in order."""

    filename: str
    sha256: str
    urls: tuple[str, ...]


def _mirrors(filename: str, *bases: str) -> tuple[str, ...]:
    return tuple(base + filename for base in bases)


# The official homes, and well-known mirrors of byte-identical files (the
# checksum makes a mirror as trustworthy as the original).  SHA-256 values are
# those published with TensorFlow Datasets' checksum lists and other
# independent projects; each was cross-checked against at least two sources.
_MNIST = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # PyTorch's mirror
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow's mirror
    "https://yann.lecun.com/exdb/mnist/",  # the original home (often refuses scripts)
)
_FASHION = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # official (HTTP only)
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
_CIFAR = ("https://www.cs.toronto.edu/~kriz/",)  # official

#: The table of downloadable files: dataset name -> (file name, SHA-256, URLs).
REMOTE_FILES: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": (
        RemoteFile("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                   _mirrors("train-images-idx3-ubyte.gz", *_MNIST)),
        RemoteFile("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                   _mirrors("train-labels-idx1-ubyte.gz", *_MNIST)),
        RemoteFile("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                   _mirrors("t10k-images-idx3-ubyte.gz", *_MNIST)),
        RemoteFile("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                   _mirrors("t10k-labels-idx1-ubyte.gz", *_MNIST)),
    ),
    "fashion-mnist": (
        RemoteFile("train-images-idx3-ubyte.gz", "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
                   _mirrors("train-images-idx3-ubyte.gz", *_FASHION)),
        RemoteFile("train-labels-idx1-ubyte.gz", "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
                   _mirrors("train-labels-idx1-ubyte.gz", *_FASHION)),
        RemoteFile("t10k-images-idx3-ubyte.gz", "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
                   _mirrors("t10k-images-idx3-ubyte.gz", *_FASHION)),
        RemoteFile("t10k-labels-idx1-ubyte.gz", "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
                   _mirrors("t10k-labels-idx1-ubyte.gz", *_FASHION)),
    ),
    # The *binary* version (cifar-10-batches-bin/*.bin), never the pickled Python one.
    "cifar10": (
        RemoteFile("cifar-10-binary.tar.gz", "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                   _mirrors("cifar-10-binary.tar.gz", *_CIFAR)),
    ),
}


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data directory: ``root``, else ``$MINIRN_DATA``, else ``~/.cache/minirn``."""
    if root is None:
        root = os.environ.get(ENV_VAR) or DEFAULT_ROOT
    return Path(root).expanduser()


_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError)


def _copy_stream(response, out, name: str, progress: bool) -> str:
    """Copy ``response`` into the open file ``out`` chunk by chunk; return the bytes' SHA-256."""
    digest = hashlib.sha256()
    total = getattr(response, "headers", {}).get("Content-Length")
    with tqdm(total=int(total) if total else None, unit="B", unit_scale=True, desc=name, disable=not progress) as bar:
        for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
            digest.update(chunk)
            out.write(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def download_file(url: str, path: str | os.PathLike, sha256: str, *, urlopen=None,
                  timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``path`` if its bytes hash to ``sha256``; return ``path``.

    ``urlopen`` (default :func:`urllib.request.urlopen`) is called as
    ``urlopen(url, timeout=timeout)`` and must return a context manager with
    ``read(n)``; tests pass a fake.  Raises :class:`DownloadError` when the
    network fails and :class:`ChecksumError` when the bytes differ; in both
    cases (and on any other error, Ctrl-C included) the temporary file is
    deleted and an existing file at ``path`` is left untouched.
    """
    urlopen = urllib.request.urlopen if urlopen is None else urlopen
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urlopen(url, timeout=timeout) as response:
                    digest = _copy_stream(response, out, path.name, progress)
            except _NETWORK_ERRORS as exc:
                raise DownloadError(
                    f"could not download {url}: {getattr(exc, 'reason', exc)}. Are you offline? "
                    f"You can also fetch the file yourself and save it as {path}"
                ) from exc
            out.flush()
            os.fsync(out.fileno())
        if digest != sha256.lower():
            raise ChecksumError(
                f"checksum mismatch for {url}: expected SHA-256 {sha256}, got {digest}; "
                f"the download was corrupted or the file was changed, so it was not kept"
            )
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; a data file may be shared
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def fetch(remote: RemoteFile, directory: str | os.PathLike, *, urlopen=None, progress: bool = True) -> Path:
    """Download ``remote`` into ``directory``, trying its URLs in order; return the file's path."""
    errors = []
    for url in remote.urls:
        try:
            return download_file(url, Path(directory) / remote.filename, remote.sha256,
                                 urlopen=urlopen, progress=progress)
        except DownloadError as exc:
            errors.append(exc)
    kind = ChecksumError if all(isinstance(e, ChecksumError) for e in errors) else DownloadError
    raise kind(f"every source of {remote.filename} failed:\n  " + "\n  ".join(map(str, errors))) from errors[-1]


def dataset_files(name: str, root: str | os.PathLike | None = None, download: bool = False,
                  *, urlopen=None, progress: bool = True) -> dict[str, Path]:
    """The local paths of dataset ``name``'s files, by file name, downloading missing ones if asked.

    Raises :class:`DatasetNotFoundError` when files are missing and ``download`` is false.
    Files already on disk are used as they are (not re-hashed).
    """
    directory = data_root(root) / name
    remotes = REMOTE_FILES[name]
    missing = [r for r in remotes if not (directory / r.filename).is_file()]
    if missing and not download:
        listing = "\n".join(f"  {directory / r.filename}  (from {r.urls[0]})" for r in missing)
        raise DatasetNotFoundError(
            f"dataset {name!r} is not on disk; these files are missing:\n{listing}\n"
            f"Pass download=True (or --download on the command line) to fetch them, or choose another "
            f"directory with root=... or the {ENV_VAR} environment variable."
        )
    for remote in missing:
        fetch(remote, directory, urlopen=urlopen, progress=progress)
    return {r.filename: directory / r.filename for r in remotes}
