"""Build the bundled MNIST subset tinyvae/datasets/data/mnist-small from a folder of MNIST IDX files.

    python scripts/make_mnist_small.py [SOURCE_DIR]     # default: ../shared/data/mnist next to the repository

Takes the first 10,000 training and first 2,000 test images/labels. Records are copied byte for byte (pixel values
untouched); only the count in each IDX header changes. Output is gzipped with mtime=0 and no file name in the gzip
header, so reruns give identical bytes (for the same zlib), and each file is written atomically.
Standard library only, so it runs without the package installed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import math
import os
import struct
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "mnist"
OUT = REPO / "tinyvae" / "datasets" / "data" / "mnist-small"
SUBSET = {  # file -> number of leading records kept
    "train-images-idx3-ubyte.gz": 10_000,
    "train-labels-idx1-ubyte.gz": 10_000,
    "t10k-images-idx3-ubyte.gz": 2_000,
    "t10k-labels-idx1-ubyte.gz": 2_000,
}


def prefix(raw: bytes, n: int, name: str) -> bytes:
    """The IDX file holding the first ``n`` records of the uint8 IDX file ``raw``."""
    if raw[:3] != b"\x00\x00\x08":
        raise SystemExit(f"{name}: not a uint8 IDX file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    record = math.prod(dims[1:])  # bytes per image (or 1 per label)
    if dims[0] < n or len(raw) != 4 + 4 * ndim + dims[0] * record:
        raise SystemExit(f"{name}: expected at least {n} records and a consistent length, header says {dims}")
    body = raw[4 + 4 * ndim:][:n * record]
    return raw[:4] + struct.pack(f">{ndim}I", n, *dims[1:]) + body


def write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; package data must be world-readable
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE, help="folder with the MNIST files")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for name, n in SUBSET.items():
        raw = gzip.decompress((args.source / name).read_bytes())
        # filename="" is implied by gzip.compress; mtime=0 keeps the output byte-reproducible.
        data = gzip.compress(prefix(raw, n, name), compresslevel=9, mtime=0)
        write_atomically(OUT / name, data)
        print(f"| {name} | {n:,} | {len(data):,} | {hashlib.md5(data).hexdigest()} |")


if __name__ == "__main__":
    main()
