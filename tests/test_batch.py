"""Batch grading (a folder of subfolders and zips) and the Gradescope autograder, run as Gradescope runs it."""
import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from tinyvae.instructor import batch
from tinyvae.instructor.cli import add_assignment_commands
from tinyvae.instructor.gradescope import write_autograder
from tinyvae.instructor.handout import PACKAGE_DIR, make, paste_solution
from tinyvae.instructor.manifest import MANIFEST, entry

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
