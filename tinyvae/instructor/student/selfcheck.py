"""Check your work the way the grader will:   python -m tinyvae.selfcheck   (from the assignment folder)

Each graded function runs on cases of the grader's own kinds (odd shapes, a batch of one, a square layer,
``input_grad = False``, parameters whose ``.grad`` already holds values so that backward must ADD, logits of
+-1e4, Adam with eps and weight decay, ...), through the grader's own code, and is compared with the grader's
rule: every relative error max|a - b| / max(1e-8, |a| + |b|) below 1e-7. The answers were computed from the
solution when the handout was made; the grader draws other values of the same kinds, fresh for every run. So
"all passed" here means the grader will say the same, unless your code only works for these exact numbers.

One difference: here a function runs with YOUR other functions (VAE.elbo_backward calls your Dense.backward), where
the grader gives it correct ones; a row that uses a failing row says so. Fix the failing rows it names first.
"""
import sys
from pathlib import Path

from . import _runner as runner

CASES = Path(__file__).with_name("selfcheck_cases.bin")


def load():
    """The handout's list of graded functions, each with its cases and the solution's answers."""
    data = CASES.read_bytes()
    _, functions = runner.unpack(data[8:])
    return functions


def check(tv, function):
    """(cases passed, number of cases, worst relative error, the first thing that went wrong or "")."""
    passed, worst, first = 0, 0.0, ""
    for i, ((params, arrays), want) in enumerate(zip(function["cases"], function["expected"])):
        runner.seed_everything(function["seed"] + i)
        tv.backend.seed(function["seed"] + i)
        try:
            got = runner.run_case(tv, function["scenario"], params, arrays)
        except Exception as err:  # noqa: BLE001 - your function raised: this case fails, the others still run
            first = first or f"case {i + 1}: {runner.describe(err, str(Path(tv.__file__).parent))}"
            worst = float("inf")
            continue
        ok = True
        for name, value in want.items():
            err = runner.rel_error(got.get(name), value)
            worst = max(worst, err)
            if not err < 1e-7:
                ok = False
                why = runner.why(got.get(name), value) if name in got else "was not returned"
                first = first or f"case {i + 1}: {name} {why or f'is off (relative error {err:.1e})'}"
        passed += ok
    return passed, len(function["cases"]), worst, first


def main():
    import tinyvae as tv
    tv.use("numpy")
    functions = load()
    rows, failing = [], set()
    for function in functions:
        passed, n, worst, first = check(tv, function)
        ok = passed == n
        if not ok:
            failing.add(function["id"])
        rows.append((function, passed, n, worst, first, ok))
    width = max(len(f["id"]) for f in functions)
    print(f"{'function':<{width}}  {'points':>6}  {'cases':>7}  {'worst error':>11}  result")
    earned = 0
    for function, passed, n, worst, first, ok in rows:
        earned += function["points"] if ok else 0
        print(f"{function['id']:<{width}}  {function['points']:>6g}  {passed:>3} of {n:<1}  {worst:>11.1e}  "
              f"{'pass' if ok else 'FAIL'}")
        if not ok:
            print(f"{'':<{width}}  {first}")
            uses = sorted(set(function["uses"]) & failing)
            if uses:
                print(f"{'':<{width}}  (it runs your {', '.join(uses)}, which do not pass yet: fix them first; the "
                      "grader checks this row with correct ones)")
    total = sum(f["points"] for f in functions)
    print(f"{sum(r[-1] for r in rows)} of {len(rows)} functions pass, {earned:g} of {total:g} points on these cases "
          "(the grader uses other values of the same kinds).")
    return 0 if not failing else 1


if __name__ == "__main__":
    sys.exit(main())
