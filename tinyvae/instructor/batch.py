"""Grading a folder of submissions: one subfolder or zip per student, in parallel, a CSV and a report per student.

    tinyvae assignment grade SUBMISSIONS/ [--out GRADES/] [--seed S] [--workers N]

Every submission is graded on the same cases (one seed per batch, recorded in the CSV; the expected values are
computed once). Whatever one submission does (a bad zip, no package, a crash, a hang), that student gets 0 on
what broke, with the reason in their report, and the batch goes on.
"""
import csv
import io
import json
import os
import shutil
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..files import atomic_write
from . import grading, sandbox

MAX_UNZIPPED = 200 << 20  # bytes: a larger (or zip-bomb) submission is refused
MAX_FILES = 5000


def is_submission(path):
    path = Path(path)
    return (path / "tinyvae" / "__init__.py").is_file() or (path.name == "tinyvae" and (path / "__init__.py").is_file())


def find_root(folder):
    """The folder holding ``tinyvae/__init__.py``: ``folder`` itself or the one folder below it that does."""
    folder = Path(folder)
    if is_submission(folder):
        return folder
    found = sorted(p.parent.parent for p in folder.glob("*/tinyvae/__init__.py")) + \
        sorted(p.parent.parent for p in folder.glob("*/*/tinyvae/__init__.py"))
    if not found:
        raise FileNotFoundError("no tinyvae/__init__.py in the submission")
    return found[0]


def unzip(path, dest):
    """Extract a student's zip safely: no absolute or '..' paths, no links, bounded size and count."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            if len(infos) > MAX_FILES or sum(i.file_size for i in infos) > MAX_UNZIPPED:
                raise ValueError("the zip is too large")
            for info in infos:
                name = Path(info.filename)
                if name.is_absolute() or ".." in name.parts:
                    raise ValueError(f"the zip holds an unsafe path {info.filename!r}")
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    continue  # a symbolic link: skipped
                target = dest / name
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"the zip cannot be read ({type(err).__name__})") from None
    return dest


def submissions(folder):
    """(student name, path) for every subfolder and zip in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"assignment grade: {folder} is not a folder of submissions")
    items = [(p.stem if p.suffix == ".zip" else p.name, p) for p in sorted(folder.iterdir())
             if (p.is_dir() or p.suffix == ".zip") and not p.name.startswith(".")]
    if not items:
        raise FileNotFoundError(f"assignment grade: {folder} holds no submissions (subfolders or .zip files)")
    return items


def _zero_report(name, plans, seed, mode, reason):
    rows = [grading.GradeRow(e.id, e.points, False, note=f"not graded: {reason}"[:160], hint=e.shown_hint)
            for e, *_ in plans]
    return grading.GradeReport(Path(name), rows, seed=seed, sandbox=mode)


def grade_one(name, path, plans, seed, mode, timeout, work):
    """A GradeReport for one student, whatever the submission holds."""
    try:
        if path.suffix == ".zip":
            path = unzip(path, Path(tempfile.mkdtemp(prefix="unzipped-", dir=work)))
        root = find_root(path)
        return grading.grade(root, seed=seed, sandbox_mode=mode, timeout=timeout, jobs=1, plans=plans)
    except Exception as err:  # noqa: BLE001 - one broken submission never stops the batch
        return _zero_report(name, plans, seed, mode, f"{type(err).__name__}: {err}")


def grade_folder(folder, out=None, seed=None, entries=None, sandbox_mode=None, timeout=20.0, workers=None):
    """Grade every submission in ``folder``; write ``out/scores.csv`` and ``out/reports/NAME.txt|.json``."""
    started = time.monotonic()
    items = submissions(folder)
    out = Path(out) if out else Path(folder).absolute().parent / "grades"
    (out / "reports").mkdir(parents=True, exist_ok=True)
    mode = sandbox.mode(sandbox_mode)
    seed, plans = grading.plan(entries, seed)
    # Without the sandbox a submission could write where another is graded: one at a time, each checked.
    workers = 1 if mode == "none" else (workers or os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="tinyvae-batch-") as work:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            reports = list(pool.map(lambda item: (item[0], grade_one(*item, plans, seed, mode, timeout, work)),
                                    items))
    ids = [e.id for e, *_ in plans]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["student", "score", "total", *ids, "seed", "sandbox"])
    for name, report in reports:
        writer.writerow([name, report.score, report.total, *[report.row(i).earned for i in ids], seed, mode])
        _write(out / "reports" / f"{name}.txt", f"{name}\n{report}\n")
        _write(out / "reports" / f"{name}.json", json.dumps({"student": name, **report.to_dict()}, indent=1))
    _write(out / "scores.csv", buf.getvalue())
    seconds = time.monotonic() - started
    return (f"graded {len(reports)} submissions in {seconds:.1f} s ({workers} at a time, sandbox {mode}, seed {seed}); "
            f"scores: {out / 'scores.csv'}, reports: {out / 'reports'}")


def _write(path, text):
    with atomic_write(path, "w") as f:
        f.write(text)
