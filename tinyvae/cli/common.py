"""What every command group shares: the subcommand table, the option types, the checkpoint and data loaders."""
import argparse
import json
from dataclasses import replace

from .. import backend as B
from .. import checkpoint, datasets
from ..errors import TinyVAEError
from ..files import atomic_write

DATASET_HELP = ("mnist-small (bundled), mnist, fashion-mnist (downloaded once), a -binarized variant of any of "
                "them, or a folder of IDX files")
SUBCOMMANDS = {}  # name -> (help, add_arguments(parser), run(args)), filled by the ``subcommand`` decorator


class UsageError(TinyVAEError):
    """A mistake on the command line."""


def subcommand(name, help, arguments):
    """Register ``run(args)`` as ``tinyvae NAME``; ``arguments(parser)`` adds its options."""
    def register(run):
        SUBCOMMANDS[name] = (help, arguments, run)
        return run

    return register


class Parser(argparse.ArgumentParser):
    """argparse, with its mistakes raised as a UsageError (main prints them as one line, exit code 2)."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message}")


# ------------------------------------------------------------------------------------------------- option types
def int_list(text):
    """An argparse type: comma-separated positive integers such as 400,200."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 400,200; got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers such as 400,200; got {text!r}")
    return values


def at_least(minimum):
    """An argparse type: an int >= minimum (so --epochs 0 fails here, naming the option, not deep in training)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def between(minimum, maximum, why):
    """An argparse type: an int in [minimum, maximum]; ``why`` says what the upper cap protects."""
    low = at_least(minimum)

    def parse(text):
        value = low(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"at most {maximum} ({why}), got {text!r}")
        return value

    return parse


def positive_float(text):
    """An argparse type: a positive finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def add_common(p, seed=True):
    """--backend (and --seed) of every command."""
    p.add_argument("--backend", default=B.backend_name(), choices=B.BACKENDS,
                   help="array backend (default: $TINYVAE_BACKEND, else numpy)")
    if seed:
        p.add_argument("--seed", type=at_least(0), default=0, help="random seed")


def add_checkpoint(p, out=None, dataset=True):
    """The CHECKPOINT argument (and --dataset, --out) of the commands that read a trained model."""
    p.add_argument("checkpoint", help="a model.npz written by tinyvae train")
    if dataset:
        p.add_argument("--dataset", default=None, help="test images from this data set (default: the checkpoint's)")
    if out:
        p.add_argument("--out", default=out, help="the PNG to write")
    add_common(p)


# ------------------------------------------------------------------------------------------------------- output
def plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def with_article(name):
    """``name`` with its indefinite article: "an Autoencoder", "a VAE"."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def write_json(path, data):
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2)


def table(rows, headers):
    """Names (the first column) flush left, figures flush right, no trailing spaces."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


# ------------------------------------------------------------------------------------------------------- inputs
BINARIZE = ("none", "static", "dynamic")


def load_data(name, progress=True, binarize="none"):
    """The data set ``name``; ``binarize`` "static": both splits binarized once (``datasets.binarize``, seeds 1 and
    0), "dynamic": the test split binarized once (seed 0), the training split left for the loop to draw afresh at
    every batch; "none": as it is."""
    data = datasets.load(name, progress=progress)
    if binarize == "none":
        return data
    x_train = datasets.binarize(data.x_train, seed=1) if binarize == "static" else data.x_train
    return replace(data, name=f"{data.name} ({binarize}ally binarized)", x_train=x_train,
                   x_test=datasets.binarize(data.x_test, seed=0))


def load_checkpoint(path):
    return checkpoint.load(path)


def trained_on(ckpt, dataset=None):
    """(data set name, binarize) of the run that wrote ``ckpt``: the name as ``load_data`` takes it (``dataset``,
    i.e. --dataset, when given) and the run's --binarize. A run records both in meta["train"]; older checkpoints and
    ``reproduce``'s name their data set in meta["dataset"]."""
    train = ckpt.meta.get("train", {})
    return dataset or train.get("dataset") or ckpt.meta.get("dataset", "mnist-small"), train.get("binarize") or "none"


def checkpoint_and_data(args):
    """(model, data) of a command with a CHECKPOINT and --dataset, on the backend asked for: the test images as the
    run saw them (binarized once, seed 0, for a run trained with --binarize static or dynamic)."""
    B.use(args.backend)
    ckpt = load_checkpoint(args.checkpoint)
    name, binarize = trained_on(ckpt, args.dataset)
    return ckpt.model, load_data(name, progress=False, binarize=binarize)


def conditional(model):
    """Whether ``model`` decodes a label, p(x|z, y) (ConditionalVAE, SSVAE): its samples are drawn digit by digit and
    it has no single-argument encoder for the reconstruction figures."""
    return bool(getattr(model, "num_classes", None))


def unconditional(model, args):
    """A clear error for a conditional model in a command that does not pass it labels."""
    if conditional(model):
        raise UsageError(f"tinyvae {args.command}: error: {args.checkpoint} holds a conditional model "
                         f"({type(model).__name__}), which this command does not support: use tinyvae sample "
                         "--digit D, or the Python API with labels")
