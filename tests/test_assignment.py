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

from tinyvae.instructor import handout as assignment
from tinyvae.instructor.grading import grade
from tinyvae.instructor.handout import PACKAGE_DIR, make, paste_solution
from tinyvae.instructor.cli import add_assignment_commands
from tinyvae.instructor.manifest import CASES, MANIFEST, REPLACED_FILES
from tinyvae.instructor.manifest import entry as manifest_entry

pytestmark = pytest.mark.backends("numpy")  # host-side tooling; the grader runs its own NumPy subprocess

IDS = [e.id for e in MANIFEST]
TOTAL = sum(e.points for e in MANIFEST)  # 100 before the convolution entries (issue 12) joined
SOLUTION_ROOT = PACKAGE_DIR.parent


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    return make(tmp_path_factory.mktemp("assignment") / "hw")


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
    return assignment.find_def(ast.parse(path.read_text()), qualname, path.name)


def test_manifest_is_consistent_with_the_solution_and_the_grader():
    assert all(e.points > 0 for e in MANIFEST) and TOTAL >= 100
    assert len(set(IDS)) == len(IDS)
    assert set(CASES) == set(IDS)
    assert all(e.hint and "\n" not in e.hint for e in MANIFEST)
    assert ("optim.py", "adam_reference") in manifest_entry("Adam.step").also_blanks
    for entry in MANIFEST:  # every target exists in the solution and has a real body
        for file, qualname in entry.targets:
            assert not assignment.is_blanked(_def(PACKAGE_DIR / file, qualname)), qualname
    assert assignment.blanked_functions() == []


def test_make_blanks_each_listed_body_keeping_def_and_docstring(fresh):
    assert assignment.blanked_functions(fresh / "tinyvae") == IDS
    for entry in MANIFEST:
        for file, qualname in entry.targets:
            node, solution = _def(fresh / "tinyvae" / file, qualname), _def(PACKAGE_DIR / file, qualname)
            assert ast.get_docstring(node) == ast.get_docstring(solution)
            assert ast.dump(node.args) == ast.dump(solution.args)
            body = node.body[1:] if assignment.has_docstring(node) else node.body
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
        for file, qualname in (*entry.targets, *((t.file, t.qualname) for t in entry.twins), *entry.hidden):
            targets.setdefault(file, []).append(qualname)
    source_files = sorted(p.relative_to(PACKAGE_DIR) for p in PACKAGE_DIR.rglob("*")
                          if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
                          and "instructor" not in p.relative_to(PACKAGE_DIR).parts)
    copy_files = sorted(p.relative_to(fresh / "tinyvae") for p in (fresh / "tinyvae").rglob("*") if p.is_file())
    student_tools = {"_runner.py", "selfcheck.py", "submit.py", "selfcheck_cases.bin", "assignment.json"}
    assert sorted(p for p in copy_files if str(p) not in student_tools) == source_files
    assert student_tools <= {str(p) for p in copy_files}
    for rel in source_files:
        original, copied = (PACKAGE_DIR / rel).read_bytes(), (fresh / "tinyvae" / rel).read_bytes()
        if str(rel) in REPLACED_FILES:
            assert copied.decode() == REPLACED_FILES[str(rel)]
            continue
        if str(rel) == "backend.py":  # one line changed: the copy starts in plain mode (handout._plain_by_default)
            plain = assignment.PLAIN_DEFAULT
            original = original.replace(plain.encode(), plain.replace("False", "True ").encode(), 1)
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
    assert all(f"`{i}`" in readme for i in IDS) and "python -m tinyvae.selfcheck" in readme
    assert "## What to submit" in readme and "python -m tinyvae.submit" in readme and "../tinyvae-env" in readme
    marker = json.loads((fresh / assignment.MARKER).read_text())["functions"]
    assert marker == {e.id: {"points": e.points, "hint": "full", "partial": False, "visibility": "visible"}
                      for e in MANIFEST}
    assert json.loads((fresh / "tinyvae" / "assignment.json").read_text())["functions"] == marker
    assert "tqdm" in (fresh / "requirements.txt").read_text()


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
    from tinyvae.instructor import source
    monkeypatch.setattr(source, "blanked_functions", lambda *a, **k: ["Dense.backward"])  # the grader reads it there
    with pytest.raises(ValueError, match="is a student copy.*python -m tinyvae.selfcheck"):
        grade(fresh)


def test_fast_twins_call_the_plain_functions_and_kernels_are_not_handed_out(fresh):
    """No formula survives in a _fast twin: each body is one call to its plain function (in place where the twin
    updates its arguments), so students write each formula once and the models, which call the twins, use it."""
    for e in MANIFEST:
        for twin in e.twins:
            node = _def(fresh / "tinyvae" / twin.file, twin.qualname)
            body = node.body[1:] if assignment.has_docstring(node) else node.body
            calls = [n for n in ast.walk(ast.Module(body=body, type_ignores=[])) if isinstance(n, ast.Call)]
            called = [getattr(c.func, "id", None) or getattr(c.func, "attr", None) for c in calls]  # f(...), self.f(...)
            assert twin.plain.split(".")[-1] in called, twin
            assert "kernels" not in ast.unparse(ast.Module(body=body, type_ignores=[]))
    assert "ElementwiseKernel" not in (fresh / "tinyvae" / "kernels.py").read_text()
    hidden = [(f, q) for e in MANIFEST for f, q in e.hidden]
    assert ("losses.py", "_bce_rows_fast") in hidden  # restates the BCE value: only the raise is handed out
    for file, qualname in hidden:
        node = _def(fresh / "tinyvae" / file, qualname)
        body = node.body[1:] if assignment.has_docstring(node) else node.body
        assert len(body) == 1 and isinstance(body[0], ast.Raise), qualname
        assert "log" not in ast.unparse(body[0]) and "exp" not in ast.unparse(body[0])


def test_notebook_solution_regions_are_stripped_and_must_be_closed():
    code = "a = 1\n### BEGIN SOLUTION\ndW_hand = x.T @ G\n### END SOLUTION\nprint(a)\n"
    out = assignment.strip_solutions(code, "code")
    assert "dW_hand" not in out and "YOUR CODE HERE" in out and out.startswith("a = 1") and "print(a)" in out
    md = "Derive it.\n<!-- BEGIN SOLUTION -->\n$dW = x^T G$\n<!-- END SOLUTION -->\n"
    assert "x^T G" not in assignment.strip_solutions(md, "markdown")
    with pytest.raises(ValueError, match="never closed"):
        assignment.strip_solutions("### BEGIN SOLUTION\nx = 1\n", "code")


def test_the_commands_wire_into_a_parser(fresh, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="tinyvae")
    add = parser.add_subparsers(dest="command")
    add_assignment_commands(add)

    args = parser.parse_args(["assignment", "make", str(tmp_path / "hw")])
    assert args.func(args) == 0
    assert f"{len(MANIFEST)} functions ({TOTAL} points)" in capsys.readouterr().out
    args = parser.parse_args(["assignment", "grade", str(tmp_path / "hw"), "--json", "--timeout", "60"])
    assert args.func(args) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["score"] == 0 and data["total"] == TOTAL and [r["function"] for r in data["rows"]] == IDS
    args = parser.parse_args(["assignment"])
    assert args.func(args) == 2


def test_student_copy_has_no_instructor_code_and_no_assignment_command(fresh):
    assert not (fresh / "tinyvae" / "instructor").exists()
    assert not any(p.name in ("_grader.py", "assignment.py") for p in (fresh / "tinyvae").rglob("*.py"))
    env = dict(os.environ, PYTHONPATH=str(fresh))
    out = subprocess.run([sys.executable, "-m", "tinyvae", "--help"], cwd=fresh, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "gradcheck" in out.stdout and "assignment" not in out.stdout


def test_a_student_copy_starts_in_plain_mode_and_the_solution_does_not(fresh):
    """The copy has no CuPy kernels, so its fused paths must never run: its backend starts in plain mode."""
    code = "import tinyvae.backend as B; print(B.plain(), B.fast_gpu())"
    env = {k: v for k, v in os.environ.items() if k != "TINYVAE_PLAIN"}
    student = subprocess.run([sys.executable, "-c", code], cwd=fresh, env=dict(env, PYTHONPATH=str(fresh)),
                             capture_output=True, text=True, timeout=60)
    solution = subprocess.run([sys.executable, "-c", code], cwd=SOLUTION_ROOT,
                              env=dict(env, PYTHONPATH=str(SOLUTION_ROOT)), capture_output=True, text=True, timeout=60)
    assert student.stdout.split() == ["True", "False"], student.stderr
    assert solution.stdout.split() == ["False", "False"], solution.stderr


def test_gradcheck_in_a_student_copy_fails_where_the_grader_would(fresh, tmp_path):
    """Finite differences cannot see a backward that ASSIGNS .grad instead of adding to it (the grader gives 0):
    in a student copy `tinyvae gradcheck` runs the self-check too, so it fails there, naming the function."""
    root = _solved(fresh, tmp_path)
    env = dict(os.environ, PYTHONPATH=str(root), TINYVAE_BACKEND="numpy")
    run = lambda: subprocess.run([sys.executable, "-m", "tinyvae", "gradcheck"], cwd=root, env=env,  # noqa: E731
                                 capture_output=True, text=True, timeout=300)
    good = run()
    assert good.returncode == 0 and "the self-check" in good.stdout, good.stdout + good.stderr
    _set_body(root, "layers.py", "Dense.backward", """
        x = self._saved(self._cache)
        self.W.grad = x.T @ dout
        self.b.grad = dout.sum(axis=0)
        return dout @ self.W.data.T if self.input_grad else None
    """)
    bad = run()
    assert bad.returncode == 1
    assert any(line.startswith("Dense.backward") and "FAIL" in line for line in bad.stdout.splitlines()), bad.stdout


def test_the_students_self_check_covers_every_graded_function(fresh, tmp_path):
    """In a copy with every solution pasted back, `tinyvae gradcheck` passes; blank any ONE graded function (or a
    helper it blanks) again and it fails: the self-check exercises every row the grader scores."""
    root = _copy(fresh, tmp_path, "solved")
    for function_id in IDS:
        paste_solution(root, function_id)
    script = textwrap.dedent(f"""
        import sys
        import tinyvae
        from tinyvae.gradcheck import check_components
        assert tinyvae.__file__.startswith({str(root)!r})
        assert check_components().passed
        targets = {[(e.id, f, q) for e in MANIFEST for f, q in e.targets]!r}
        missed = []
        for function_id in {IDS!r}:
            saved = []
            for fid, file, qualname in targets:
                if fid != function_id:
                    continue
                owner = sys.modules["tinyvae." + file[:-3]]
                *path, attr = qualname.split(".")
                for part in path:
                    owner = getattr(owner, part)
                saved.append((owner, attr, vars(owner)[attr]))
                def blank(*a, **k):
                    raise NotImplementedError
                setattr(owner, attr, blank)
            if check_components().passed:
                missed.append(function_id)
            for owner, attr, value in saved:
                setattr(owner, attr, value)
        print("missed", missed)
    """)
    env = dict(os.environ, PYTHONPATH=str(root), TINYVAE_BACKEND="numpy")
    out = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "missed []" in out.stdout


def test_the_handed_out_notebooks_keep_the_exercises_but_not_the_answers(fresh):
    texts = {p.name: p.read_text() for p in (fresh / "notebooks").glob("*.ipynb")}
    assert texts and not any("BEGIN SOLUTION" in t for t in texts.values())
    for leak in ("dW_hand = x.T @ G", "dlogvar_hand = (xp.exp(logvar) - 1.0) / (2 * N)", "dmu_hand = mu / N",
                 "dlogvar_hand = dz * 0.5", "dW = x^\\\\top G", "{e^{\\\\text{logvar}} - 1}{2N}",
                 "tfrac12(e^{\\\\text{logvar}} - 1)", "tfrac12 \\\\sigma \\\\odot"):
        assert not any(leak in t for t in texts.values()), leak
        assert any(leak in (SOLUTION_ROOT / "notebooks" / n).read_text() for n in texts), leak  # a real leak test
    assert "YOUR CODE HERE" in texts["01_autoencoder_and_pca.ipynb"]
    assert "Your derivation here" in texts["02_vae_step_by_step.ipynb"]


def test_at_hint_none_no_graded_formula_survives_anywhere_in_the_handout(tmp_path):
    """Hint levels mean what they say: at "none" no docstring, comment or other code of the copy still holds a
    formula of a graded function (make refuses to write one that does); at "full" the same fragments are there."""
    from dataclasses import replace

    from tinyvae.instructor.manifest import FORMULAS

    none = tuple(replace(e, hint_level="none") for e in MANIFEST)
    out = make(tmp_path / "none", entries=none)
    assert assignment.surviving_formulas(out / "tinyvae", none) == []
    full = assignment.surviving_formulas(PACKAGE_DIR, none)  # the same search finds them in the solution
    assert {line.split(": ")[1].split(" (")[0] for line in full} == set(FORMULAS)  # every entry's, not vacuous
    activations = (out / "tinyvae" / "activations.py").read_text()
    assert "y * (1 - y)" not in activations and "1 - y^2" not in activations and "class Sigmoid" in activations
    assert "1 - b_i^t" not in (out / "tinyvae" / "optim.py").read_text()  # adam_fast's docstring
    assert "x^T dout" not in (out / "tinyvae" / "layers.py").read_text()  # Dense's class docstring
    gan = (out / "tinyvae" / "gan.py").read_text()  # VAEGAN._encoder_backward restated VAE.elbo_backward
    assert "self.reparam.backward(dz)" not in gan and assignment.RESTATED_HINT in gan
    readme = (out / "README.md").read_text()
    assert "implement this function" in readme and "y^2" not in readme
    env = dict(os.environ, PYTHONPATH=str(out), TINYVAE_BACKEND="numpy")
    run = subprocess.run([sys.executable, "-c", "import tinyvae, tinyvae.gan, tinyvae.selfcheck"], cwd=out, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr  # still imports
