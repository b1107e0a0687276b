"""``tinyvae gradcheck``: every hand-written backward pass against centered finite differences.

In a student copy (made by ``tinyvae assignment make``, which adds ``tinyvae/selfcheck.py``) it then runs the
self-check too, the grader's own kinds of cases (backward must ADD into ``.grad``, Adam's weight decay, ...), so that
"passed" here means what the grader will say: finite differences alone cannot see those two mistakes.
"""
import importlib.util

from .. import backend as B
from ..gradcheck import check_components
from .common import add_common, subcommand


@subcommand("gradcheck", "check every hand-written backward pass against finite differences", add_common)
def cmd_gradcheck(args):
    B.use(args.backend)
    report = check_components(seed=args.seed)
    print(f"tinyvae gradient check: float64 centered differences (h = 1e-5), backend {B.backend_name()}")
    print(report)
    passed = report.passed
    if importlib.util.find_spec("tinyvae.selfcheck") is not None:  # a student copy: the grader's cases too
        from .. import selfcheck
        print("\nthe self-check (python -m tinyvae.selfcheck): the grader's own kinds of cases")
        passed = selfcheck.main() == 0 and passed
        B.use(args.backend)  # the self-check runs on NumPy
    return 0 if passed else 1
