"""Write the zip to hand in:   python -m tinyvae.submit [OUT.zip]   (from the assignment folder)

It holds exactly the package (tinyvae/, with the record of the assignment it came from) and nothing else: no
virtual environment, no caches, no notebooks' outputs. Upload that file (default: submission.zip here).
"""
import os
import sys
import zipfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".tmp")


def files():
    """The package's files, as (path, name in the zip), sorted."""
    out = []
    for path in sorted(PACKAGE.rglob("*")):
        rel = path.relative_to(PACKAGE.parent)
        if path.is_file() and not SKIP_DIRS & set(rel.parts) and not path.name.endswith(SKIP_SUFFIXES):
            out.append((path, rel.as_posix()))
    return out


def write(out):
    """Write the zip to ``out`` through a temporary name (never a half-written zip); returns (path, files)."""
    out = Path(out).absolute()
    if out.suffix != ".zip":
        raise SystemExit(f"tinyvae.submit: {out} should end in .zip")
    chosen = files()
    tmp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for path, name in chosen:
            z.write(path, name)
    os.replace(tmp, out)
    return out, len(chosen)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out, n = write(argv[0] if argv else "submission.zip")
    print(f"wrote {out}: {n} files of tinyvae/ ({out.stat().st_size / 1024:.0f} KB). Upload this file. "
          "Check first: python -m tinyvae.selfcheck")
    return 0


if __name__ == "__main__":
    sys.exit(main())
