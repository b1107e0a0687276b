"""Reader for the IDX format that MNIST and Fashion-MNIST ship in.

Layout (big-endian): two zero bytes, a type byte, a dimension count ``d``, then ``d`` uint32 sizes, then the data
in row-major order. Files are usually gzipped; we detect that by the gzip magic bytes, not by the file name.
"""
# Host-only: file parsing and downloads; uses NumPy directly, never the active array backend.

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError, MissingFileError

# type byte -> (readable name, on-disk dtype). IDX is big-endian, hence the ">".
IDX_TYPES = {
    0x08: ("uint8", np.dtype("u1")),
    0x09: ("int8", np.dtype("i1")),
    0x0B: ("int16", np.dtype(">i2")),
    0x0C: ("int32", np.dtype(">i4")),
    0x0D: ("float32", np.dtype(">f4")),
    0x0E: ("float64", np.dtype(">f8")),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a native-endian array of the declared shape.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for anything malformed; every message starts
    with the file name and says what was found and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such IDX file")
    raw = path.read_bytes()

    def fail(msg: str) -> ValueError:
        return InputError(f"{path}: {msg}")

    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:  # bad CRC / truncated stream / garbage
            raise fail(f"corrupt gzip stream ({e}); the file is damaged or incompletely downloaded") from None

    if len(raw) < 4:
        what = "empty file" if not raw else f"only {len(raw)} bytes"
        raise fail(f"not an IDX file: {what}, expected at least a 4-byte header (0x00 0x00 type ndim)")
    if raw[0] or raw[1]:
        raise fail(f"not an IDX file: magic number starts with 0x{raw[0]:02x} 0x{raw[1]:02x}, "
                   "expected two zero bytes")
    type_byte, ndim = raw[2], raw[3]
    if type_byte not in IDX_TYPES:
        known = ", ".join(f"0x{k:02X} ({name})" for k, (name, _) in IDX_TYPES.items())
        raise fail(f"unknown IDX data type 0x{type_byte:02X}, expected one of {known}")
    if ndim == 0:
        raise fail("IDX header declares 0 dimensions, expected at least 1")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise fail(f"truncated IDX header: {ndim} dimensions need {header} header bytes but the file has "
                   f"{len(raw)}")

    dims = struct.unpack(f">{ndim}I", raw[4:header])
    type_name, dtype = IDX_TYPES[type_byte]
    expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow for huge declared sizes
    present = len(raw) - header
    if present != expected:
        problem = "truncated IDX file" if present < expected else "IDX file has trailing bytes"
        declared = "x".join(map(str, dims))
        raise fail(f"{problem}: header declares {declared} {type_name} = {expected} bytes of data "
                   f"but {'only ' if present < expected else ''}{present} are present")

    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    # astype copies into a writable, native-endian array (frombuffer over bytes is read-only).
    return data.astype(dtype.newbyteorder("="))
