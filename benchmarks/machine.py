"""Where a benchmark ran, in a few lines: the CPU, NumPy, and which kernels NumPy's OpenBLAS runs on that CPU.

Host-only: reads /proc/cpuinfo and asks NumPy's bundled OpenBLAS for its kernel set through ctypes.

The kernel set matters for every matrix product. OpenBLAS picks it for the CPU when it loads, unless
``OPENBLAS_CORETYPE`` names one: the machine these benchmarks were written on sets ``OPENBLAS_CORETYPE=Haswell``
(AVX2 kernels) in its environment although its CPU has AVX-512, which OpenBLAS would otherwise use.
"""
import ctypes
import glob
import os
import platform
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def default_data():
    """The shared MNIST folder of the project's machines where it exists, else the bundled subset."""
    shared = REPO.parent / "shared" / "data" / "mnist"
    return str(shared) if shared.is_dir() else "mnist-small"


def add_data_argument(parser):
    """The ``--data`` option every MNIST benchmark takes, with the default above."""
    parser.add_argument("--data", default=default_data(),
                        help="a data set name or a folder of IDX files (default: ../shared/data/mnist beside the "
                             "repository where it exists, else the bundled mnist-small, so a clone runs as is)")


def cpu():
    """(model name, family, flags) from /proc/cpuinfo; ("unknown", None, set()) elsewhere."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return platform.processor() or "unknown", None, set()
    fields = dict(line.split(":", 1) for line in text.splitlines()[:40] if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    family = fields.get("cpu family")
    return fields.get("model name", "unknown"), int(family) if family else None, set(fields.get("flags", "").split())


def openblas_core():
    """The kernel set NumPy's OpenBLAS chose when it loaded ("Haswell", "SkylakeX", ...), or None if not OpenBLAS."""
    libs = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*")
    for path in glob.glob(libs):
        try:
            lib = ctypes.CDLL(path)  # the library NumPy already loaded: the same handle, the same choice
        except OSError:
            continue
        for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                return fn().decode()
    return None


def describe():
    """Lines for the top of a benchmark's output."""
    model, family, flags = cpu()
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    core = openblas_core()
    lines = [f"CPU: {model} (family {family}), {os.cpu_count()} cores; Python {platform.python_version()}",
             f"NumPy {np.__version__}, BLAS {blas.get('name')} {blas.get('version')}"
             + (f", kernels: {core}" if core else "")]
    pinned = os.environ.get("OPENBLAS_CORETYPE")
    if pinned and "avx512f" in flags and core in ("Haswell", "Zen", "Sandybridge"):
        lines.append(f"  OPENBLAS_CORETYPE={pinned} is set in the environment: OpenBLAS runs these AVX2 kernels, not "
                     "the ones it would pick for this CPU, which has AVX-512")
    return lines
