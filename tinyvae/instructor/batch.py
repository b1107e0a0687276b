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
import traceback
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..files import atomic_write
from . import grading, sandbox

MAX_UNZIPPED = 200 << 20  # bytes: a larger (or zip-bomb) submission is refused
MAX_FILES = 5000
# Folders a submission may carry that are never part of it: left out of the unzipped copy and of the limits.
IGNORED = {"__MACOSX", "__pycache__", ".git", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache", ".venv", "venv",
           "env", ".env", "site-packages", "node_modules", ".DS_Store"}


class StudentFault(ValueError):
    """The submission itself cannot be graded (a bad zip, no package, too large): a 0 with the reason."""


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
    found = [p for p in found if not IGNORED & set(p.relative_to(folder).parts)]
    if not found:
        raise StudentFault("no tinyvae/__init__.py in the submission (submit the folder that holds tinyvae/, or the "
                           "zip `python -m tinyvae.submit` writes)")
    return found[0]


def _ignored(name, environments):
    parts = Path(name).parts
    return bool(IGNORED & set(parts)) or any(name.startswith(env) for env in environments)


def unzip(path, dest):
    """Extract a student's zip safely: no absolute or '..' paths, no links, bounded size and count. Virtual
    environments (any folder holding pyvenv.cfg), caches and macOS's __MACOSX are left out, not counted."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            environments = {n[:-len("pyvenv.cfg")] for n in names if Path(n).name == "pyvenv.cfg"}
            infos = [i for i in z.infolist() if not _ignored(i.filename, environments)]
            if len(infos) > MAX_FILES or sum(i.file_size for i in infos) > MAX_UNZIPPED:
                raise StudentFault(f"the zip is too large ({len(infos)} files, "
                                   f"{sum(i.file_size for i in infos) >> 20} MB; at most {MAX_FILES} files and "
                                   f"{MAX_UNZIPPED >> 20} MB): submit the zip `python -m tinyvae.submit` writes")
            for info in infos:
                name = Path(info.filename)
                if name.is_absolute() or ".." in name.parts:
                    raise StudentFault(f"the zip holds an unsafe path {info.filename!r}")
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    continue  # a symbolic link: skipped
                target = dest / name
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as err:
        raise StudentFault(f"the zip cannot be read ({type(err).__name__})") from None
    except RuntimeError as err:  # an encrypted member
        raise StudentFault(f"the zip cannot be unpacked ({err})") from None
    except OSError as err:  # a full disk, a folder we cannot write: the machine's fault
        raise grading.GraderError(f"cannot unpack {path}: {type(err).__name__}: {err}") from None
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


def _zero_report(name, plans, seed, mode, reason, status="graded"):
    rows = [grading.GradeRow(e.id, e.points, False, note=grading.clip(reason), hint=e.shown_hint,
                             visibility=e.visibility) for e, *_ in plans]
    return grading.GradeReport(Path(name), rows, seed=seed, sandbox=mode, status=status,
                               sandbox_warning=sandbox.warning(mode))


def grade_one(name, path, plans, seed, mode, timeout, work, config_given=True):
    """A GradeReport for one student, whatever the submission holds. The student's faults (a bad zip, no package,
    code that crashes or hangs) score 0 with the reason; a failure of this machine or a config that does not match
    the handout gives status "not graded" instead."""
    try:
        label = path
        if path.suffix == ".zip":
            path = unzip(path, Path(tempfile.mkdtemp(prefix="unzipped-", dir=work)))
        root = find_root(path)
        return grading.grade(root, seed=seed, sandbox_mode=mode, timeout=timeout, jobs=1, plans=plans, label=label,
                             config_given=config_given)
    except StudentFault as err:
        return _zero_report(label, plans, seed, mode, f"the submission cannot be graded: {err}")
    except grading.ConfigMismatch as err:
        return _zero_report(label, plans, seed, mode, str(err), status=f"not graded: {err}")
    except Exception as err:  # noqa: BLE001 - the machine (or the grader) failed: never a student's 0
        where = "".join(traceback.format_exception_only(type(err), err)).strip()
        return _zero_report(label, plans, seed, mode, f"grading machine error: {where}",
                            status=f"not graded: grading machine error: {where}")


def grade_path(path, seed=None, entries=None, sandbox_mode=None, timeout=20.0, config_given=None):
    """One submission: a folder holding tinyvae/, or a zip of one. Raises what ``grading.grade`` raises (a zip's
    own faults as StudentFault)."""
    path = Path(path)
    if path.suffix == ".zip" and path.is_file():
        with tempfile.TemporaryDirectory(prefix="tinyvae-zip-") as work:
            root = find_root(unzip(path, Path(work)))
            return grading.grade(root, seed=seed, entries=entries, sandbox_mode=sandbox_mode, timeout=timeout,
                                 label=path.absolute(), config_given=config_given)
    return grading.grade(path, seed=seed, entries=entries, sandbox_mode=sandbox_mode, timeout=timeout,
                         config_given=config_given)


class BatchSummary(str):
    """The summary line, with ``not_graded``: how many submissions the machine (or the config) failed to grade."""
    not_graded = 0


def grade_folder(folder, out=None, seed=None, entries=None, sandbox_mode=None, timeout=20.0, workers=None,
                 config_given=None):
    """Grade every submission in ``folder``; write ``out/scores.csv`` and ``out/reports/NAME.txt|.json``.

    Returns a BatchSummary: ``not_graded`` counts the rows whose status is not "graded" (the CLI exits 3 then)."""
    started = time.monotonic()
    items = submissions(folder)
    out = Path(out) if out else Path(folder).absolute().parent / "grades"
    (out / "reports").mkdir(parents=True, exist_ok=True)
    mode = sandbox.mode(sandbox_mode)
    config_given = entries is not None if config_given is None else config_given
    seed, plans = grading.plan(entries, seed)
    # Without the sandbox a submission could write where another is graded: one at a time, each checked.
    workers = 1 if mode == "none" else (workers or os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="tinyvae-batch-") as work:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            reports = list(pool.map(lambda item: (item[0], grade_one(*item, plans, seed, mode, timeout, work,
                                                                     config_given)), items))
    ids = [e.id for e, *_ in plans]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["student", "status", "score", "total", *ids, "seed", "sandbox", "sandbox_warning"])
    for name, report in reports:
        writer.writerow([name, report.status, report.score, report.total, *[report.row(i).earned for i in ids], seed,
                         mode, report.sandbox_warning])
        _write(out / "reports" / f"{name}.txt", f"{name}\n{report}\n")
        _write(out / "reports" / f"{name}.json", json.dumps({"student": name, **report.to_dict()}, indent=1))
    _write(out / "scores.csv", buf.getvalue())
    seconds = time.monotonic() - started
    failed = [name for name, report in reports if report.status != "graded"]
    text = (f"graded {len(reports) - len(failed)} of {len(reports)} submissions in {seconds:.1f} s ({workers} at a "
            f"time, sandbox {mode}, seed {seed}); scores: {out / 'scores.csv'}, reports: {out / 'reports'}")
    if failed:
        text += (f"\nNOT GRADED ({len(failed)}: the machine or the config failed, not the students; see the status "
                 f"column): {', '.join(failed[:10])}{' ...' if len(failed) > 10 else ''}")
    if mode == "none":
        text += f"\nWARNING: {sandbox.warning(mode)}"
    summary = BatchSummary(text)
    summary.not_graded = len(failed)
    return summary


def _write(path, text):
    with atomic_write(path, "w") as f:
        f.write(text)
