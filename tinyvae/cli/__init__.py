"""The ``tinyvae`` command: train, evaluate, sample, reconstruct, interpolate, compare-pca, gradcheck, score.
Where tinyvae/instructor/ exists (never in a student copy) it also has `assignment make|grade|gradescope`.

One module per command group, each registering its commands with ``common.subcommand``: train.py (train,
--resume), evaluate.py (evaluate, score), images.py (sample, reconstruct, interpolate), pca.py (compare-pca),
gradcheck.py; ``add_assignment`` below adds the instructor's commands (tinyvae.instructor.cli). A new command group
is a new module with ``@subcommand(...)``, imported below. A new model kind needs nothing here:
``tinyvae.kinds.register`` adds it to ``train --model``.

What main reports as a mistake: a ``tinyvae.TinyVAEError`` (a bad option, an unknown name, a corrupt checkpoint, an
unavailable backend, a failed download) and an ``OSError`` (a file or folder that cannot be read or written). Each
goes to stderr with exit code 2: one line that names it, followed by any further lines of its reason (a failed
download lists each mirror and what to do by hand); set TINYVAE_DEBUG=1 to see the traceback instead. Any other
exception is a bug in tinyvae and shows its traceback. Output cut short by a closed pipe (`tinyvae ... | head -1`)
ends quietly.
"""
import argparse
import os
import sys
from pathlib import Path

from ..errors import TinyVAEError
from .common import SUBCOMMANDS, Parser, UsageError
# Each command module registers its commands when imported, in the order of tinyvae --help.
from . import train, evaluate, images, pca, gradcheck, reproduce  # noqa: F401, I001

DESCRIPTION = ("tinyvae: train, evaluate, sample, reconstruct, interpolate, compare-pca, gradcheck, score, "
               "reproduce.")

__all__ = ["main", "build_parser", "SUBCOMMANDS", "UsageError"]


def add_assignment(sub):
    """tinyvae assignment make|grade|gradescope, where tinyvae/instructor/ exists (never in a student copy)."""
    if (Path(__file__).resolve().parents[1] / "instructor" / "__init__.py").is_file():
        from ..instructor.cli import add_assignment_commands

        add_assignment_commands(sub)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where the help already says it or there is none."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def build_parser():
    from .. import __version__

    parser = Parser(prog="tinyvae", description=DESCRIPTION, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"tinyvae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, (help, arguments, run) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help, description=help, formatter_class=_Formatter)
        arguments(p)
        p.set_defaults(func=run)
    add_assignment(sub)
    return parser


def _message(err):
    """The whole message of ``err``, its first line starting "tinyvae", every further line of its reason kept."""
    text = str(err).strip() or type(err).__name__
    return text if text.startswith("tinyvae") else f"tinyvae: error: {text}"


def _quiet_stdout():
    """After a closed pipe: send what Python still flushes at exit to /dev/null, so no second error is printed."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (captured output)
        pass


def main(argv=None):
    """Run the command; returns the exit status (0, 1 for a failed check, 2 for a mistake, 141 for a closed pipe)."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.argv = sys.argv[1:] if argv is None else [str(a) for a in argv]  # recorded in metrics.json
        if args.command is None:
            parser.print_help()
            return 2
        code = args.func(args)
        sys.stdout.flush()  # here, not at exit: a closed pipe is then caught below
        return code
    except BrokenPipeError:  # the reader (head, less) stopped reading: not an error of ours
        _quiet_stdout()
        return 141
    except (TinyVAEError, OSError) as err:
        if os.environ.get("TINYVAE_DEBUG"):
            raise
        print(_message(err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinyvae: interrupted", file=sys.stderr)
        return 130
