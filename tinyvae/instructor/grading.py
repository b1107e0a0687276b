"""Grading one submission (host-only: the trusted side compares NumPy arrays on the CPU).

For each graded function, in THIS process and before any student code runs: draw the cases from the run's seed,
run the scenario on the solution (the expected outputs), and record the solution's answers to the other graded
functions it called. Then one student process per function (``runner.py``, sandboxed where possible) gets only the
inputs, runs the student's code, asks for the other functions' answers over the pipe, and returns its outputs; this
process validates them and compares them with the expected values it kept. The student process can neither see nor
change an expected value, a threshold or the report.
"""
import math
import os
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import runner, sandbox
from .manifest import MANIFEST, cases as make_cases

THRESHOLD = 1e-7  # the library's gradient-check threshold (gradcheck.THRESHOLD)
MATCH = 1e-9  # how close a stub's inputs must be to the solution's for the grader to answer


@dataclass
class GradeRow:
    function: str
    points: int
    passed: bool
    error: float | None = None
    note: str = ""
    hint: str = ""
    checks: list = field(default_factory=list)

    @property
    def earned(self):
        return self.points if self.passed else 0


@dataclass
class GradeReport:
    path: Path
    rows: list
    seed: int = 0
    sandbox: str = "none"
    seconds: float = 0.0
    threshold: float = THRESHOLD

    @property
    def passed(self):
        return all(r.passed for r in self.rows)

    @property
    def score(self):
        return sum(r.earned for r in self.rows)

    @property
    def total(self):
        return sum(r.points for r in self.rows)

    def row(self, function):
        return next(r for r in self.rows if r.function == function)

    def to_dict(self):
        rows = []
        for r in self.rows:
            d = {**asdict(r), "earned": r.earned}
            d["error"] = _json_float(r.error)
            d["checks"] = [[n, _json_float(e)] for n, e in r.checks]
            rows.append(d)
        return {"path": str(self.path), "score": self.score, "total": self.total, "passed": self.passed,
                "seed": self.seed, "sandbox": self.sandbox, "seconds": round(self.seconds, 3),
                "threshold": self.threshold, "rows": rows}

    def __str__(self):
        width = max([len(r.function) for r in self.rows] + [len("function")])
        head = f"{'function':<{width}}  {'points':>6}  {'earned':>6}  result  {'rel. error':>10}  note"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            err = "-" if r.error is None else f"{r.error:.1e}"
            lines.append(f"{r.function:<{width}}  {r.points:>6}  {r.earned:>6}  {'pass' if r.passed else 'FAIL':<6}"
                         f"  {err:>10}  {r.note}".rstrip())
            if not r.passed and r.hint:
                lines.append(f"{'':<{width}}  hint: {r.hint}")
        lines.append("-" * len(head))
        lines.append(f"{'total':<{width}}  {self.total:>6}  {self.score:>6}  {sum(r.passed for r in self.rows)} of "
                     f"{len(self.rows)} passed (relative error below {self.threshold:.0e}); seed {self.seed}, "
                     f"sandbox {self.sandbox}")
        return "\n".join(lines)


def _json_float(x):
    return x if x is None or math.isfinite(x) else str(x)


def student_root(path):
    """The folder holding the student's ``tinyvae/`` (``path`` itself, or its parent if ``path`` is the package)."""
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise FileNotFoundError(f"assignment grade: {path} does not exist")
    if not path.is_dir():
        raise ValueError(f"assignment grade: {path} is not a folder (give the folder that holds tinyvae/)")
    if (path / "tinyvae" / "__init__.py").is_file():
        return path
    if path.name == "tinyvae" and (path / "__init__.py").is_file():
        return path.parent
    raise FileNotFoundError(f"assignment grade: {path} holds no tinyvae package (expected {path / 'tinyvae'}"
                            "/__init__.py): give the folder that `tinyvae assignment make` wrote")


# ---------------------------------------------------------------------------------------------------------------
# The trusted side: expected values and the recorded answers of the other functions
# ---------------------------------------------------------------------------------------------------------------

def _solution():
    import tinyvae

    from . import handout
    tinyvae.use("numpy")
    blanked = handout.blanked_functions()
    if blanked:
        raise ValueError(f"assignment grade: the tinyvae running the grader ({handout.PACKAGE_DIR}) is a student "
                         f"copy ({blanked[0]} raises NotImplementedError); grade with the solution installed. "
                         "Students check their own work with: python -m tinyvae gradcheck")
    return tinyvae


def _resolve(package, file, qualname):
    import importlib
    owner = importlib.import_module(f"{package.__name__}.{file[:-3]}")
    *path, attr = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, attr, bool(path)


class Recorder:
    """Wraps the solution's other graded functions while a scenario runs, keeping (inputs, answer) per call."""

    def __init__(self, solution, stubs):
        self.solution, self.stubs, self.calls, self.saved = solution, stubs, [], []

    def __enter__(self):
        for entry_id, file, qualname in self.stubs:
            owner, attr, is_method = _resolve(self.solution, file, qualname)
            original = vars(owner)[attr]
            self.saved.append((owner, attr, original))
            setattr(owner, attr, self._wrap(entry_id, qualname, original, is_method))
        return self

    def __exit__(self, *exc):
        for owner, attr, original in reversed(self.saved):
            setattr(owner, attr, original)

    def _wrap(self, entry_id, qualname, original, is_method):
        calls = self.calls

        def wrapper(*args, **kwargs):
            own = list(args[0].parameters()) if is_method and hasattr(args[0], "parameters") else []
            before = [p.grad.copy() for p in own]
            inputs = _snapshot((args[1:] if is_method else args, kwargs, [p.data for p in own]))
            result = original(*args, **kwargs)
            calls.append((qualname, inputs, _snapshot(result), [p.grad - b for p, b in zip(own, before)]))
            return result
        return wrapper


def _snapshot(value):
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return np.array(value, copy=True)
    if isinstance(value, (list, tuple)):
        return tuple(_snapshot(v) for v in value)
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    return value if isinstance(value, (bool, int, float, str, type(None))) else ("__other", type(value).__name__)


def _same(a, b):
    """True when the structures match and every array agrees to ``MATCH`` (relative to its largest entry)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or a.shape != b.shape:
            return False
        if a.dtype.kind not in "fciub" or b.dtype.kind not in "fciub":
            return False
        scale = max(1.0, float(np.max(np.abs(b))) if b.size else 0.0)
        with np.errstate(invalid="ignore"):
            return bool(np.all(np.abs(a.astype(float) - b.astype(float)) <= MATCH * scale))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= MATCH * max(1, abs(b))
    if isinstance(b, tuple) and b[:1] == ("__other",):
        return True  # an object we cannot compare (a generator): the arrays decide
    return a == b


def expected_for(solution, entry, entries, seed):
    """(cases, expected outputs per case, recorded calls per case, stub list) for one function."""
    stubs = [(e.id, f, q) for e in entries if e.id != entry.id for f, q in e.stubbable]
    drawn = make_cases(entry, seed, solution)
    expected, recorded = [], []
    for i, (params, arrays) in enumerate(drawn):
        solution.backend.seed(seed + i)
        with Recorder(solution, stubs) as rec:
            expected.append(runner.run_case(solution, entry.scenario, params, arrays))
        recorded.append(rec.calls)
    return drawn, expected, recorded, stubs


# ---------------------------------------------------------------------------------------------------------------
# The student process: start it, answer its calls, read its outputs once
# ---------------------------------------------------------------------------------------------------------------

def _answer(recorded, header, request):
    """The solution's (result, grad increments) for a stub call with exactly these inputs, else None."""
    qualname = header.get("qualname")
    if not isinstance(request, dict):
        return None
    got = (request.get("args", ()), request.get("kwargs", {}), request.get("params", ()))
    got = (tuple(got[0]) if isinstance(got[0], (list, tuple)) else got[0], got[1],
           tuple(got[2]) if isinstance(got[2], (list, tuple)) else got[2])
    for name, inputs, result, increments in recorded:
        if name == qualname and _same(_normalise(got), _normalise(inputs)):
            return result, increments
    return None


def _normalise(value):
    if isinstance(value, (list, tuple)):
        return tuple(_normalise(v) for v in value)
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return float(value)
    if isinstance(value, dict) and "__other" in value:
        return ("__other", value["__other"])
    return value


def run_student(root, entry, job, recorded, mode, timeout, workdir):
    """The list of per-case results the student process returned, or a string saying why there are none."""
    runner_copy = Path(workdir) / "runner.py"
    shutil.copyfile(runner.__file__, runner_copy)
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    argv, env, cwd = sandbox.command(mode, runner_copy, root, workdir, to_child_r, from_child_w)
    log = open(Path(workdir) / "output.txt", "wb")
    try:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                pass_fds=(to_child_r, from_child_w), start_new_session=True,
                                preexec_fn=sandbox.limits(timeout))
    finally:
        os.close(to_child_r)
        os.close(from_child_w)
        log.close()
    deadline = time.monotonic() + timeout
    try:
        runner.send(to_child_w, {"kind": "job"}, job)
        while True:
            header, payload = _receive_by(from_child_r, deadline)
            if header.get("kind") == "call":
                answer = _answer(recorded, header, payload)
                runner.send(to_child_w, {"kind": "answer" if answer is not None else "miss"}, answer)
            elif header.get("kind") == "result":
                if header.get("import_error"):
                    return str(header["import_error"])
                return payload
            else:
                return "the student process sent something the grader does not understand"
    except TimeoutError:
        return f"timed out after {timeout:g} s (the process was killed)"
    except (EOFError, BrokenPipeError):
        proc.wait()
        return f"the student process exited before returning its results (exit code {proc.returncode})"
    except ValueError as err:
        return f"the student process returned unreadable results: {err}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        os.close(to_child_w)
        os.close(from_child_r)


def _receive_by(fd, deadline):
    def read(n):
        chunks = []
        while n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    (size,) = runner.struct.unpack(">Q", read(8))
    if size > runner.MAX_MESSAGE:
        raise ValueError(f"a message of {size} bytes")
    return runner.unpack(read(size))


# ---------------------------------------------------------------------------------------------------------------
# Comparing
# ---------------------------------------------------------------------------------------------------------------

def rel_error(got, expected):
    """max |a - b| / max(1e-8, |a| + |b|) (CS231n's), inf for a non-finite or wrongly shaped answer."""
    if expected is None:
        return 0.0 if got is None else math.inf
    if isinstance(expected, float):
        try:
            got = float(got)
        except (TypeError, ValueError):
            return math.inf
        if not math.isfinite(got):
            return math.inf
        if abs(expected) < 1e-12:  # the KL at mu = 0, logvar = 0 is exactly 0: an absolute error there
            return abs(got)
        return abs(got - expected) / max(1e-8, abs(got) + abs(expected))
    if not isinstance(got, np.ndarray) or got.shape != expected.shape or got.dtype.kind not in "fiu":
        return math.inf
    got = got.astype(np.float64)
    if not np.all(np.isfinite(got)):
        return math.inf
    return float(np.max(np.abs(got - expected) / np.maximum(1e-8, np.abs(got) + np.abs(expected)))) \
        if got.size else 0.0


def _why(got, expected):
    if expected is None:
        return "should be None" if got is not None else ""
    if isinstance(expected, float):
        return "" if isinstance(got, (int, float, np.ndarray)) else f"expected a float, got {type(got).__name__}"
    if not isinstance(got, np.ndarray):
        return f"expected an array of shape {expected.shape}, got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"has shape {got.shape}, expected {expected.shape}"
    return "is not finite" if got.dtype.kind in "fiu" and not np.all(np.isfinite(got)) else ""


def _case_label(entry, params, i):
    bits = [f"case {i + 1}"]
    for key in ("kind", "input_grad", "in", "out"):
        if key in params:
            bits.append(f"{key}={params[key]}")
    if "kwargs" in params and isinstance(params["kwargs"], dict) and "likelihood" in params["kwargs"]:
        bits.append(params["kwargs"]["likelihood"])
    return ", ".join(bits)


def score(entry, drawn, expected, results):
    """The row for one function from the student's results (a list per case, or a string: why none)."""
    row = GradeRow(entry.id, entry.points, False, hint=entry.shown_hint)
    if isinstance(results, str):
        row.note = results[:160]
        return row
    if not isinstance(results, (list, tuple)) or len(results) != len(expected):
        row.note = "the student process returned results for the wrong number of cases"
        return row
    checks, notes = [], []
    for i, ((params, _), want, got) in enumerate(zip(drawn, expected, results)):
        label = _case_label(entry, params, i)
        if not isinstance(got, dict) or ("ok" not in got and "error" not in got):
            checks.append((label, math.inf))
            notes.append(f"{label}: no result")
            continue
        if "error" in got:
            checks.append((label, math.inf))
            notes.append(f"{label}: {str(got['error'])[:120]}")
            continue
        outputs = got["ok"] if isinstance(got["ok"], dict) else {}
        for name, value in want.items():
            err = rel_error(outputs.get(name), value)
            checks.append((f"{name} ({label})", err))
            why = _why(outputs.get(name), value) if name in outputs else "was not returned"
            if err >= THRESHOLD and why:
                notes.append(f"{name} ({label}) {why}")
    worst_name, worst = max(checks, key=lambda c: c[1] if not math.isnan(c[1]) else math.inf)
    row.checks, row.error = checks, worst
    row.passed = all(err < THRESHOLD for _, err in checks)
    if not row.passed:
        row.note = notes[0] if notes else f"worst: {worst_name}"
    row.note = "".join(ch if ch.isprintable() else "?" for ch in row.note)[:160]
    return row


_PLANNING = threading.Lock()  # recording wraps the solution's functions: one plan at a time


def plan(entries=None, seed=None):
    """(seed, plans): the cases, expected outputs and recorded answers of every function, for one seed. A batch
    computes them once and grades every submission against them."""
    entries = tuple(entries or MANIFEST)
    seed = secrets.randbits(31) if seed is None else int(seed)
    with _PLANNING:
        solution = _solution()
        return seed, [(e, *expected_for(solution, e, entries, seed)) for e in entries]


def grade(path, seed=None, entries=None, sandbox_mode=None, timeout=20.0, jobs=None, integrity=None, plans=None):
    """Grade the submission in ``path``; returns a GradeReport (seed and sandbox mode recorded in it).

    ``seed`` None draws a fresh one; pass the report's seed to regrade identically. ``timeout`` bounds each
    function's student process (it is killed from outside); functions run ``jobs`` at a time. ``plans`` (from
    ``plan``, with its seed) skips recomputing the expected values.
    """
    started = time.monotonic()
    root = student_root(path)
    if not timeout > 0:
        raise ValueError(f"assignment grade: timeouts must be positive, got {timeout!r}")
    mode = sandbox.mode(sandbox_mode)
    if plans is None:
        seed, plans = plan(entries, seed)  # before any student code runs
    entries = [p[0] for p in plans]
    integrity = integrity or sandbox.Integrity()
    modules = sorted({f[:-3] for e in entries for f, _ in e.stubbable})
    jobs = jobs or min(len(plans), os.cpu_count() or 1)

    def one(item):
        entry, drawn, expected, recorded, stubs = item
        job = {"scenario": entry.scenario, "cases": drawn, "stubs": stubs, "seed": seed, "modules": modules}
        with tempfile.TemporaryDirectory(prefix="tinyvae-grade-") as work:
            results = run_student(root, entry, job, [c for calls in recorded for c in calls], mode, timeout, work)
        return score(entry, drawn, expected, results)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        rows = list(pool.map(one, plans))
    if mode == "none" and not integrity.check():  # without a sandbox the processes could write the solution
        for row in rows:
            row.passed, row.note = False, "the submission changed the grader's files (restored): 0 points"
    return GradeReport(root, rows, seed=seed, sandbox=mode, seconds=time.monotonic() - started)
