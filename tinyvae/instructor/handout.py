"""The student handout: a copy of tinyvae with the graded bodies blanked, the fast twins delegating to the plain
functions, no instructor code, the notebooks' solution regions removed, a README and a requirements.txt.

    tinyvae assignment make hw/ [--config course.toml]

For each chosen manifest entry: its body and its helpers' bodies (``also_blanks``) become
``raise NotImplementedError(hint)`` (the def line and the docstring with the math stay); each ``_fast`` twin's body
becomes a call to the plain function (so a student writes the formula once and the models, which call the twins,
use it); files in ``REPLACED_FILES`` (the CuPy kernels, which restate the formulas) are replaced whole. Notebook
cells between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (code) or ``<!-- BEGIN SOLUTION -->`` and
``<!-- END SOLUTION -->`` (markdown) are replaced by an exercise prompt.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import tempfile
import textwrap
from pathlib import Path

from .source import PACKAGE_DIR, blanked_functions, find_def, has_docstring, is_blanked  # noqa: F401
from .manifest import (
    FORMULAS,
    MANIFEST,
    MARKER,
    RECORD,
    REPLACED_FILES,
    RESTATES,
    config_dict,
    entry as _entry,
    normalise,
)

INSTRUCTOR_DIR = Path(__file__).resolve().parent  # never copied into a student folder
STUDENT_FILES = INSTRUCTOR_DIR / "student"  # selfcheck.py and submit.py: copied into the handout's package
SELFCHECK_SEED = 20260101  # the self-check's cases come from another stream than any grading run's (visible=True)


# ---------------------------------------------------------------------------------------------------------------
# Finding and rewriting function bodies with ast
# ---------------------------------------------------------------------------------------------------------------

def _body_span(lines, node, file, qualname):
    """(start, end, indent): lines[start:end] is the body after the docstring (with the comments before its first
    statement, which may explain the answer); indent is the body's indentation."""
    first = node.body[0]
    prefix = lines[first.lineno - 1][:first.col_offset]
    if prefix.strip():
        raise ValueError(f"{file}: {qualname} has its body on the def line; put it on its own lines")
    end = node.end_lineno
    if has_docstring(node):
        return (first.end_lineno if len(node.body) > 1 else end), end, prefix
    start = first.lineno - 1
    while start - 1 > node.lineno - 1 and (not lines[start - 1].strip() or lines[start - 1].lstrip().startswith("#")):
        start -= 1
    return start, end, prefix


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
        start, end, indent = _body_span(lines, find_def(tree, qualname, file), file, qualname)
        spans.append((start, end, make_lines(indent)))
    for start, end, new in sorted(spans, key=lambda s: s[0], reverse=True):  # bottom up: earlier spans stay valid
        lines[start:end] = new
    return "\n".join(lines) + "\n"


def _solution_body(source, file, qualname):
    """The solution's body lines for ``qualname`` (after the docstring) and their indentation."""
    lines = source.splitlines()
    start, end, indent = _body_span(lines, find_def(ast.parse(source), qualname, file), file, qualname)
    return lines[start:end], indent


HIDDEN_HINT = "not part of the assignment: the _fast twins that called this now call your plain functions"
RESTATED_HINT = "not available in this handout: this code restates a function of the assignment"


# ---------------------------------------------------------------------------------------------------------------
# Hint levels short and none: no docstring, comment or other code may still give the answer away
# ---------------------------------------------------------------------------------------------------------------

def _patterns(entries):
    return [(e.id, p) for e in entries if e.hint_level != "full" for p in FORMULAS.get(e.id, ())]


def _hits(text, patterns):
    n = normalise(text)
    return [(i, p) for i, p in patterns if p in n]


def _scrub_text(text, patterns):
    """A docstring's text without the sentences that hold a formula (sentences end with '.' and one or two
    spaces, or a line end)."""
    out = []
    for line in text.split("\n"):
        parts = re.split(r"(?<=[.;:])(\s{1,2})(?=\S)", line)
        kept = "".join(part for k, part in enumerate(parts)
                       if k % 2 == 1 or not _hits(part, patterns))
        kept = re.sub(r"\s*Backward:\s*$", "", kept)  # a label whose formula went
        if kept.strip() or not line.strip():
            out.append(kept.rstrip())
    text = "\n".join(out).strip("\n")
    return text if text.strip() else "Part of the assignment: see README.md."


def scrub_source(source, file, entries):
    """``source`` with every docstring sentence and comment that holds a formula of an entry at hint short or none
    removed (a docstring left empty says "Part of the assignment")."""
    patterns = _patterns(entries)
    if not patterns:
        return source
    lines = source.splitlines()
    edits = []  # (start line, end line, new lines), 0-based, end exclusive
    for node in ast.walk(ast.parse(source, filename=file)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body \
                and has_docstring(node):
            doc = node.body[0]
            text = doc.value.value
            if not _hits(text, patterns):
                continue
            indent = lines[doc.lineno - 1][:doc.col_offset]
            new = _scrub_text(text, patterns).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
            body = new.split("\n")
            body[0] = f'{indent}"""{body[0]}'
            body[-1] = f'{body[-1]}"""' if len(body) > 1 or len(body[0]) + 3 <= 120 else f'{body[-1]}\n{indent}"""'
            edits.append((doc.lineno - 1, doc.end_lineno, "\n".join(body).split("\n")))
    for start, end, new in sorted(edits, key=lambda e: e[0], reverse=True):
        lines[start:end] = new
    out = []
    for tok_line in "\n".join(lines).split("\n"):
        code, hash_, comment = tok_line.partition("  # ") if "  # " in tok_line else (tok_line, "", "")
        stripped = tok_line.lstrip()
        if stripped.startswith("#") and _hits(stripped, patterns):
            continue  # a whole-line comment that restates the answer
        if hash_ and _hits(comment, patterns):
            tok_line = code.rstrip()
        out.append(tok_line)
    return "\n".join(out) + "\n"


def surviving_formulas(package_dir, entries):
    """["file:line: id (fragment)", ...]: every formula of an entry at hint short or none still in the copy."""
    patterns, found = _patterns(entries), []
    for path in sorted(Path(package_dir).rglob("*.py")):
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for function_id, fragment in _hits(line, patterns):
                found.append(f"{path.relative_to(package_dir)}:{no}: {function_id} ({fragment})")
    return found


def blank_source(source, file, entries=MANIFEST):
    """A module's source with every chosen target in ``file`` blanked (the entry's hint at its level), every
    fast twin in ``file`` rewritten as a call to its plain function, and the helpers only those twins called
    (``Entry.hidden``) reduced to a raise."""
    replacements = {q: (lambda indent, h=e.shown_hint: _raise_lines(indent, h))
                    for e in entries for f, q in e.targets if f == file}
    replacements.update({q: (lambda indent: _raise_lines(indent, HIDDEN_HINT)) for e in entries for f, q in e.hidden
                         if f == file})
    replacements.update({q: (lambda indent: _raise_lines(indent, RESTATED_HINT)) for e in entries
                         if e.hint_level != "full" for f, q in RESTATES.get(e.id, ()) if f == file})
    tree = None
    for e in entries:
        for twin in e.twins:
            if twin.file == file:
                tree = tree or ast.parse(source, filename=file)
                replacements[twin.qualname] = _delegation(find_def(tree, twin.qualname, file), twin)
    return _rewrite(source, file, replacements) if replacements else source


def _delegation(node, twin):
    """Lines for a twin's body that call the plain function with the twin's own arguments (keyword-only extras
    the plain one lacks are dropped), copying the results into the in-place arguments where the twin updates them."""
    args = [a.arg for a in (*node.args.posonlyargs, *node.args.args)]
    call = f"{twin.plain}({', '.join(args)})"

    def lines(indent):
        if twin.body:
            return [f"{indent}# the fast form is not part of the assignment: it runs your plain function",
                    *textwrap.indent(twin.body, indent).splitlines()]
        if not twin.inplace:
            return [f"{indent}# the fast form is not part of the assignment: it runs your plain function", f"{indent}return {call}"]
        names = ", ".join(f"_{n}" for n in twin.inplace)
        out = [f"{indent}# the fast form is not part of the assignment: your plain function, copied in place",
               f"{indent}{names} = {call}"]
        out += [f"{indent}{n}[...] = _{n}" for n in twin.inplace]
        return out + [f"{indent}return {', '.join(twin.inplace)}"]
    return lines


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


SOLUTION_MARKERS = (("### BEGIN SOLUTION", "### END SOLUTION"), ("<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"))
EXERCISE = {"code": "# YOUR CODE HERE: work this out by hand, then run the check below",
            "markdown": "*Your derivation here.*"}


def strip_solutions(text, kind):
    """``text`` (a cell's source) with every marked solution region replaced by the exercise prompt."""
    lines, out, inside = text.splitlines(keepends=True), [], False
    for line in lines:
        marker = line.strip()
        if any(marker == begin for begin, _ in SOLUTION_MARKERS):
            if inside:
                raise ValueError("a solution region opens inside another")
            inside = True
            indent = line[:len(line) - len(line.lstrip())]
            out.append(indent + EXERCISE[kind] + "\n")
        elif any(marker == end for _, end in SOLUTION_MARKERS):
            if not inside:
                raise ValueError("a solution region closes that never opened")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("a solution region is never closed")
    return "".join(out)


def handout_notebook(path, dest):
    """Copy a notebook with its solution regions stripped and its outputs cleared."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        source = "".join(cell.get("source", []))
        try:
            cell["source"] = strip_solutions(source, "markdown" if cell.get("cell_type") == "markdown" else "code")
        except ValueError as err:
            raise ValueError(f"assignment make: {Path(path).name}: {err}") from None
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    Path(dest).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


REQUIREMENTS = "numpy>=1.24\nmatplotlib>=3.6\ntqdm>=4.60\n"


def _readme(entries, notebooks):
    rows = "\n".join(
        f"| `{e.id}`{''.join(f' and `{q}`' for _, q in e.also_blanks)} | `tinyvae/{e.file}` | {e.points} | "
        + e.shown_hint.replace("|", "\\|") + " |"
        for e in entries)
    nb = ("\nThe notebooks in `notebooks/` use these functions and leave some derivations to you (cells that say "
          "YOUR CODE HERE, each followed by a check): run them once your gradients pass (start Jupyter from this "
          "folder with `PYTHONPATH=$PWD jupyter lab` so that `import tinyvae` is your copy).\n" if notebooks else "")
    return f"""# tinyvae assignment: the backward passes

This folder holds a copy of tinyvae in which the functions below raise `NotImplementedError`. Write each body
(the docstring above it and the error's message give the math) so that it computes the exact gradient; keep the
signatures and leave the rest of the code as it is. Where a row names two functions, write both: the second is a
helper the first uses. {sum(e.points for e in entries)} points in all.

| function | file | points | what to write |
|---|---|---|---|
{rows}

Conventions: arrays are batches (N, D); `backward` ADDS parameter gradients into `.grad` (never assigns, never
zeroes) and returns the gradient with respect to the input; losses are summed over features and averaged over the
batch. Array code goes through `xp = B.get_xp()` (the modules already import `backend as B`). The `*_fast`
functions call your plain ones in this copy: you write each formula once.

## Setup

Make the Python environment OUTSIDE this folder (so that it never ends up in what you hand in), e.g.:

    python -m venv ../tinyvae-env && . ../tinyvae-env/bin/activate && pip install -r requirements.txt

## Check your work

From this folder (so that `import tinyvae` is your copy):

    python -m tinyvae.selfcheck

runs each function above the way the grader does, on cases of the grader's own kinds (odd shapes, a batch of one,
a square layer, `input_grad = False`, `.grad` already holding values so that backward must ADD, logits of +-1e4,
Adam with eps and weight decay), and prints one row per graded function with its points. The grader uses other
values of the same kinds, so "all pass" here means it will say the same. `python -m tinyvae gradcheck` compares
your gradients with centered finite differences in float64, number by number, then runs the same self-check.
{nb}
## What to submit

Exactly the package, as one zip:

    python -m tinyvae.submit            # writes submission.zip here: tinyvae/ and nothing else

and upload `submission.zip`. Do not zip the whole folder by hand (a virtual environment or the notebooks' data
inside it makes the zip too large to grade); do not rename `tinyvae/` or its files.

## Grading

Your submission is graded on inputs you have not seen (fresh for each grading run), one function at a time: while
one function is checked, the others are replaced by correct ones, so one mistake costs one row. Cases include
a batch of one, a square layer, `input_grad = False` and parameters whose `.grad` already holds values (backward
must add to them). Your code runs in a separate, isolated process; a row passes when every relative error is
below 1e-7. Your copy must still import: a syntax error anywhere fails every row.
"""


def make(out, overwrite=False, entries=None):
    """Write a student copy to ``out``: ``out/tinyvae`` with every chosen body blanked, ``out/notebooks`` (from a
    source checkout, solutions stripped), ``out/README.md``, ``out/requirements.txt``. Returns the folder.

    A non-empty ``out`` is refused unless ``overwrite`` is True and it is a copy made earlier by ``make`` (then it
    is replaced as a whole). The copy is built in a temporary folder beside ``out`` and renamed into place.
    """
    entries = tuple(entries or MANIFEST)
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
        _build(tmp, entries)
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
    skip = set(shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*.tmp", ".*.restore")(folder, names))
    if Path(folder).resolve() == PACKAGE_DIR:
        skip |= {"instructor"} & set(names)
    return skip


def _build(folder, entries):
    """Fill ``folder`` with the student copy."""
    pkg = folder / "tinyvae"
    shutil.copytree(PACKAGE_DIR, pkg, ignore=_student_ignore)
    assert not (pkg / "instructor").exists()
    files = ({f for e in entries for f, _ in e.targets} | {t.file for e in entries for t in e.twins}
             | {f for e in entries for f, _ in e.hidden})
    files |= {f for e in entries if e.hint_level != "full" for f, _ in RESTATES.get(e.id, ())}
    for file in sorted(files):
        path = pkg / file
        new = blank_source(path.read_text(encoding="utf-8"), file, entries)
        compile(new, str(path), "exec")  # a rewrite that breaks the module is a bug here, never the student's
        path.write_text(new, encoding="utf-8")
    for file, text in REPLACED_FILES.items():
        if (pkg / file).exists():
            (pkg / file).write_text(text, encoding="utf-8")
    _plain_by_default(pkg / "backend.py")
    if _patterns(entries):  # hint short or none somewhere: no docstring or comment may still give it away
        for path in sorted(pkg.rglob("*.py")):
            old = path.read_text(encoding="utf-8")
            new = scrub_source(old, path.name, entries)
            if new != old:
                compile(new, str(path), "exec")
                path.write_text(new, encoding="utf-8")
        left = surviving_formulas(pkg, entries)
        if left:
            raise RuntimeError("assignment make: formulas of functions handed out with hint short or none survive "
                               "(add their code to manifest.RESTATES): " + "; ".join(left[:8]))
    missing = sorted({e.id for e in entries} - set(blanked_functions(pkg, entries)))
    if missing:
        raise RuntimeError(f"assignment make: failed to blank {', '.join(missing)}")
    _add_student_tools(pkg, entries)
    notebooks = sorted(_notebooks_dir().glob("*.ipynb")) if _notebooks_dir() else []
    if notebooks:
        (folder / "notebooks").mkdir()
        for nb in notebooks:
            handout_notebook(nb, folder / "notebooks" / nb.name)
    (folder / "README.md").write_text(_readme(entries, notebooks), encoding="utf-8")
    (folder / "requirements.txt").write_text(REQUIREMENTS, encoding="utf-8")
    from .. import __version__
    marker = json.dumps({"tinyvae": __version__, **config_dict(entries)}, indent=1) + "\n"
    (folder / MARKER).write_text(marker, encoding="utf-8")
    (pkg / RECORD).write_text(marker, encoding="utf-8")  # travels with every submission: the grader compares it


PLAIN_DEFAULT = "    plain = False "  # backend._State's default, as written there


def _plain_by_default(path):
    """A handout has no CuPy kernels (``REPLACED_FILES``), so its backend starts in plain mode: on every backend,
    CuPy included, the models then run the student's plain functions and no fused path asks for a kernel."""
    old = path.read_text(encoding="utf-8")
    new = old.replace(PLAIN_DEFAULT, PLAIN_DEFAULT.replace("False", "True "), 1)
    if new == old:
        raise RuntimeError(f"assignment make: {path.name} no longer sets the plain-mode default ({PLAIN_DEFAULT.strip()})")
    path.write_text(new, encoding="utf-8")


def _add_student_tools(pkg, entries):
    """The self-check (``python -m tinyvae.selfcheck``: the grader's own scenarios on cases of the grader's kinds,
    from another stream, with the solution's answers) and ``python -m tinyvae.submit`` (the zip to hand in)."""
    from . import grading, runner
    shutil.copyfile(runner.__file__, pkg / "_runner.py")
    for name in ("selfcheck.py", "submit.py"):
        shutil.copyfile(STUDENT_FILES / name, pkg / name)
    seed, plans = grading.plan(entries, SELFCHECK_SEED, visible=True)
    owner = {q: e.id for e in entries for _, q in e.stubbable}
    functions = []
    for entry, drawn, expected, recorded, _stubs in plans:
        uses = sorted({owner[q] for calls in recorded for q, *_ in calls if q in owner} - {entry.id})
        functions.append({"id": entry.id, "points": entry.points, "scenario": entry.scenario, "seed": seed,
                          "uses": uses, "cases": drawn, "expected": expected})
    (pkg / "selfcheck_cases.bin").write_bytes(runner.pack({"kind": "selfcheck"}, functions))
