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


def test_the_rule_above_can_fail(tmp_path):
    leaky = "import numpy as np\n\ndef f(x):\n    return np.exp(x)\n"
    assert IMPORTS_ARRAY_LIBRARY.search(leaky)
    assert "host-only" not in leaky.lower()
