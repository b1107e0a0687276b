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
from .manifest import MANIFEST, RECORD, cases as make_cases, entries_from_dict

THRESHOLD = 1e-7  # the library's gradient-check threshold (gradcheck.THRESHOLD)
MATCH = 1e-9  # how close a stub's inputs must be to the solution's for the grader to answer


class GraderError(RuntimeError):
    """The grading machine failed (no sandbox, a process that cannot start, ...): not the student's fault. A batch
    marks the submission "not graded" and exits non-zero instead of scoring it 0."""


class ConfigMismatch(ValueError):
    """The grader's config grades a function that the submission's handout did not hand out as an exercise."""


def points_text(p):
    """2 -> "2", 2.5 -> "2.5": points as an instructor wrote them."""
    return f"{p:g}" if isinstance(p, float) else str(p)


def clip(text, limit=200):
    """``text`` cut to at most ``limit`` characters at a word boundary, with "..." where it was cut."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    if len(text) <= limit:
        return text
    cut = text[:limit - 3]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "..."


@dataclass
class GradeRow:
    function: str
    points: float
    passed: bool
    error: float | None = None
    note: str = ""
    hint: str = ""
    checks: list = field(default_factory=list)
    cases_passed: int = 0
    cases: int = 0
    partial: bool = False  # credit per case passed (the entry's config)
    visibility: str = "visible"

    @property
    def earned(self):
        if self.passed:
            return self.points
        if self.partial and self.cases:
            share = self.points * self.cases_passed / self.cases
            return int(share) if float(share).is_integer() else round(share, 4)
        return 0


@dataclass
class GradeReport:
    path: Path
    rows: list
    seed: int = 0
    sandbox: str = "none"
    seconds: float = 0.0
    threshold: float = THRESHOLD
    sandbox_warning: str = ""  # the weak mode's warning, in every report and CSV row
    status: str = "graded"  # or "not graded: why" (the machine or the config failed, not the student)

    @property
    def passed(self):
        return all(r.passed for r in self.rows)

    @property
    def score(self):
        total = sum(r.earned for r in self.rows)
        return int(total) if float(total).is_integer() else round(total, 4)

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
                "seed": self.seed, "sandbox": self.sandbox, "sandbox_warning": self.sandbox_warning,
                "status": self.status, "seconds": round(self.seconds, 3), "threshold": self.threshold, "rows": rows}

    def __str__(self):
        width = max([len(r.function) for r in self.rows] + [len("function")])
        head = f"{'function':<{width}}  {'points':>6}  {'earned':>6}  result  {'rel. error':>10}  note"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            err = "-" if r.error is None else f"{r.error:.1e}"
            result = "pass" if r.passed else ("part" if r.earned else "FAIL")
            lines.append(f"{r.function:<{width}}  {points_text(r.points):>6}  {points_text(r.earned):>6}  "
                         f"{result:<6}  {err:>10}  {r.note}".rstrip())
            if not r.passed and r.hint:
                lines.append(f"{'':<{width}}  hint: {r.hint}")
        lines.append("-" * len(head))
        lines.append(f"{'total':<{width}}  {points_text(self.total):>6}  {points_text(self.score):>6}  "
                     f"{sum(r.passed for r in self.rows)} of {len(self.rows)} passed (relative error below "
                     f"{self.threshold:.0e}); seed {self.seed}, sandbox {self.sandbox}")
        if self.sandbox_warning:
            lines.append(f"WARNING: {self.sandbox_warning}")
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

    from . import source
    tinyvae.use("numpy")
    blanked = source.blanked_functions()
    if blanked:
        raise ValueError(f"assignment grade: the tinyvae running the grader ({source.PACKAGE_DIR}) is a student "
                         f"copy ({blanked[0]} raises NotImplementedError); grade with the solution installed. "
                         "Students check their own work with: python -m tinyvae.selfcheck (or tinyvae gradcheck)")
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


def expected_for(solution, entry, entries, seed, visible=False):
    """(cases, expected outputs per case, recorded calls per case, stub list) for one function."""
    stubs = [(e.id, f, q) for e in entries if e.id != entry.id for f, q in e.stubbable]
    drawn = make_cases(entry, seed, solution, visible)
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
    log_path = Path(workdir) / "output.txt"
    log = open(log_path, "wb")
    try:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                pass_fds=(to_child_r, from_child_w), start_new_session=True,
                                preexec_fn=sandbox.limits(timeout))
    except OSError as err:
        os.close(to_child_w)
        os.close(from_child_r)
        raise GraderError(f"cannot start the grading process ({argv[0]}): {type(err).__name__}: {err}") from None
    finally:
        os.close(to_child_r)
        os.close(from_child_w)
        log.close()
    deadline = time.monotonic() + timeout
    started = False  # the runner says "ready" before it reads the job, before any student code is imported
    try:
        runner.send(to_child_w, {"kind": "job"}, job)
        while True:
            header, payload = _receive_by(from_child_r, deadline)
            if header.get("kind") == "ready" and not started:
                started = True
            elif header.get("kind") == "call":
                answer = _answer(recorded, header, payload)
                runner.send(to_child_w, {"kind": "answer" if answer is not None else "miss"}, answer)
            elif header.get("kind") == "result":
                if header.get("import_error"):
                    return str(header["import_error"])
                return payload
            else:
                return f"{entry.qualname}'s process sent something the grader does not understand"
    except (TimeoutError, EOFError, BrokenPipeError, ValueError) as err:
        if not started:  # nothing of the student's had run yet: the machine failed, not the student
            proc.kill() if proc.poll() is None else None
            proc.wait()
            said = log_path.read_bytes()[-300:].decode(errors="replace").strip()
            raise GraderError(f"the grading process did not start ({type(err).__name__}, exit code "
                              f"{proc.returncode}): {said or 'no output'}") from None
        if isinstance(err, TimeoutError):
            return f"{entry.qualname} (or the code it runs) took longer than {timeout:g} s and was stopped"
        if isinstance(err, ValueError):
            return f"{entry.qualname}'s process returned unreadable results: {err}"
        proc.wait()
        return f"your code ended the process before {entry.qualname} returned (exit code {proc.returncode})"
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
    row = GradeRow(entry.id, entry.points, False, hint=entry.shown_hint, cases=len(expected), partial=entry.partial,
                   visibility=entry.visibility)
    if isinstance(results, str):
        row.note = clip(results)
        return row
    if not isinstance(results, (list, tuple)) or len(results) != len(expected):
        row.note = f"{entry.qualname} returned results for the wrong number of cases"
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
            notes.append(f"{label}: {got['error']}")
            continue
        outputs = got["ok"] if isinstance(got["ok"], dict) else {}
        case_ok = True
        for name, value in want.items():
            err = runner.rel_error(outputs.get(name), value)
            checks.append((f"{name} ({label})", err))
            case_ok &= err < THRESHOLD
            why = runner.why(outputs.get(name), value) if name in outputs else "was not returned"
            if err >= THRESHOLD:
                notes.append(f"{name} ({label}) {why or f'is off (relative error {err:.1e})'}")
        row.cases_passed += case_ok
    worst_name, worst = max(checks, key=lambda c: c[1] if not math.isnan(c[1]) else math.inf)
    row.checks, row.error = checks, worst
    row.passed = all(err < THRESHOLD for _, err in checks)
    if not row.passed:
        row.note = notes[0] if notes else f"worst: {worst_name}"
        if entry.partial:
            row.note = f"{row.cases_passed} of {row.cases} cases passed; {row.note}"
    row.note = clip(row.note)
    return row


_PLANNING = threading.Lock()  # recording wraps the solution's functions: one plan at a time


def plan(entries=None, seed=None, visible=False):
    """(seed, plans): the cases, expected outputs and recorded answers of every function, for one seed. A batch
    computes them once and grades every submission against them. ``visible``: the handout self-check's cases."""
    entries = tuple(entries or MANIFEST)
    seed = secrets.randbits(31) if seed is None else int(seed)
    with _PLANNING:
        solution = _solution()
        return seed, [(e, *expected_for(solution, e, entries, seed, visible)) for e in entries]


def handout_record(root):
    """The config recorded in the submission's package by ``make`` (``tinyvae/assignment.json``): a tuple of
    entries, None where there is none, or a string saying why it cannot be read. Student-controlled: it only ever
    makes the grader refuse, never chooses what is graded."""
    path = Path(root) / "tinyvae" / RECORD
    if not path.is_file():
        return None
    try:
        import json
        return entries_from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))
    except (OSError, ValueError) as err:
        return f"{path} cannot be read: {err}"


def check_config(root, entries, config_given):
    """Refuse to grade a function the submission's handout did not give out as an exercise (there it is the
    solution, so it would score free points): a forgotten --config, or the config of another handout."""
    record = handout_record(root)
    if record is None:
        return
    if isinstance(record, str):
        if config_given:
            return  # a damaged record cannot widen what is graded: the instructor's config decides
        raise ConfigMismatch(f"assignment grade: {record}; pass --config (the course config or the handout folder)")
    handed_out = {e.id for e in record}
    if not config_given and {e.id for e in entries} != handed_out:
        raise ConfigMismatch(
            f"assignment grade: {root} comes from a handout made with a config ({len(handed_out)} functions: "
            f"{', '.join(sorted(handed_out))}); without --config every function would be graded, and the others "
            "are solutions in the handout. Pass --config COURSE.toml (or --config HANDOUT_FOLDER)")
    extra = sorted({e.id for e in entries} - handed_out)
    if extra:
        raise ConfigMismatch(f"assignment grade: the config grades {', '.join(extra)}, which the handout of {root} "
                             f"did not give out as exercises (it has {', '.join(sorted(handed_out))}): is it the "
                             "config this handout was made with?")


def grade(path, seed=None, entries=None, sandbox_mode=None, timeout=20.0, jobs=None, integrity=None, plans=None,
          label=None, config_given=None):
    """Grade the submission in ``path``; returns a GradeReport (seed and sandbox mode recorded in it).

    ``seed`` None draws a fresh one; pass the report's seed to regrade identically. ``timeout`` bounds each
    function's student process (it is killed from outside); functions run ``jobs`` at a time. ``plans`` (from
    ``plan``, with its seed) skips recomputing the expected values. ``label`` names the submission in the report
    (a batch passes the student's zip, not the folder it was unpacked to). ``config_given`` (default: whether
    ``entries`` or ``plans`` were given) says the entries are a course config, not the whole manifest by default:
    ``check_config`` then refuses a mismatch with the submission's handout. A failure of the machine raises
    GraderError; whatever the submission does gives a row.
    """
    started = time.monotonic()
    root = student_root(path)
    if not timeout > 0:
        raise ValueError(f"assignment grade: timeouts must be positive, got {timeout!r}")
    if config_given is None:
        config_given = entries is not None or plans is not None
    check_config(root, [p[0] for p in plans] if plans is not None else tuple(entries or MANIFEST), config_given)
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
    return GradeReport(Path(label) if label else root, rows, seed=seed, sandbox=mode,
                       seconds=time.monotonic() - started, sandbox_warning=sandbox.warning(mode))
