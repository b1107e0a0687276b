"""Course assignments: a student copy of tinyvae with the backward passes blanked, and the grader for it.

    tinyvae assignment make hw/          # hw/tinyvae, hw/notebooks, hw/README.md: the functions below raise
    tinyvae assignment grade hw/         # one row per function: points, pass/fail, the relative error seen

``MANIFEST`` lists the functions students write, each with its points and a one-line hint. ``make`` copies the
package and replaces each listed body (and the helper bodies an entry names in ``also_blanks``, which would give
the answer away) by ``raise NotImplementedError(hint)``, keeping the def line and the docstring with the math.

``grade`` runs ``instructor/runner.py`` in a subprocess (NumPy backend) in which ``import tinyvae`` is the student's copy and
this package, the solution, is loaded beside it as ``tinyvae_reference``. Each function is graded alone: while
one is checked, every other listed function of the student's modules is replaced by the solution, so a missing
Dense.backward does not also fail VAE.backward. The numerical side (finite differences, formulas, the objective)
always comes from the solution, in float64, and a row passes when every relative error is below 1e-7. The
grader guards against mistakes, not against a student who sets out to fool it: their code runs in its process.
"""
from __future__ import annotations

import ast
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the solution package: tinyvae/
INSTRUCTOR_DIR = Path(__file__).resolve().parent  # never copied into a student folder
MARKER = ".tinyvae-assignment.json"  # written into OUT by make(): lets --overwrite tell a copy from other folders
THRESHOLD = 1e-7  # the library's gradient-check threshold (gradcheck.THRESHOLD)


@dataclass(frozen=True)
class Entry:
    """One graded function: where it lives, what it is worth, and the hint its blanked body raises."""

    id: str
    file: str  # relative to the package folder
    qualname: str  # "Dense.backward" or "bce_with_logits"
    points: int
    hint: str
    also_blanks: tuple = ()  # (file, qualname) of helper bodies blanked (and graded) with this entry

    @property
    def targets(self):
        """Every (file, qualname) whose body this entry blanks: the function itself first."""
        return ((self.file, self.qualname), *self.also_blanks)


MANIFEST = (
    Entry("Dense.backward", "layers.py", "Dense.backward", 15,
          "dW = x^T dout, db = sum over the batch of dout, dx = dout W^T (None if not self.input_grad); "
          "ADD dW and db into .grad (self.W.accumulate(dW), or self.W.grad += dW)"),
    Entry("ReLU.backward", "activations.py", "ReLU.backward", 5,
          "dx = dout where x > 0, else 0 (self._saved(self._saved_value) is what forward kept)"),
    Entry("LeakyReLU.backward", "activations.py", "LeakyReLU.backward", 5,
          "dx = dout where x > 0, else self.negative_slope * dout "
          "(self._saved(self._saved_value) is what forward kept)"),
    Entry("Sigmoid.backward", "activations.py", "Sigmoid.backward", 5,
          "dx = dout * y * (1 - y), with y = sigmoid(x) the output of forward"),
    Entry("Tanh.backward", "activations.py", "Tanh.backward", 5,
          "dx = dout * (1 - y^2), with y = tanh(x) the output of forward"),
    Entry("Softplus.backward", "activations.py", "Softplus.backward", 5,
          "dx = dout * sigmoid(x), with x the input of forward (use the stable sigmoid() above: exp(x) overflows)"),
    Entry("Identity.backward", "activations.py", "Identity.backward", 5,
          "dx = dout: the derivative of y = x is 1"),
    Entry("bce_with_logits", "losses.py", "bce_with_logits", 10,
          "value = 1/N sum [max(l, 0) - l x + log1p(exp(-|l|))], finite even at l = +-1e4; "
          "dl = (sigmoid(l) - x) / N",
          also_blanks=(("losses.py", "_bce_terms"),)),
    Entry("gaussian_kl", "losses.py", "gaussian_kl", 10,
          "value = 1/N sum 1/2 (mu^2 + exp(logvar) - 1 - logvar); dmu = mu / N, dlogvar = (exp(logvar) - 1) / (2N)",
          also_blanks=(("losses.py", "gaussian_kl_per_example"),)),
    Entry("Reparameterize.backward", "reparam.py", "Reparameterize.backward", 10,
          "z = mu + exp(logvar / 2) * eps, so dmu = dz and dlogvar = dz * eps * exp(logvar / 2) / 2"),
    Entry("VAE.backward", "models.py", "VAE.backward", 15,
          "dz = decoder.backward(dout); (dmu, dlogvar) = reparam.backward(dz) + beta * (the KL gradients); "
          "both heads' input gradients add up into encoder.backward"),
    Entry("Adam.step", "optim.py", "Adam.step", 10,
          "t += 1; g = grad + weight_decay p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; "
          "p -= lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps), as torch.optim.Adam",
          also_blanks=(("optim.py", "adam_reference"),)),
)


# ---------------------------------------------------------------------------------------------------------------
# Finding and rewriting function bodies with ast
# ---------------------------------------------------------------------------------------------------------------

def _find_def(tree, qualname, file):
    """The FunctionDef named by ``qualname`` ("Class.method" or "function") at the top of a module's tree."""
    node, scope = None, tree.body
    for part in qualname.split("."):
        found = [n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 and n.name == part]
        if not found:
            raise ValueError(f"{file} defines no {qualname} (no {part!r} found): is the manifest out of date?")
        node, scope = found[-1], found[-1].body
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise ValueError(f"{file}: {qualname} is a class, not a function")
    return node


def _has_docstring(node):
    first = node.body[0]
    return isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)


def _body_span(lines, node, file, qualname):
    """(start, end, indent): lines[start:end] is the body after the docstring (with the comments before its first
    statement, which may explain the answer); indent is the body's indentation."""
    first = node.body[0]
    prefix = lines[first.lineno - 1][:first.col_offset]
    if prefix.strip():
        raise ValueError(f"{file}: {qualname} has its body on the def line; put it on its own lines")
    end = node.end_lineno
    if _has_docstring(node):
        return (first.end_lineno if len(node.body) > 1 else end), end, prefix
    start = first.lineno - 1
    while start - 1 > node.lineno - 1 and (not lines[start - 1].strip() or lines[start - 1].lstrip().startswith("#")):
        start -= 1
    return start, end, prefix


def _is_blanked(node):
    """True when the body (after the docstring) is a single ``raise NotImplementedError(...)``."""
    body = node.body[1:] if _has_docstring(node) else node.body
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    exc = body[0].exc.func if isinstance(body[0].exc, ast.Call) else body[0].exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def _raise_lines(indent, hint):
    """``raise NotImplementedError("hint")`` at ``indent``, wrapped over several lines if it exceeds 120 columns."""
    line = f"{indent}raise NotImplementedError({json.dumps(hint)})"
    if len(line) <= 120:
        return [line]
    chunks = textwrap.wrap(hint, width=120 - len(indent) - 8, drop_whitespace=False, break_on_hyphens=False)
    return [f"{indent}raise NotImplementedError(", *(f"{indent}    {json.dumps(c)}" for c in chunks), f"{indent})"]


def _rewrite(source, file, replacements):
    """``source`` with the bodies of the named functions replaced: {qualname: fn(indent) -> list of lines}."""
    lines = source.splitlines()
    tree = ast.parse(source, filename=file)
    spans = []
    for qualname, make_lines in replacements.items():
        start, end, indent = _body_span(lines, _find_def(tree, qualname, file), file, qualname)
        spans.append((start, end, make_lines(indent)))
    for start, end, new in sorted(spans, key=lambda s: s[0], reverse=True):  # bottom up: earlier spans stay valid
        lines[start:end] = new
    return "\n".join(lines) + "\n"


def _solution_body(source, file, qualname):
    """The solution's body lines for ``qualname`` (after the docstring) and their indentation."""
    lines = source.splitlines()
    start, end, indent = _body_span(lines, _find_def(ast.parse(source), qualname, file), file, qualname)
    return lines[start:end], indent


def blank_source(source, file, entries=MANIFEST):
    """A module's source with the bodies of every manifest target in ``file`` replaced by the entry's hint."""
    replacements = {q: (lambda indent, h=e.hint: _raise_lines(indent, h))
                    for e in entries for f, q in e.targets if f == file}
    return _rewrite(source, file, replacements) if replacements else source


def blanked_functions(package_dir=PACKAGE_DIR, entries=MANIFEST):
    """Ids of the entries whose function (or a helper it blanks) raises NotImplementedError in ``package_dir``."""
    package_dir, found = Path(package_dir), []
    for entry in entries:
        for file, qualname in entry.targets:
            path = package_dir / file
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: {package_dir} is not a complete tinyvae package")
            if _is_blanked(_find_def(ast.parse(path.read_text(encoding="utf-8")), qualname, file)):
                found.append(entry.id)
                break
    return found


def paste_solution(copy_dir, function_id, package_dir=PACKAGE_DIR):
    """Put the solution of one manifest function (and of the helpers it blanks) back into a student copy.

    ``copy_dir`` holds the copy's ``tinyvae/``. This is how the tests prove that each row grades its own function:
    the pasted row passes and no other. Returns the files changed.
    """
    entry = _entry(function_id)
    by_file = {}
    for file, qualname in entry.targets:
        by_file.setdefault(file, []).append(qualname)
    changed = []
    for file, qualnames in by_file.items():
        solution = (Path(package_dir) / file).read_text(encoding="utf-8")
        target = Path(copy_dir) / "tinyvae" / file
        bodies = {}
        for qualname in qualnames:
            body, _ = _solution_body(solution, file, qualname)
            text = textwrap.dedent("\n".join(line if line.strip() else "" for line in body))
            bodies[qualname] = lambda indent, t=text: textwrap.indent(t, indent).splitlines()
        _write_text(target, _rewrite(target.read_text(encoding="utf-8"), file, bodies))
        changed.append(target)
    return changed


def _entry(function_id):
    for entry in MANIFEST:
        if entry.id == function_id:
            return entry
    raise ValueError(f"unknown function {function_id!r}: expected one of {', '.join(e.id for e in MANIFEST)}")


def _write_text(path, text):
    """Write through a temporary file in the same folder, then os.replace: no half-written module on a crash."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------------------
# make: the student copy
# ---------------------------------------------------------------------------------------------------------------

def _notebooks_dir():
    """The repository's notebooks/ beside the package, when running from a source checkout (else None)."""
    folder = PACKAGE_DIR.parent / "notebooks"
    return folder if folder.is_dir() else None


def _readme(notebooks):
    rows = "\n".join(
        f"| `{e.id}`{''.join(f' and `{q}`' for _, q in e.also_blanks)} | `tinyvae/{e.file}` | {e.points} | "
        + e.hint.replace("|", "\\|") + " |"
        for e in MANIFEST)
    nb = ("\nThe notebooks in `notebooks/` use these functions: run them once your gradients pass (start Jupyter "
          "from this folder with `PYTHONPATH=$PWD jupyter lab` so that `import tinyvae` is your copy).\n"
          if notebooks else "")
    return f"""# tinyvae assignment: the backward passes

This folder holds a copy of tinyvae in which the functions below raise `NotImplementedError`. Write each body
(the docstring above it and the error's message give the math) so that it computes the exact gradient; keep the
signatures and leave the rest of the code as it is. Where a row names two functions, write both: the second is a
helper whose code would have given the first away. {sum(e.points for e in MANIFEST)} points in all.

| function | file | points | what to write |
|---|---|---|---|
{rows}

Conventions: arrays are batches (N, D); `backward` ADDS parameter gradients into `.grad` and returns the gradient
with respect to the input; losses are summed over features and averaged over the batch. Array code goes through
`xp = B.get_xp()` (the modules already import `backend as B`).

## Check your work

From this folder (so that `import tinyvae` is your copy):

    python -m tinyvae gradcheck

compares every hand-written gradient with centered finite differences in float64; a correct backward pass
agrees to about 1e-10, a wrong one is off by far more than the 1e-7 threshold.
{nb}
## Grading

Your instructor runs `tinyvae assignment grade <this folder>` with the solution installed. Each function is graded
on its own (every other function is replaced by the solution while it is checked) by float64 finite differences
and the formulas, on small odd shapes including a batch of one; a row passes when every relative error is below
1e-7. Your copy must still import: a syntax error anywhere fails every row.
"""


def make(out, overwrite=False):
    """Write a student copy to ``out``: ``out/tinyvae`` with every MANIFEST body blanked, ``out/notebooks`` (from a
    source checkout), ``out/README.md``. Returns the folder.

    A non-empty ``out`` is refused unless ``overwrite`` is True and it is a copy made earlier by ``make`` (then it
    is replaced as a whole). The copy is built in a temporary folder beside ``out`` and renamed into place.
    """
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise ValueError(f"assignment make: {out} exists and is not a folder")
    if out.resolve().is_relative_to(PACKAGE_DIR):
        raise ValueError(f"assignment make: {out} is inside the package being copied ({PACKAGE_DIR})")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"assignment make: {out} is not empty; choose a new folder or pass --overwrite "
                             "to replace a copy made earlier")
        if not (out / MARKER).is_file():
            raise ValueError(f"assignment make: {out} is not empty and was not made by `tinyvae assignment make` "
                             f"(no {MARKER}); refusing to delete it: choose a new or empty folder")
    blanked = blanked_functions()
    if blanked:
        raise ValueError(f"assignment make: the tinyvae at {PACKAGE_DIR} is itself a student copy ({blanked[0]} "
                         "raises NotImplementedError); make the assignment from the solution")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _build(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp made it private; the copy is meant to be handed out
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, trash / out.name)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _student_ignore(folder, names):
    """What copytree leaves out of the student package: caches and the instructor-only package (grader, manifest)."""
    skip = set(shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*.tmp")(folder, names))
    if Path(folder).resolve() == PACKAGE_DIR:
        skip |= {"instructor"} & set(names)
    return skip


def _build(folder):
    """Fill ``folder`` with the student copy."""
    pkg = folder / "tinyvae"
    shutil.copytree(PACKAGE_DIR, pkg, ignore=_student_ignore)
    assert not (pkg / "instructor").exists()
    for file in sorted({f for e in MANIFEST for f, _ in e.targets}):
        path = pkg / file
        new = blank_source(path.read_text(encoding="utf-8"), file)
        compile(new, str(path), "exec")  # a rewrite that breaks the module is a bug here, never the student's
        path.write_text(new, encoding="utf-8")
    missing = sorted({e.id for e in MANIFEST} - set(blanked_functions(pkg)))
    if missing:
        raise RuntimeError(f"assignment make: failed to blank {', '.join(missing)}")
    notebooks = sorted(_notebooks_dir().glob("*.ipynb")) if _notebooks_dir() else []
    if notebooks:
        (folder / "notebooks").mkdir()
        for nb in notebooks:
            shutil.copy2(nb, folder / "notebooks" / nb.name)
    (folder / "README.md").write_text(_readme(notebooks), encoding="utf-8")
    from .. import __version__
    marker = {"tinyvae": __version__, "functions": {e.id: e.points for e in MANIFEST}}
    (folder / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------
# grade: run the checks in a subprocess, build the score table
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class GradeRow:
    """One graded function: passed when every check's relative error is below the threshold.

    ``error`` is the worst relative error seen (None when the function raised); ``checks`` lists (name, error).
    """

    function: str
    points: int
    passed: bool
    error: float | None = None
    note: str = ""
    checks: list = field(default_factory=list)

    @property
    def earned(self):
        return self.points if self.passed else 0


@dataclass
class GradeReport:
    """The rows of a grading run; ``str()`` is the score table with a total line."""

    path: Path
    rows: list
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
        rows = [{**asdict(r), "earned": r.earned} for r in self.rows]
        for r in rows:  # JSON has no inf/nan: spell them out
            if r["error"] is not None and not math.isfinite(r["error"]):
                r["error"] = str(r["error"])
            r["checks"] = [[n, e if math.isfinite(e) else str(e)] for n, e in r["checks"]]
        return {"path": str(self.path), "score": self.score, "total": self.total, "passed": self.passed,
                "threshold": self.threshold, "rows": rows}

    def __str__(self):
        width = max([len(r.function) for r in self.rows] + [len("function")])
        head = f"{'function':<{width}}  {'points':>6}  {'earned':>6}  result  {'rel. error':>10}  note"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            err = "-" if r.error is None else f"{r.error:.1e}"
            lines.append(f"{r.function:<{width}}  {r.points:>6}  {r.earned:>6}  {'pass' if r.passed else 'FAIL':<6}"
                         f"  {err:>10}  {r.note}".rstrip())
        lines.append("-" * len(head))
        lines.append(f"{'total':<{width}}  {self.total:>6}  {self.score:>6}  {sum(r.passed for r in self.rows)} of "
                     f"{len(self.rows)} passed (a check passes below relative error {self.threshold:.0e})")
        return "\n".join(lines)


def _student_root(path):
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


def grade(path, timeout=120, function_timeout=20):
    """Grade the student copy in ``path`` (the folder holding its ``tinyvae/``); returns a GradeReport.

    ``timeout`` bounds the whole run in seconds; ``function_timeout`` bounds each function's checks (where the
    platform has SIGALRM), so one endless loop fails its own row and the others are still graded.
    """
    root = _student_root(path)
    if not timeout > 0 or not function_timeout > 0:
        raise ValueError(f"assignment grade: timeouts must be positive, got {timeout!r} and {function_timeout!r}")
    blanked = blanked_functions()
    if blanked:
        raise ValueError(f"assignment grade: the tinyvae running the grader ({PACKAGE_DIR}) is a student copy "
                         f"({blanked[0]} raises NotImplementedError); grade with the solution installed. Students "
                         "check their own work with: python -m tinyvae gradcheck")
    env = dict(os.environ, TINYVAE_BACKEND="numpy", TINYVAE_DTYPE="float32", PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])]))
    with tempfile.TemporaryDirectory(prefix="tinyvae-grade-") as tmp:
        results, log = Path(tmp) / "results.jsonl", Path(tmp) / "output.txt"
        cmd = [sys.executable, str(INSTRUCTOR_DIR / "runner.py"), "--student", str(root), "--out", str(results),
               "--function-timeout", str(float(function_timeout))]
        with open(log, "w") as output:
            proc = subprocess.Popen(cmd, env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=output,
                                    stderr=subprocess.STDOUT)
            try:
                rc, timed_out = proc.wait(timeout=timeout), False
            except subprocess.TimeoutExpired:
                proc.kill()
                rc, timed_out = proc.wait(), True
        records = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
    for rec in records:
        if rec.get("kind") == "fatal":
            raise ValueError(f"assignment grade: {rec['message']}")
    done = {rec["function"]: rec for rec in records if rec.get("kind") == "row"}
    rows = []
    for entry in MANIFEST:
        rec = done.get(entry.id)
        if rec is None:
            why = (f"not graded: the run passed its {timeout:g} s timeout" if timed_out else
                   f"not graded: the grader stopped (exit code {rc}){': ' + tail[0][:80] if tail else ''}")
            rows.append(GradeRow(entry.id, entry.points, False, None, why))
        else:
            rows.append(GradeRow(entry.id, entry.points, bool(rec["passed"]), rec["error"], rec["note"],
                                 [tuple(c) for c in rec["checks"]]))
    return GradeReport(root, rows)


# ---------------------------------------------------------------------------------------------------------------
# The command line: `tinyvae assignment make OUT`, `tinyvae assignment grade PATH`
# ---------------------------------------------------------------------------------------------------------------

def cmd_make(args):
    out = make(args.out, overwrite=args.overwrite)
    print(f"wrote a student copy of tinyvae to {out}: {len(MANIFEST)} functions "
          f"({sum(e.points for e in MANIFEST)} points) raise NotImplementedError")
    for entry in MANIFEST:
        extra = f" (also {', '.join(q for _, q in entry.also_blanks)})" if entry.also_blanks else ""
        print(f"  {entry.file:<15} {entry.qualname}{extra}: {entry.points} points")
    print(f"students: see {out / 'README.md'}; grade with: tinyvae assignment grade {out}")
    return 0


def cmd_grade(args):
    report = grade(args.path, timeout=args.timeout)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(f"tinyvae assignment grade: {report.path} against the solution in {PACKAGE_DIR}")
        print(report)
    return 0 if report.passed else 1


def add_assignment_commands(subparsers):
    """Add ``assignment make OUT [--overwrite]`` and ``assignment grade PATH [--timeout S] [--json]``."""
    p = subparsers.add_parser("assignment", help="make a student copy with the backward passes blanked, or grade one",
                              description=__doc__.split("\n\n")[0])
    actions = p.add_subparsers(dest="assignment_action", metavar="ACTION", parser_class=type(p))
    m = actions.add_parser("make", help="write a student copy of the package and notebooks to OUT")
    m.add_argument("out", metavar="OUT", help="the folder to create (new or empty)")
    m.add_argument("--overwrite", action="store_true", help="replace OUT if it is a copy made earlier by make")
    g = actions.add_parser("grade", help="grade the student copy in PATH: a score table, exit 0 when all pass")
    g.add_argument("path", metavar="PATH", help="the folder holding the student's tinyvae/")
    g.add_argument("--timeout", type=float, default=120.0, help="seconds for the whole run (default 120)")
    g.add_argument("--json", action="store_true", help="print the report as JSON instead of the table")

    def dispatch(args):
        if args.assignment_action == "make":
            return cmd_make(args)
        if args.assignment_action == "grade":
            return cmd_grade(args)
        p.print_help(sys.stderr)
        return 2

    p.set_defaults(func=dispatch)
    return p
