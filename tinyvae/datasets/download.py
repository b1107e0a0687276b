"""Download of the official MNIST / Fashion-MNIST archives: mirrors in order, md5-checked, written atomically.

``MIRRORS`` and ``MD5`` are plain module-level tables so that tests (or a user with a local proxy) can replace
them, e.g. ``monkeypatch.setitem(download.MIRRORS, "mnist", ["http://127.0.0.1:8000/"])``. ``fetch`` itself takes
its mirrors and checksum as arguments and knows nothing about the tables.
"""
# Host-only: downloads and files; no array math at all.

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from pathlib import Path

from ..errors import DownloadError

MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
}

# md5 of the official archives (see shared/data/mnist/README.md). Both data sets use the same four file names.
MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

_CHUNK = 1 << 16


class _MirrorFailed(Exception):
    """One mirror did not deliver a good file; the message says why. Never escapes this module."""


def fetch(filename: str, folder: str | os.PathLike, mirrors: list[str], md5: str,
          progress: bool = True, timeout: float = 30.0) -> Path:
    """Download ``filename`` into ``folder`` from the first mirror that delivers it intact; return its path.

    The bytes go to a temporary file in ``folder`` and are moved into place with ``os.replace`` only after the
    length and md5 check out, so an interrupted or corrupt download never looks like a complete file, and the
    temporary file is removed whatever happens. When every mirror fails, a ``RuntimeError`` lists each one and why.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / filename
    reasons = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{filename}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                _download(url, out, md5, filename, progress, timeout)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; a cached data file should be readable like any other
            os.replace(tmp, target)
            return target
        except _MirrorFailed as e:
            reasons.append(f"  {url}: {e}")
        finally:
            Path(tmp).unlink(missing_ok=True)  # already gone after a successful os.replace
    raise DownloadError(
        f"could not download {filename} into {folder}; every mirror failed:\n" + "\n".join(reasons) +
        f"\nDownload {filename} by hand and put it in {folder}, or pass root= a folder that holds the four files "
        "(on the command line: --dataset FOLDER; or set TINYVAE_DATA to a folder whose <dataset name> subfolder "
        "holds them).")


def _download(url: str, out, md5: str, filename: str, progress: bool, timeout: float) -> None:
    """Stream ``url`` into the open file ``out``; raise _MirrorFailed for any network or integrity problem."""
    from tqdm import tqdm  # imported here so that the offline paths never need it

    digest = hashlib.md5(usedforsecurity=False)
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length is not None else None
            with tqdm(total=expected, unit="B", unit_scale=True, desc=filename, disable=not progress) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except (OSError, http.client.HTTPException, ValueError) as e:  # URLError/HTTPError/timeouts are OSErrors
        raise _MirrorFailed(f"{type(e).__name__}: {e}") from None
    # urllib returns b"" instead of raising when the server closes early, so a short read must be caught here.
    if expected is not None and received != expected:
        raise _MirrorFailed(f"truncated transfer: received {received} of the {expected} bytes announced")
    if digest.hexdigest() != md5:
        raise _MirrorFailed(f"md5 mismatch: got {digest.hexdigest()}, expected {md5} "
                            f"({received} bytes received; not the official file)")
