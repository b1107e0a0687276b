"""The ``tinyvae`` command: train, sample, reconstruct, interpolate, compare-pca, gradcheck, assignment."""
import argparse
import sys

from . import backend as B


class UsageError(Exception):
    """A mistake on the command line: reported in one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def cmd_gradcheck(args):
    from .gradcheck import check_components

    B.use(args.backend)
    report = check_components(seed=args.seed)
    print(f"tinyvae gradient check, float64 centered differences, backend {B.backend_name()}")
    print(report)
    return 0 if report.passed else 1


def build_parser():
    parser = _Parser(prog="tinyvae", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser("gradcheck", help="check every hand-written backward pass against finite differences")
    p.add_argument("--backend", default=B.backend_name(), choices=B.BACKENDS)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_gradcheck)
    return parser


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return args.func(args)
    except (UsageError, B.BackendUnavailable, ValueError, FileNotFoundError, KeyError) as err:
        print(f"tinyvae: error: {err}".replace("tinyvae: error: tinyvae", "tinyvae"), file=sys.stderr)
        return 2
