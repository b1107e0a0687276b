"""Atomic file writes: a file is either its old self or complete, never half written."""
# Host-only: file handling, no array math.
import os
import tempfile
from contextlib import contextmanager


@contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file beside ``path`` for writing; rename it to ``path`` only when the block succeeds.

    The temporary file is in the same folder (so the rename is atomic), made readable like any new file (mkstemp
    creates it private), and removed if anything fails, including an interrupt.
    """
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
