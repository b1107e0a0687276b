"""The assignment tooling: `make` blanks exactly the manifest's bodies, `grade` scores each function on its own.

The teeth: a fresh copy fails every row, the solution passes every row, pasting one solution back passes exactly
that row, and plausible wrong answers fail their row with the relative error shown.
"""
import argparse
import ast
import importlib.util
import inspect
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from tinyvae.instructor import assignment
from tinyvae.instructor import runner as _grader
from tinyvae.instructor.assignment import MANIFEST, PACKAGE_DIR, grade, make, paste_solution

pytestmark = pytest.mark.backends("numpy")  # host-side tooling; the grader runs its own NumPy subprocess

IDS = [e.id for e in MANIFEST]
SOLUTION_ROOT = PACKAGE_DIR.parent


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    return make(tmp_path_factory.mktemp("assignment") / "hw")


@pytest.fixture(scope="module")
def fresh_report(fresh):
    return grade(fresh)


def _copy(fresh, tmp_path, name="copy"):
    shutil.copytree(fresh, tmp_path / name)
    return tmp_path / name


def _set_body(root, file, qualname, body):
    """Replace the body (after the docstring) of ``qualname`` in the copy with ``body`` (dedented source)."""
    path = root / "tinyvae" / file
    lines = textwrap.dedent(body).strip("\n")
    new = assignment._rewrite(path.read_text(), file, {qualname: lambda ind: textwrap.indent(lines, ind).splitlines()})
    path.write_text(new)


def _solved(fresh, tmp_path, name="solved"):
    """A copy with every solution pasted back."""
    root = _copy(fresh, tmp_path, name)
    for function_id in IDS:
        paste_solution(root, function_id)
    return root


def _def(path, qualname):
    return assignment._find_def(ast.parse(path.read_text()), qualname, path.name)


def test_manifest_is_consistent_with_the_solution_and_the_grader():
    assert sum(e.points for e in MANIFEST) == 100
    assert len(set(IDS)) == len(IDS)
    assert set(_grader.CHECKS) == set(IDS)
    assert all(e.hint and "\n" not in e.hint for e in MANIFEST)
    assert ("optim.py", "adam_reference") in assignment._entry("Adam.step").also_blanks
    for entry in MANIFEST:  # every target exists in the solution and has a real body
        for file, qualname in entry.targets:
            assert not assignment._is_blanked(_def(PACKAGE_DIR / file, qualname)), qualname
    assert assignment.blanked_functions() == []


def test_make_blanks_each_listed_body_keeping_def_and_docstring(fresh):
    assert assignment.blanked_functions(fresh / "tinyvae") == IDS
    for entry in MANIFEST:
        for file, qualname in entry.targets:
            node, solution = _def(fresh / "tinyvae" / file, qualname), _def(PACKAGE_DIR / file, qualname)
            assert ast.get_docstring(node) == ast.get_docstring(solution)
            assert ast.dump(node.args) == ast.dump(solution.args)
            body = node.body[1:] if assignment._has_docstring(node) else node.body
            assert len(body) == 1 and isinstance(body[0], ast.Raise)
            assert body[0].exc.func.id == "NotImplementedError"
            assert ast.literal_eval(body[0].exc.args[0]) == entry.hint
    for line in (fresh / "tinyvae" / "layers.py").read_text().splitlines():
        assert len(line) <= 120


def test_the_copy_imports_and_each_blanked_function_raises_its_hint(fresh):
    name = "tinyvae_student_copy"
    spec = importlib.util.spec_from_file_location(name, fresh / "tinyvae" / "__init__.py",
                                                  submodule_search_locations=[str(fresh / "tinyvae")])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    try:
        spec.loader.exec_module(package)
        for entry in MANIFEST:
            for file, qualname in entry.targets:
                owner = sys.modules[f"{name}.{file[:-3]}"]
                *path, attr = qualname.split(".")
                for part in path:
                    owner = getattr(owner, part)
                fn = vars(owner)[attr]
                required = [p for p in inspect.signature(fn).parameters.values() if p.default is p.empty]
                with pytest.raises(NotImplementedError) as info:
                    fn(*[None] * len(required))
                assert info.value.args == (entry.hint,)
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


def test_the_copy_changes_nothing_but_the_listed_bodies(fresh):
    targets = {}
    for entry in MANIFEST:
        for file, qualname in entry.targets:
            targets.setdefault(file, []).append(qualname)
    source_files = sorted(p.relative_to(PACKAGE_DIR) for p in PACKAGE_DIR.rglob("*")
                          if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
                          and "instructor" not in p.relative_to(PACKAGE_DIR).parts)
    copy_files = sorted(p.relative_to(fresh / "tinyvae") for p in (fresh / "tinyvae").rglob("*") if p.is_file())
    assert copy_files == source_files
    for rel in source_files:
        original, copied = (PACKAGE_DIR / rel).read_bytes(), (fresh / "tinyvae" / rel).read_bytes()
        if str(rel) not in targets:
            assert copied == original, rel
            continue
        # Outside the listed functions every line is the same; inside, the def line and docstring are kept.
        kept = []
        for path in (PACKAGE_DIR / rel, fresh / "tinyvae" / rel):
            lines = path.read_text().splitlines()
            for qualname in sorted(targets[str(rel)], key=lambda q: -_def(path, q).lineno):
                node = _def(path, qualname)
                start, _, _ = assignment._body_span(lines, node, str(rel), qualname)
                lines[start:node.end_lineno] = ["<body>"]
            kept.append(lines)
        assert kept[0] == kept[1], rel
    notebooks = sorted(p.name for p in (SOLUTION_ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(p.name for p in (fresh / "notebooks").glob("*.ipynb")) == notebooks
    readme = (fresh / "README.md").read_text()
    assert all(f"`{i}`" in readme for i in IDS) and "python -m tinyvae gradcheck" in readme
    assert json.loads((fresh / assignment.MARKER).read_text())["functions"] == {e.id: e.points for e in MANIFEST}


def test_a_fresh_copy_fails_every_row(fresh_report):
    report = fresh_report
    assert [r.function for r in report.rows] == IDS
    assert not report.passed and report.score == 0 and report.total == 100
    for row in report.rows:
        assert not row.passed and row.earned == 0 and row.error is None and row.note == "NotImplementedError"
    table = str(report)
    assert table.count("FAIL") == len(IDS) and table.count("NotImplementedError") == len(IDS)
    assert table.splitlines()[-1].split()[:3] == ["total", "100", "0"]


def test_the_solution_passes_every_row():
    report = grade(SOLUTION_ROOT)
    assert report.passed and report.score == 100, str(report)
    for row in report.rows:
        assert row.passed and row.earned == row.points and row.note == ""
        assert row.checks and all(math.isfinite(e) and e < 1e-7 for _, e in row.checks)
        assert row.error == max(e for _, e in row.checks)
    assert str(report).splitlines()[-1].split()[:3] == ["total", "100", "100"]
    assert grade(PACKAGE_DIR).rows[0].passed  # the package folder itself is accepted too


@pytest.mark.parametrize("function_id", IDS)
def test_pasting_one_solution_back_passes_exactly_that_row(fresh, tmp_path, function_id):
    root = _copy(fresh, tmp_path)
    paste_solution(root, function_id)
    assert function_id not in assignment.blanked_functions(root / "tinyvae")
    report = grade(root)
    assert [r.function for r in report.rows if r.passed] == [function_id], str(report)
    assert report.score == assignment._entry(function_id).points


BUGS_A = {  # plausible wrong answers: (file, qualname) -> body
    ("layers.py", "Dense.backward"): """
        x = self._x
        self.W.grad += x.T @ dout
        self.b.grad += B.get_xp().mean(dout, axis=0)  # mean instead of sum: right only for a batch of one
        return dout @ self.W.data.T
        """,
    ("activations.py", "Sigmoid.backward"): "return dout * self._saved_value  # forgot the (1 - y)",
    ("activations.py", "Softplus.backward"): """
        xp = B.get_xp()
        x = self._saved(self._saved_value)
        return dout * xp.exp(x) / (1.0 + xp.exp(x))  # overflows: inf / inf far out
        """,
    ("activations.py", "LeakyReLU.backward"): "return dout.T  # the wrong shape",
    ("losses.py", "bce_with_logits"): """
        xp = B.get_xp()
        value = float(xp.sum(_bce_terms(logits, target))) / logits.shape[0]
        return value, 1.0 / (1.0 + xp.exp(-logits)) - target  # forgot the 1 / N
        """,
    ("losses.py", "gaussian_kl"): """
        xp = B.get_xp()
        n = mu.shape[0]
        value = 0.5 * float(xp.sum(mu * mu + xp.exp(logvar) - 1.0 - logvar)) / n
        return value, mu / n, (xp.exp(logvar) - 1.0) / n  # dlogvar off by a factor 2
        """,
    ("reparam.py", "Reparameterize.backward"): "return dz, dz * self._eps * self._std  # forgot the 1/2",
    ("models.py", "VAE.backward"): """
        dout, dmu_kl, dlogvar_kl = self._grads
        dmu, dlogvar = self.reparam.backward(self.decoder.backward(dout))
        dh = self.mu_head.backward(dmu + dmu_kl) + self.logvar_head.backward(dlogvar + dlogvar_kl)  # no beta
        if self.hidden:
            self.encoder.backward(dh)
        """,
    ("optim.py", "Adam.step"): """
        xp = B.get_xp()
        self.t += 1
        for p, m, v in zip(self.params, self.state["m"], self.state["v"]):
            g = p.grad + self.weight_decay * p.data
            m[...] = self.beta1 * m + (1 - self.beta1) * g
            v[...] = self.beta2 * v + (1 - self.beta2) * g * g
            p.data -= self.lr * m / (xp.sqrt(v) + self.eps)  # no bias correction
        """,
}

BUGS_B = {
    ("layers.py", "Dense.backward"): """
        x = self._x
        self.W.grad = x.T @ dout  # assigns instead of adding
        self.b.grad = B.get_xp().sum(dout, axis=0)
        return dout @ self.W.data.T
        """,
    ("activations.py", "ReLU.backward"): "return B.get_xp().where(self._saved_value >= 0, dout, 0.0)  # y >= 0 always",
    ("activations.py", "Tanh.backward"): "return dout * (1.0 - self._saved_value)  # forgot the square",
    ("activations.py", "Identity.backward"): "return dout @ dout  # raises: (4, 6) @ (4, 6)",
    ("losses.py", "bce_with_logits"): """
        xp = B.get_xp()
        s = 1.0 / (1.0 + xp.exp(-logits))
        n = logits.shape[0]
        value = float(xp.sum(-target * xp.log(s) - (1.0 - target) * xp.log(1.0 - s))) / n  # log(0) at l = 1e4
        return value, (s - target) / n
        """,
    ("reparam.py", "Reparameterize.backward"): "return dz, dz * self._eps * self._std ** 2 * 0.5  # exp(logvar) as std",
    ("models.py", "VAE.backward"): """
        dout, dmu_kl, dlogvar_kl = self._grads
        dmu, dlogvar = self.reparam.backward(self.decoder.backward(dout))  # the KL gradient is never added
        dh = self.mu_head.backward(dmu) + self.logvar_head.backward(dlogvar)
        if self.hidden:
            self.encoder.backward(dh)
        """,
    ("optim.py", "Adam.step"): """
        xp = B.get_xp()
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        for p, m, v in zip(self.params, self.state["m"], self.state["v"]):
            g = p.grad  # ignores weight_decay
            m[...] = b1 * m + (1 - b1) * g
            v[...] = b2 * v + (1 - b2) * g * g
            p.data -= self.lr / (1 - b1**self.t) * m / (xp.sqrt(v) / math.sqrt(1 - b2**self.t) + self.eps)
        """,
}


@pytest.mark.parametrize("bugs", [BUGS_A, BUGS_B], ids=["A", "B"])
def test_wrong_implementations_fail_their_rows_with_the_error_shown(fresh, tmp_path, bugs):
    root = _solved(fresh, tmp_path)
    for (file, qualname), body in bugs.items():
        _set_body(root, file, qualname, body)
    report = grade(root)
    bugged = {q for _, q in bugs}
    for row in report.rows:
        assert row.passed == (row.function not in bugged), str(report)
    table = str(report)
    notes = {r.function: r.note for r in report.rows}
    if bugs is BUGS_A:
        for fn in ("Dense.backward", "Sigmoid.backward", "bce_with_logits", "gaussian_kl", "Reparameterize.backward",
                   "VAE.backward", "Adam.step"):
            row = report.row(fn)
            assert row.error is not None and 1e-7 < row.error < math.inf and notes[fn].startswith("worst: ")
            assert f"{row.error:.1e}" in table
        assert report.row("Dense.backward").checks[0][1] < 1e-7  # dx is right: only db is wrong ...
        assert "batch 3" in notes["Dense.backward"]  # ... and only beyond a batch of one
        assert "dlogvar" in notes["gaussian_kl"] and "dlogvar" in notes["Reparameterize.backward"]
        assert report.row("Softplus.backward").error == math.inf
        assert notes["Softplus.backward"] == "dx (|x| up to 800) is not finite"
        assert notes["LeakyReLU.backward"] == "dx has shape (6, 4), expected (4, 6)"
        assert report.score == 100 - sum(e.points for e in MANIFEST if e.id in bugged)
    else:
        assert "dW" in notes["Dense.backward"] or "db" in notes["Dense.backward"]
        assert notes["bce_with_logits"] == "value (logits +-1e4) is not finite"
        assert notes["Identity.backward"].startswith("ValueError: ") and "(activations.py, line" in notes[
            "Identity.backward"]
        assert report.row("Identity.backward").error is None
        assert "config 2" in notes["Adam.step"]  # only the configuration with weight decay tells


def test_grading_isolates_functions_from_each_others_mistakes(fresh, tmp_path):
    """VAE.backward alone is right; everything it calls is missing or wrong, and it still passes."""
    root = _copy(fresh, tmp_path)
    paste_solution(root, "VAE.backward")
    _set_body(root, "layers.py", "Dense.backward", "return dout @ self.W.data.T  # no parameter gradients")
    report = grade(root)
    assert [r.function for r in report.rows if r.passed] == ["VAE.backward"]
    assert report.row("Dense.backward").error == pytest.approx(1.0)  # dW = 0 against a nonzero gradient


def test_a_copy_that_does_not_import_fails_every_row_with_the_reason(fresh, tmp_path):
    root = _solved(fresh, tmp_path)
    path = root / "tinyvae" / "layers.py"
    path.write_text(path.read_text() + "\ndef broken(:\n")
    report = grade(root)
    assert report.score == 0
    for row in report.rows:
        assert row.note.startswith("the package does not import: SyntaxError") and "(layers.py, line" in row.note


def test_an_endless_loop_fails_its_own_row_and_a_hung_run_is_cut(fresh, tmp_path):
    root = _solved(fresh, tmp_path)
    _set_body(root, "layers.py", "Dense.backward", "while True:\n    pass")
    report = grade(root, function_timeout=0.5)
    assert report.row("Dense.backward").note == "timed out after 0.5 s"
    assert [r.function for r in report.rows if not r.passed] == ["Dense.backward"]

    report = grade(root, timeout=1.5, function_timeout=100)
    assert report.score == 0
    assert all(r.note == "not graded: the run passed its 1.5 s timeout" for r in report.rows)


def test_make_refuses_to_overwrite_unless_told_and_only_its_own_copies(fresh, tmp_path):
    out = _copy(fresh, tmp_path, "hw")
    with pytest.raises(ValueError, match="is not empty.*--overwrite"):
        make(out)
    (out / "stray.txt").write_text("left from last year")
    assert make(out, overwrite=True) == out
    assert not (out / "stray.txt").exists() and assignment.blanked_functions(out / "tinyvae") == IDS

    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("precious")
    with pytest.raises(ValueError, match="was not made by `tinyvae assignment make`"):
        make(mine, overwrite=True)
    assert (mine / "chapter1.tex").read_text() == "precious"
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is not a folder"):
        make(tmp_path / "file")
    with pytest.raises(ValueError, match="inside the package"):
        make(PACKAGE_DIR / "hw")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert make(empty) == empty and (empty / "tinyvae" / "__init__.py").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left behind


def test_grade_needs_a_folder_holding_a_tinyvae_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        grade(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="holds no tinyvae package"):
        grade(tmp_path)
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ValueError, match="is not a folder"):
        grade(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="timeouts must be positive"):
        grade(SOLUTION_ROOT, timeout=0)


def test_a_grader_whose_own_package_is_blanked_refuses(fresh, monkeypatch):
    """The copy holds no grader at all (see above); a grader run over a blanked package says what to use."""
    monkeypatch.setattr(assignment, "blanked_functions", lambda *a, **k: ["Dense.backward"])
    with pytest.raises(ValueError, match="is a student copy.*python -m tinyvae gradcheck"):
        grade(fresh)


def test_the_commands_wire_into_a_parser(fresh, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="tinyvae")
    add = parser.add_subparsers(dest="command")
    assignment.add_assignment_commands(add)

    args = parser.parse_args(["assignment", "make", str(tmp_path / "hw")])
    assert args.func(args) == 0
    assert "12 functions (100 points)" in capsys.readouterr().out
    args = parser.parse_args(["assignment", "grade", str(tmp_path / "hw"), "--json", "--timeout", "60"])
    assert args.func(args) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["score"] == 0 and data["total"] == 100 and [r["function"] for r in data["rows"]] == IDS
    args = parser.parse_args(["assignment"])
    assert args.func(args) == 2


def test_student_copy_has_no_instructor_code_and_no_assignment_command(fresh):
    assert not (fresh / "tinyvae" / "instructor").exists()
    assert not any(p.name in ("_grader.py", "assignment.py") for p in (fresh / "tinyvae").rglob("*.py"))
    env = dict(os.environ, PYTHONPATH=str(fresh))
    out = subprocess.run([sys.executable, "-m", "tinyvae", "--help"], cwd=fresh, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "gradcheck" in out.stdout and "assignment" not in out.stdout
