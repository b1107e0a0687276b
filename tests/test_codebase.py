"""Rules of the codebase that keep the CuPy switch working."""
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.backends("numpy")  # reads source files only

PACKAGE = Path(__file__).resolve().parents[1] / "tinyvae"
IMPORTS_ARRAY_LIBRARY = re.compile(r"^\s*(import (numpy|cupy)|from (numpy|cupy)[ .])", re.MULTILINE)


def test_only_the_backend_and_declared_host_only_files_import_numpy_or_cupy():
    # Array math anywhere else would bypass the active backend and break tinyvae.use("cupy") silently.
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if path.name == "backend.py" or not IMPORTS_ARRAY_LIBRARY.search(text):
            continue
        if "host-only" not in "\n".join(text.splitlines()[:15]).lower():
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == [], f"these modules import numpy/cupy without declaring themselves host-only: {offenders}"


def test_the_rule_above_can_fail():
    leaky = "import numpy as np\n\ndef f(x):\n    return np.exp(x)\n"
    assert IMPORTS_ARRAY_LIBRARY.search(leaky)
    assert "host-only" not in leaky.lower()


def test_atomic_write_replaces_whole_files_or_nothing(tmp_path):
    from tinyvae.files import atomic_write

    target = tmp_path / "out.txt"
    with atomic_write(target, "w") as f:
        f.write("first")
    assert target.read_text() == "first" and target.stat().st_mode & 0o044  # readable like any new file
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as f:
            f.write("half of the second")
            raise RuntimeError("interrupted")
    assert target.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # no temporary left behind
