"""``tinyvae assignment make|grade|gradescope``: registered by tinyvae/cli.py only where this package exists."""
import json
import sys
from pathlib import Path

from . import handout
from .manifest import MANIFEST, load_config


def cmd_make(args):
    entries = load_config(args.config)
    out = handout.make(args.out, overwrite=args.overwrite, entries=entries)
    print(f"wrote a student copy of tinyvae to {out}: {len(entries)} functions "
          f"({sum(e.points for e in entries)} points) raise NotImplementedError")
    for e in entries:
        extra = f" (also {', '.join(q for _, q in e.also_blanks)})" if e.also_blanks else ""
        print(f"  {e.file:<15} {e.qualname}{extra}: {e.points} points, hint {e.hint_level}")
    print(f"students: see {out / 'README.md'} (python -m tinyvae.selfcheck, then python -m tinyvae.submit); "
          f"grade with: tinyvae assignment grade SUBMISSIONS --config {out}")
    return 0


def _entries(args, who):
    """The course config's entries; without --config, the whole manifest, said out loud."""
    if args.config is None:
        print(f"tinyvae assignment {who}: no --config: grading EVERY function of the manifest ({len(MANIFEST)}); "
              "a submission whose handout says otherwise is refused", file=sys.stderr)
    return load_config(args.config)


def cmd_grade(args):
    entries = _entries(args, "grade")
    from . import batch
    given = args.config is not None
    path = Path(args.path)
    if batch.is_submission(path) or (path.suffix == ".zip" and path.is_file()):
        report = batch.grade_path(path, seed=args.seed, entries=entries, sandbox_mode=args.sandbox,
                                  timeout=args.timeout, config_given=given)
        if args.json:
            print(json.dumps(report.to_dict(), indent=1))
        else:
            print(f"tinyvae assignment grade: {report.path} against the solution in {handout.PACKAGE_DIR}")
            print(report)
        return 0 if report.passed else 1
    summary = batch.grade_folder(path, args.out, seed=args.seed, entries=entries, sandbox_mode=args.sandbox,
                                 timeout=args.timeout, workers=args.workers, config_given=given)
    print(summary)
    return 3 if summary.not_graded else 0


def cmd_gradescope(args):
    from . import gradescope
    if args.config is None and not args.all:
        raise ValueError("tinyvae assignment gradescope: give --config (the course config, or the handout folder "
                         "that `make` wrote) so that the autograder grades what the handout gave out; --all grades "
                         "every function")
    out = gradescope.write_autograder(args.out, config=args.config)
    print(f"wrote the Gradescope autograder {out} (setup.sh, run_autograder, the solution and the grader)")
    return 0


def add_assignment_commands(subparsers):
    p = subparsers.add_parser("assignment", help="instructors: make a student handout, grade submissions",
                              description="make a student handout, grade one submission or a folder of them, "
                                          "or write a Gradescope autograder")
    actions = p.add_subparsers(dest="assignment_action", metavar="ACTION", parser_class=type(p))
    m = actions.add_parser("make", help="write a student copy of the package and notebooks to OUT")
    m.add_argument("out", metavar="OUT", help="the folder to create (new or empty)")
    m.add_argument("--overwrite", action="store_true", help="replace OUT if it is a copy made earlier by make")
    m.add_argument("--config", default=None, help="TOML/JSON: the graded functions, their points and hint levels "
                                                  "(default: every function, full hints)")
    g = actions.add_parser("grade", help="grade a submission (a folder holding tinyvae/), or a folder of them")
    g.add_argument("path", metavar="PATH", help="one submission (a folder or a zip), or a folder of submissions "
                                               "(subfolders or zips)")
    g.add_argument("--config", default=None, help="the config make used, or the handout folder make wrote (default: "
                                                  "every function; refused where the submission's handout differs)")
    g.add_argument("--seed", type=int, default=None, help="regrade with the seed a report shows (default: fresh)")
    g.add_argument("--sandbox", choices=("auto", "bwrap", "none"), default=None,
                   help="auto (the default): bwrap where it works, else none with a warning; bwrap: fail rather "
                        "than fall back; none: the weak mode (trusted classes only)")
    g.add_argument("--timeout", type=float, default=20.0, help="seconds per function (default 20)")
    g.add_argument("--json", action="store_true", help="one submission: print the report as JSON")
    g.add_argument("--out", default=None, help="a folder of submissions: where scores.csv and the reports go "
                                               "(default: PATH/../grades)")
    g.add_argument("--workers", type=int, default=None, help="submissions graded at once (default: the cores)")
    s = actions.add_parser("gradescope", help="write a Gradescope autograder zip")
    s.add_argument("out", metavar="OUT.zip")
    s.add_argument("--config", default=None, help="the config make used, or the handout folder make wrote")
    s.add_argument("--all", action="store_true", help="without --config: grade every function of the manifest")

    def dispatch(args):
        action = {"make": cmd_make, "grade": cmd_grade, "gradescope": cmd_gradescope}.get(args.assignment_action)
        if action is None:
            p.print_help(sys.stderr)
            return 2
        return action(args)

    p.set_defaults(func=dispatch)
    return p
