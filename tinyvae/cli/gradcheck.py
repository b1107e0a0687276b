"""``tinyvae gradcheck``: every hand-written backward pass against centered finite differences."""
from .. import backend as B
from ..gradcheck import check_components
from .common import add_common, subcommand


@subcommand("gradcheck", "check every hand-written backward pass against finite differences", add_common)
def cmd_gradcheck(args):
    B.use(args.backend)
    report = check_components(seed=args.seed)
    print(f"tinyvae gradient check: float64 centered differences (h = 1e-5), backend {B.backend_name()}")
    print(report)
    return 0 if report.passed else 1
