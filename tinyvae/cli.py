"""The ``tinyvae`` command: train, sample, reconstruct, interpolate, compare-pca, gradcheck, score.
Where tinyvae/instructor/ exists (never in a student copy) it also has `assignment make|grade`.

Also `evaluate CHECKPOINT` (test loss, IWAE bound, active units) and `train --resume RUN_DIR`.

A mistake (a bad option, an unknown name, a missing file, an unavailable backend) is reported on stderr with exit
code 2: one line that names it, followed by any further lines of its reason (a failed download lists each mirror
and what to do by hand); set TINYVAE_DEBUG=1 to see the full traceback instead. Output cut short by a closed pipe
(`tinyvae ... | head -1`) ends quietly.

Layout, so that new models and subcommands plug in with a row:
- ``SUBCOMMANDS``: name -> (help, add_arguments(parser), run(args)), filled by the ``subcommand`` decorator.
- ``MODEL_OPTIONS``: the model options of ``train``, registered in one place; each becomes a constructor keyword
  of the models whose constructor takes it (``MODEL_KWARGS`` adds what a kind computes from the data).
- ``TRAINERS``: kind -> training function, for models with their own training loop (default: ``train.fit``).
"""
import argparse
import inspect
import json
import os
import sys
import time
import warnings
from pathlib import Path

from . import backend as B
from .files import atomic_write

DATASET_HELP = ("mnist-small (bundled), mnist, fashion-mnist (downloaded once), a -binarized variant of any of "
                "them, or a folder of IDX files")
SUBCOMMANDS = {}
TRAINERS = {}


class UsageError(Exception):
    """A mistake on the command line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message}")


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 400,200; got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers such as 400,200; got {text!r}")
    return values


def _between(minimum, maximum, why):
    """An argparse type: an int in [minimum, maximum]; ``why`` says what the upper cap protects."""
    low = _at_least(minimum)

    def parse(text):
        value = low(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"at most {maximum} ({why}), got {text!r}")
        return value

    return parse


def _at_least(minimum):
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


def _plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _a(name):
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _write_json(path, data):
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2)


def _load_data(name, progress=True):
    from . import datasets

    return datasets.load(name, progress=progress)


def _table(rows, headers):
    """Names (the first column) flush left, figures flush right, no trailing spaces."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])



# ----------------------------------------------------------------------------------------------- model options
# (flags, argparse keywords, constructor keyword): one row per option; a model gets those its constructor takes.
MODEL_OPTIONS = [
    (("--latent",), dict(type=_at_least(1), default=20, help="latent dimensions (2 adds the manifold figure)"),
     "latent_dim"),
    (("--hidden",), dict(type=_int_list, default=[400], help="hidden layer sizes, e.g. 400 or 512,256"), "hidden"),
    (("--channels",), dict(type=_int_list, default=[32, 64],
                           help="channels of the stride-2 convolutions (convvae, convae), e.g. 32,64"), "channels"),
    (("--beta",), dict(type=float, default=None,
                       help="weight of the KL term (default: the model's own: 1, and 4 for cvae)"), "beta"),
    (("--likelihood",), dict(choices=("bernoulli", "gaussian"), default="bernoulli",
                             help="decoder likelihood: Bernoulli (BCE, nats) or Gaussian N(x; mean, I/2)"),
     "likelihood"),
    (("--activation",), dict(default="relu", help="hidden activation: relu, leaky_relu, tanh, sigmoid, softplus"),
     "activation"),
    (("--noise",), dict(choices=("gaussian", "masking"), default="gaussian", help="corruption (dae)"), "noise"),
    (("--noise-level",), dict(type=float, default=0.5, help="noise std or masking probability (dae)"),
     "noise_level"),
    (("--disc-hidden",), dict(type=_int_list, default=None,
                              help="vaegan: the discriminator's hidden layer sizes (default: the model's, 512,256)"),
     "disc_hidden"),
    (("--gamma",), dict(type=float, default=None,
                        help="vaegan: weight of the decoder's reconstruction term against its GAN term (default: the "
                             "model's, 0.03)"), "gamma"),
    (("--pixel-weight",), dict(type=float, default=None,
                               help="vaegan: weight of the pixel BCE in the reconstruction term, 0 for Larsen's "
                                    "discriminator features alone (default: the model's, 1)"), "pixel_weight"),
    (("--train-k",), dict(type=_at_least(1), default=1,
                          help="importance samples per image in the TRAINING objective (vae, cvae, convvae): k > 1 "
                               "trains on the IWAE bound, 1 is the plain ELBO (the test bound's own k is "
                               "`tinyvae evaluate --k`)"),
     "k"),
]
# kind -> function(args, data) -> extra constructor keywords computed from the data
MODEL_KWARGS = {
    "convvae": lambda args, data: {"image_shape": (1, *data.image_shape)},
    "convae": lambda args, data: {"image_shape": (1, *data.image_shape)},
    "cvae": lambda args, data: {"num_classes": int(max(data.y_train.max(), data.y_test.max())) + 1},
}


def _constructor_keywords(cls):
    """The keywords ``cls(...)`` takes: its signature's, and its config keys (``models.build`` rebuilds a model from
    them, so each is a keyword; ConvVAE takes beta and k through ``**objective``)."""
    params = inspect.signature(cls).parameters
    return set(params) | set(getattr(cls, "_config_keys", ()))


def _model_kwargs(args, data):
    """The constructor arguments of ``--model``: every registered option its constructor takes, plus its extras."""
    from .models import MODELS

    cls = MODELS[args.model]
    accepted = _constructor_keywords(cls)
    kwargs = {"input_dim": data.x_train.shape[1], "dtype": args.dtype, "rng": args.seed}
    for _, _, name in MODEL_OPTIONS:
        if getattr(args, name) is not None:  # None: the option was not given and the model's default applies
            kwargs[name] = getattr(args, name)
    kwargs.update(MODEL_KWARGS.get(args.model, lambda a, d: {})(args, data))
    if args.k != 1 and "k" not in accepted:
        raise UsageError(f"tinyvae train: error: --train-k {args.k}: --model {args.model} has no importance-"
                         "weighted objective (vae, cvae and convvae have)")
    return {k: v for k, v in kwargs.items() if k in accepted}


def units_lines(model, dataset):
    """What the printed figures measure, for the model's likelihood and the data set ``dataset`` (its name, or the
    folder it was read from) that they were measured on; printed under every table of test figures."""
    from .datasets import BINARIZED, DATASETS
    from .models import recon_constant

    if model.likelihood == "bernoulli":
        if str(dataset).endswith(BINARIZED):
            lines = [f"units: nats per image, -log p(x|z) of a Bernoulli likelihood on the pixels of {dataset}, "
                     "thresholded at 0.5 (one fixed binarization: close to, not identical with, the literature's "
                     "binarized-MNIST figures)."]
        else:
            binarized = f"{dataset}{BINARIZED}" if dataset in DATASETS else f"mnist{BINARIZED}"
            lines = [f"units: nats per image, -log p(x|z) of a Bernoulli likelihood on the grey-level pixels of "
                     f"{dataset}: these figures",
                     f"are not comparable with binarized-MNIST results in the literature: use --dataset {binarized} "
                     "for that."]
        if model.kind == "vaegan":
            lines.append("The VAE-GAN trains on discriminator features and a GAN loss (+ pixel_weight x the pixel "
                         "BCE), not on this ELBO: the test figures score its encoder and decoder as a VAE; "
                         "`tinyvae score` measures its samples.")
        return lines
    return [f"units: nats per image, -log N(x; mean, I/2): the squared error plus D/2 log(pi) = "
            f"{recon_constant(model):.2f} nats (D = {model.input_dim}),",
            "so loss, recon and the IWAE bound are on the same footing; 'squared error' is the error alone."]


def _test_figures(model, x, k=100, n_iwae=1000, labels=None):
    """{name: value} of the test figures: loss, recon (+ squared error), KL, IWAE bound, active units.

    ``labels`` (the test labels) are used by a conditional model only (its figures are then given the labels).
    """
    from .models import VAE, recon_constant
    from .iwae import iwae_bound
    from .train import active_units, evaluate

    labels_all, labels = labels, (labels if getattr(model, "needs_labels", False) else None)
    test = evaluate(model, x, labels=labels)
    const = recon_constant(model)
    figures = {"test loss": test["loss"] + const, "test recon": test["recon"] + const}
    if model.likelihood == "gaussian":
        figures["test squared error"] = test["recon"]
    if model.kind == "ssvae":  # issue 21: M2's classifier, on the test images as given
        figures["test accuracy (%)"] = 100.0 * model.accuracy(x, labels_all)
    if isinstance(model, VAE):
        figures["test KL"] = test["kl"]
        n = min(n_iwae, x.shape[0])
        given = "" if labels is None else " given the label"
        figures[f"test IWAE NLL bound{given} (k={k}, {n} images)"] = iwae_bound(
            model, x[:n], k=k, labels=None if labels is None else labels[:n])
        figures["active units"] = active_units(model, x, labels=labels)
    return figures


def _print_figures(figures, model, dataset):
    rows = [(name, f"{value:.2f}" if isinstance(value, float) else value) for name, value in figures.items()]
    print(_table(rows, ("test figure", "value")))
    for line in units_lines(model, dataset):
        print(line)


def _fit(model, data, args, optimizer, history):
    """The default trainer: ``train.fit`` for the epochs asked, after those already in ``history``."""
    from .train import fit

    return fit(model, data.x_train, args.epochs, batch_size=args.batch_size, optimizer=optimizer,
               x_val=data.x_test, seed=args.seed, progress=not args.quiet, kl_warmup=args.kl_warmup,
               clip=args.clip, history=history, y_train=data.y_train, y_val=data.y_test)


def _fit_vaegan(model, data, args, optimizer, history):
    """The VAE-GAN's own loop (``gan.fit``): one Adam per network (``optimizer`` is their ``optim.PerNetwork``)."""
    from . import gan

    return gan.fit(model, data.x_train, args.epochs, batch_size=args.batch_size, optimizers=optimizer,
                   seed=args.seed, progress=not args.quiet, history=history)


def _vaegan_state():
    from . import gan

    return (lambda model, lr: gan.make_optimizers(model, lr=lr)), gan.VAEGANHistory


TRAINERS["vaegan"] = _fit_vaegan
# kind -> () -> (make_optimizer(model, lr), History class), for a model whose own loop keeps its own state
TRAINING_STATE = {"vaegan": _vaegan_state}


# ---- issue 21 (CS236) hooks: kinds gmvae and ssvae for `train`, `--binarize`, `reproduce cs236`. The logic lives in
# tinyvae/gmvae.py, tinyvae/ssvae.py and tinyvae/reproduce.py; these rows only plug it in (port them to the registry).
MODEL_OPTIONS += [
    (("--components",), dict(type=_at_least(1), default=None,
                             help="gmvae: Gaussian components of the mixture prior (default: the model's, 500)"),
     "components"),
    (("--gen-weight",), dict(type=float, default=None,
                             help="ssvae: weight of the generative term, 0 for the classifier alone (default 1)"),
     "gen_weight"),
    (("--class-weight",), dict(type=float, default=None,
                               help="ssvae: weight of the labeled images' cross-entropy (default 100)"),
     "class_weight"),
]
MODEL_KWARGS["ssvae"] = lambda args, data: {"num_classes": int(max(data.y_train.max(), data.y_test.max())) + 1}
BINARIZE_HELP = ("dynamic: a new Bernoulli draw of the training images at every batch (CS236's), static: one fixed "
                 "draw (seed 0) of the training and test images, none: grey levels. The test images are binarized "
                 "by the fixed draw for dynamic too. With dynamic/static a Bernoulli bound is in nats on BINARY digits")


def _binarized(data, mode):
    """The data set with its images binarized as ``--binarize`` asks (dynamic: the test images; the training
    images are drawn afresh at every batch by the trainer)."""
    from dataclasses import replace

    from .datasets import binarize

    if mode == "none":
        return data
    x_train = binarize(data.x_train, seed=1) if mode == "static" else data.x_train
    return replace(data, name=f"{data.name} ({mode}ally binarized)", x_train=x_train,
                   x_test=binarize(data.x_test, seed=0))


def _trainer(args, kind):
    """The training function of ``kind``: its own, else ``_fit``; with --binarize dynamic, CS236's loop."""
    if getattr(args, "binarize", "none") == "dynamic" and kind not in TRAINERS:
        if kind == "cvae":
            raise UsageError("tinyvae train: error: --binarize dynamic: --model cvae needs labels in every step; "
                             "use --binarize static")
        return _fit_dynamic
    return TRAINERS.get(kind, _fit)


def _fit_dynamic(model, data, args, optimizer, history, loss_args=()):
    """``ssvae.fit_iterations`` for --epochs passes over the training images, binarized afresh at every batch."""
    from .ssvae import fit_iterations

    steps = args.epochs * -(-data.x_train.shape[0] // args.batch_size)
    return fit_iterations(model, data.x_train, steps, batch_size=args.batch_size, seed=args.seed,
                          binarize="dynamic" if args.binarize == "dynamic" else "none", progress=not args.quiet,
                          optimizer=optimizer, history=history, loss_args=loss_args)


def _fit_ssvae(model, data, args, optimizer, history):
    """The SSVAE on every training image, with the labels of the first 10 of each digit (``per_class_subset``)."""
    from .datasets import per_class_subset

    labeled = per_class_subset(data.y_train, 10, model.num_classes)
    loss_args = (B.asarray(data.x_train[labeled], dtype=model.dtype), B.asarray(data.y_train[labeled]))
    return _fit_dynamic(model, data, args, optimizer, history, loss_args=loss_args)


TRAINERS["ssvae"] = _fit_ssvae
# ---- end of the issue 21 hooks for train (the reproduce subcommand is registered further down) ----


def _training_state(kind):
    from .optim import Adam
    from .train import History

    default = lambda: ((lambda model, lr: Adam(model.parameters(), lr=lr)), History)  # noqa: E731
    return TRAINING_STATE.get(kind, default)()


def _own_loop_options(args):
    """A model with its own loop takes neither --kl-warmup nor --clip: say so rather than ignore them."""
    if args.model in TRAINERS:
        for flag, name in (("--kl-warmup", "kl_warmup"), ("--clip", "clip")):
            if getattr(args, name, None):
                raise UsageError(f"tinyvae train: error: {flag}: --model {args.model} trains with its own loop, "
                                 "which has no such option")


def _new_or_resumed(args):
    """(model, optimizer, history, data) for a new run, or for ``--resume RUN_DIR`` from its model.npz."""
    from . import checkpoint
    from .models import MODELS

    if args.resume is None:
        _own_loop_options(args)
        data = _load_data(args.dataset, progress=not args.quiet)
        model = MODELS[args.model](**_model_kwargs(args, data))
        return model, _training_state(args.model)[0](model, args.lr), None, data
    path = Path(args.resume) / "model.npz"
    if not path.is_file():
        raise UsageError(f"tinyvae train: error: --resume {args.resume}: no {path} (give the --out folder of an "
                         "earlier tinyvae train)")
    ckpt = checkpoint.load(path)
    saved = ckpt.meta.get("train", {})
    if ckpt.optimizer is None or "history" not in ckpt.meta:
        raise UsageError(f"tinyvae train: error: --resume: {path} holds no optimizer state or history")
    for name in ("dataset", "batch_size", "kl_warmup", "clip", "seed", "binarize"):  # as the first run had them: exact resume
        if name in saved:
            setattr(args, name, saved[name])
    args.model = ckpt.model.kind
    data = _load_data(args.dataset, progress=not args.quiet)
    return ckpt.model, ckpt.optimizer, _training_state(args.model)[1].from_dict(ckpt.meta["history"]), data


def _figures(model, data, history, out, args):
    """Write the run's figures into ``out``; returns how many."""
    from . import plots
    from .models import VAE, loss_units

    x_test, labels = data.x_test, data.y_test
    if getattr(model, "needs_labels", False) or model.kind == "ssvae":  # conditional: its figures need the labels
        written = [plots.training_curves(history, path=out / "curves.png", units=loss_units(model)),
                   plots.conditional_samples(model, per_digit=8, rng=args.seed, path=out / "samples.png")]
        for fig in written:
            fig.clear()
        return len(written)
    written = [plots.training_curves(history, path=out / "curves.png", units=loss_units(model)),
               plots.reconstructions(model, x_test, path=out / "reconstructions.png"),
               plots.latent_space(model, x_test[:2000], labels[:2000], path=out / "latent_space.png"),
               plots.blend_comparison(model, x_test[0], x_test[1], path=out / "interpolation.png")]
    if isinstance(model, VAE):
        written.append(plots.samples(model, 64, rng=args.seed, path=out / "samples.png"))
        if model.latent_dim == 2:
            written.append(plots.latent_manifold(model, path=out / "manifold.png"))
    if model.kind == "dae":
        written.append(plots.denoising(model, x_test, rng=args.seed, path=out / "denoising.png"))
    for fig in written:
        fig.clear()
    return len(written)


def _args_train(p):
    from .models import MODELS

    p.add_argument("--model", choices=tuple(MODELS), default="vae", help="which model to train")
    p.add_argument("--dataset", default="mnist-small", help=DATASET_HELP)
    p.add_argument("--epochs", type=_at_least(1), default=20, help="epochs to train (more epochs with --resume)")
    for flags, kwargs, dest in MODEL_OPTIONS:
        p.add_argument(*flags, dest=dest, **kwargs)
    p.add_argument("--kl-warmup", type=_at_least(0), default=0, help="epochs over which beta rises from 0 (VAE)")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate")
    p.add_argument("--clip", type=_positive_float, default=None,
                   help="largest joint L2 norm of the gradients (default: no clipping)")
    p.add_argument("--batch-size", type=_at_least(1), default=128, help="examples per step")
    p.add_argument("--binarize", choices=("dynamic", "static", "none"), default="none", help=BINARIZE_HELP)
    p.add_argument("--dtype", choices=B.DTYPES, default=B.dtype_name(None),
                   help="floating dtype (default: $TINYVAE_DTYPE, else float32)")
    p.add_argument("--out", default=None, help="output folder (default: runs/latest, or RUN_DIR with --resume)")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR for --epochs more epochs (its model, optimizer, data set and "
                        "training options; the model options here are ignored)")
    p.add_argument("--no-figures", action="store_true", help="write the checkpoint and metrics.json only")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _common(p)


def subcommand(name, help, arguments):
    """Register ``run(args)`` as ``tinyvae NAME``; ``arguments(parser)`` adds its options."""
    def register(run):
        SUBCOMMANDS[name] = (help, arguments, run)
        return run

    return register


@subcommand("train", "train a model; write the checkpoint, metrics.json and figures", _args_train)
def cmd_train(args):
    from . import checkpoint

    B.use(args.backend)
    out = Path(args.out or args.resume or "runs/latest")
    if out.exists() and not out.is_dir():
        raise UsageError(f"tinyvae train: error: --out {out} exists and is not a folder")
    model, optimizer, history, data = _new_or_resumed(args)
    data = _binarized(data, getattr(args, "binarize", "none"))  # issue 21
    done = len(history) if history is not None else 0
    layers = getattr(model, "channels", getattr(model, "hidden", []))  # a conv model's channels, else hidden sizes
    print(f"{'resuming' if done else 'training'} {type(model).__name__} {model.input_dim}-"
          f"{'-'.join(map(str, layers))}-{model.latent_dim} on {data.name} ({data.x_train.shape[0]} images) for "
          f"{_plural(args.epochs, 'epoch')}{f' after {done}' if done else ''}, backend {B.backend_name()}, "
          f"{model.dtype}")
    start = time.perf_counter()
    with warnings.catch_warnings():  # overflow warnings before a NaN: fit's own error below says what happened
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            history = _trainer(args, model.kind)(model, data, args, optimizer, history)  # issue 21
        except FloatingPointError as err:
            raise UsageError(f"tinyvae train: error: {err}\n(nothing was written; with --lr, try a value 10 times "
                             "smaller, or --clip 10)") from None
    seconds = time.perf_counter() - start
    figures = _test_figures(model, data.x_test, labels=data.y_test)
    figures["training seconds"] = seconds
    out.mkdir(parents=True, exist_ok=True)  # only now: a failed run leaves no empty folder behind
    train_options = {k: getattr(args, k) for k in ("dataset", "batch_size", "kl_warmup", "clip", "seed", "lr",
                                                   "binarize")}
    checkpoint.save(model, out / "model.npz", optimizer, dataset=data.name, epochs=len(history), seed=args.seed,
                    history=history.to_dict(), train=train_options)
    _write_json(out / "metrics.json", {"command": "tinyvae " + " ".join(args.argv), "dataset": data.name,
                                       "config": model.config(), "history": history.to_dict(), "test": figures,
                                       "units": " ".join(units_lines(model, data.name))})
    n_figures = 0 if args.no_figures else _figures(model, data, history, out, args)
    _print_figures(figures, model, data.name)
    print(f"wrote {out / 'model.npz'}, {out / 'metrics.json'} and {_plural(n_figures, 'figure')} in {out}")
    return 0


def _checkpoint(path):
    from . import checkpoint

    return checkpoint.load(path)


def _checkpoint_and_data(args):
    B.use(args.backend)
    ckpt = _checkpoint(args.checkpoint)
    name = args.dataset or ckpt.meta.get("dataset", "mnist-small")
    return ckpt.model, _load_data(name, progress=False)


def _args_checkpoint(p, out=None, dataset=True):
    p.add_argument("checkpoint", help="a model.npz written by tinyvae train")
    if dataset:
        p.add_argument("--dataset", default=None, help="test images from this data set (default: the checkpoint's)")
    if out:
        p.add_argument("--out", default=out, help="the PNG to write")
    _common(p)


@subcommand("evaluate", "test loss, IWAE bound and active units of a checkpoint",
            lambda p: (_args_checkpoint(p),
                       p.add_argument("--k", type=_at_least(1), default=100, help="importance samples (IWAE)"),
                       p.add_argument("--n", type=_at_least(1), default=1000,
                                      help="test images for the IWAE bound (it costs k passes each)")))
def cmd_evaluate(args):
    model, data = _checkpoint_and_data(args)
    print(f"evaluating {type(model).__name__} from {args.checkpoint} on {data.name} ({data.x_test.shape[0]} test "
          f"images), backend {B.backend_name()}")
    _print_figures(_test_figures(model, data.x_test, k=args.k, n_iwae=args.n, labels=data.y_test), model,
                   data.name)
    return 0


def _args_sample(p):
    _args_checkpoint(p, "samples.png", dataset=False)
    p.add_argument("--n", type=_between(1, 400, "more would be an unreadable mosaic"), default=64,
                   help="how many images (a conditional model without --digit: about n / 10 of each digit)")
    p.add_argument("--digit", type=_at_least(0), default=None,
                   help="the digit to draw (conditional models, e.g. a cvae; default: one row of each digit)")


@subcommand("sample", "draw new images from a VAE checkpoint's prior (--digit for a conditional model)",
            _args_sample)
def cmd_sample(args):
    from . import plots

    B.use(args.backend)
    ckpt = _checkpoint(args.checkpoint)
    model, name = ckpt.model, _a(type(ckpt.model).__name__)
    if not hasattr(model, "sample"):
        raise UsageError(f"tinyvae sample: error: {args.checkpoint} holds {name}, which has no prior to sample "
                         "from: train a VAE (tinyvae train --model vae)")
    classes = getattr(model, "num_classes", None)
    if args.digit is not None and not classes:
        raise UsageError(f"tinyvae sample: error: --digit {args.digit}: {args.checkpoint} holds {name}, which is "
                         "not conditional (train one with tinyvae train --model cvae)")
    if args.digit is not None and args.digit >= classes:
        raise UsageError(f"tinyvae sample: error: --digit {args.digit} is out of range: this model draws the "
                         f"digits 0 to {classes - 1}")
    if args.digit is not None:
        plots.image_grid(model.sample(args.n, rng=args.seed, digits=args.digit), path=args.out,
                         title=f"{args.n} samples of the digit {args.digit}")
        print(f"wrote {args.n} samples of the digit {args.digit} to {args.out}")
    elif classes:
        per_digit = max(1, args.n // classes)
        plots.conditional_samples(model, per_digit=per_digit, rng=args.seed, path=args.out)
        print(f"wrote {per_digit} samples of each of the {classes} digits to {args.out}")
    else:
        plots.samples(model, args.n, rng=args.seed, path=args.out)
        print(f"wrote {args.n} samples from the prior to {args.out}")
    return 0


@subcommand("reconstruct", "test images over their reconstructions",
            lambda p: (_args_checkpoint(p, "reconstructions.png"),
                       p.add_argument("--n", type=_between(1, 100, "more would be digits too small to see"),
                                      default=10, help="how many test images")))
def cmd_reconstruct(args):
    from . import plots

    model, data = _checkpoint_and_data(args)
    _unconditional(model, args)
    if model.kind == "dae":
        plots.denoising(model, data.x_test, rng=args.seed, n=args.n, path=args.out)
    else:
        plots.reconstructions(model, data.x_test, n=args.n, path=args.out)
    print(f"wrote reconstructions of {args.n} {data.name} test images to {args.out}")
    return 0


def _unconditional(model, args):
    """A clear error for a conditional model in a command that does not pass it labels."""
    if getattr(model, "needs_labels", False):
        raise UsageError(f"tinyvae {args.command}: error: {args.checkpoint} holds a conditional model "
                         f"({type(model).__name__}), which this command does not support: use tinyvae sample "
                         "--digit D, or the Python API with labels")


def _args_interpolate(p):
    _args_checkpoint(p, "interpolation.png")
    p.add_argument("--steps", type=_between(2, 50, "more would be digits too small to see"), default=10,
                   help="images along the walk, ends included")
    p.add_argument("--a", type=_at_least(0), default=0, help="index of the first test image")
    p.add_argument("--b", type=_at_least(0), default=1, help="index of the second test image")


@subcommand("interpolate", "walk between two test images' latent codes (the figure train writes too)",
            _args_interpolate)
def cmd_interpolate(args):
    from . import plots

    model, data = _checkpoint_and_data(args)
    _unconditional(model, args)
    n = data.x_test.shape[0]
    for i in (args.a, args.b):
        if not 0 <= i < n:
            raise UsageError(f"tinyvae interpolate: error: image index {i} is out of range: the test set has {n} "
                             "images")
    plots.blend_comparison(model, data.x_test[args.a], data.x_test[args.b], steps=args.steps, path=args.out)
    print(f"wrote the walk from test image {args.a} to {args.b} ({args.steps} steps) to {args.out}")
    return 0


def _args_compare_pca(p):
    p.add_argument("--dataset", default="mnist-small", help=DATASET_HELP)
    p.add_argument("--latents", type=_int_list, default=[2, 10, 20, 32], help="latent sizes to compare")
    p.add_argument("--epochs", type=_at_least(1), default=10, help="training epochs of each autoencoder")
    p.add_argument("--hidden", type=_int_list, default=[400], help="hidden layer sizes of the autoencoder")
    p.add_argument("--out", default="ae_vs_pca.png", help="the PNG to write")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _common(p)


@subcommand("compare-pca", "autoencoder vs PCA test error at several latent sizes", _args_compare_pca)
def cmd_compare_pca(args):
    from . import plots
    from .experiments import ae_vs_pca

    B.use(args.backend)
    data = _load_data(args.dataset, progress=False)
    print(f"test squared error per image (sum over pixels, not nats) on {data.name}: PCA vs an autoencoder "
          f"{data.x_train.shape[1]}-{'-'.join(map(str, args.hidden))}-k trained {_plural(args.epochs, 'epoch')}")
    rows = ae_vs_pca(data.x_train, data.x_test, args.latents, epochs=args.epochs, hidden=args.hidden, seed=args.seed,
                     progress=not args.quiet)
    print(_table([(r["latent"], f"{r['pca']:.2f}", f"{r['ae']:.2f}", f"{r['ae'] / r['pca']:.2f}") for r in rows],
                 ("latent", "PCA", "autoencoder", "AE/PCA")))
    plots.ae_vs_pca([r["latent"] for r in rows], [r["ae"] for r in rows], [r["pca"] for r in rows], path=args.out)
    print(f"wrote {args.out}")
    return 0


@subcommand("gradcheck", "check every hand-written backward pass against finite differences", lambda p: _common(p))
def cmd_gradcheck(args):
    from .gradcheck import check_components

    B.use(args.backend)
    report = check_components(seed=args.seed)
    print(f"tinyvae gradient check: float64 centered differences (h = 1e-5), backend {B.backend_name()}")
    print(report)
    return 0 if report.passed else 1


# ---- issue 21 (CS236): `tinyvae reproduce cs236`, a thin hook over tinyvae/reproduce.py ----
def _args_reproduce(p):
    p.add_argument("which", choices=("cs236",), help="the table to reproduce: cs236 (Stanford CS236 homework 2)")
    p.add_argument("--dataset", default="mnist-small",
                   help="MNIST: mnist-small (bundled), mnist, or a folder of the four IDX files (all 60,000 "
                        "training images for the bands)")
    p.add_argument("--quick", action="store_true", help="far fewer steps (about a minute on the bundled data, for CI)")
    p.add_argument("--binarize", choices=("dynamic", "none"), default="dynamic",
                   help="training images: a new Bernoulli draw at every batch (the homework's), or grey levels")
    p.add_argument("--out", default="runs/cs236", help="folder for results.json, the checkpoints and the figures")
    p.add_argument("--models", default="vae,gmvae,ssvae,classifier",
                   help="which of vae, gmvae, ssvae, classifier to train (comma-separated)")
    p.add_argument("--full-iwae-m", type=_at_least(1), default=None,
                   help="importance samples of the whole test set's IWAE bound (default 1000; 5 with --quick)")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _common(p)


@subcommand("reproduce", "reproduce a published table: cs236 (VAE, GMVAE, IWAE, SSVAE on binarized MNIST)",
            _args_reproduce)
def cmd_reproduce(args):
    from . import reproduce

    B.use(args.backend)
    results = reproduce.run(args.dataset, quick=args.quick, out=args.out, seed=args.seed, binarize=args.binarize,
                            progress=not args.quiet, figures=not args.no_figures, full_iwae_m=args.full_iwae_m,
                            kinds=tuple(k.strip() for k in args.models.split(",") if k.strip()))
    print(f"wrote {Path(args.out) / 'results.json'}, the checkpoints and "
          f"{_plural(len(results.get('figures', [])), 'figure')} in {args.out}")
    return 0 if args.quick or all(r["pass"] is not False for r in results["rows"]) else 1


# ---- tinyvae score (issue 11): self-contained ----
_LABEL_ARGS = ("digits", "digit", "labels", "y")


def _draw_samples(model, n, seed):
    """n prior samples; a conditional model is asked for each digit in turn, returned as the requested digits."""
    import inspect

    params = inspect.signature(model.sample).parameters
    label_arg = next((name for name in _LABEL_ARGS if name in params), None)
    if getattr(model, "num_classes", None) and label_arg:
        digits = B.arange(n) % model.num_classes
        return model.sample(n, rng=seed, **{label_arg: digits}), digits
    return model.sample(n, rng=seed), None


def _args_score(p):
    _args_checkpoint(p)
    p.add_argument("--n", type=_at_least(2), default=2000, help="samples (and test images) to compare")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")


@subcommand("score", "sample quality of a generative checkpoint (Frechet distance, sharpness, ...)", _args_score)
def cmd_score(args):
    from . import metrics

    B.use(args.backend)
    ckpt = _checkpoint(args.checkpoint)
    if not hasattr(ckpt.model, "sample"):
        raise UsageError(f"tinyvae score: error: {args.checkpoint} holds {_a(type(ckpt.model).__name__)}, which "
                         "has no prior to sample from: score a generative model (vae, cvae, vaegan)")
    if getattr(ckpt.model, "input_dim", 784) != 784:
        raise UsageError("tinyvae score: error: the classifier scores 28x28 digits (784 pixels); "
                         f"{args.checkpoint} holds a model of {ckpt.model.input_dim} inputs")
    data = _load_data(args.dataset or ckpt.meta.get("dataset", "mnist-small"), progress=False)
    samples, digits = _draw_samples(ckpt.model, args.n, args.seed)
    real = B.asarray(data.x_test[:args.n])
    result = metrics.score(samples, real, digits=digits)
    print(f"{args.n} samples of {args.checkpoint} against {real.shape[0]} test images")
    print(f"Frechet distance      {result['frechet_distance']:.3f}   (FID recipe with an MNIST classifier, "
          "not comparable to published FIDs)")
    print(f"sharpness             {result['sharpness']:.4f}   (real test images: {result['sharpness_real']:.4f}; "
          "mean Laplacian energy)")
    if "conditional_accuracy" in result:
        print(f"conditional accuracy  {result['conditional_accuracy']:.4f}   (the classifier finds the requested digit)")
    print("digit shares          " + " ".join(f"{d}:{s:.3f}" for d, s in enumerate(result["digit_shares"])))
    if args.json:
        _write_json(args.json, result)
    return 0


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _common(p, seed=True):
    p.add_argument("--backend", default=B.backend_name(), choices=B.BACKENDS,
                   help="array backend (default: $TINYVAE_BACKEND, else numpy)")
    if seed:
        p.add_argument("--seed", type=_at_least(0), default=0, help="random seed")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where the help already says it or there is none."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False or action.default == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def build_parser():
    from . import __version__

    parser = _Parser(prog="tinyvae", description=__doc__.splitlines()[0], formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"tinyvae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (help, arguments, run) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help, description=help, formatter_class=_Formatter)
        arguments(p)
        p.set_defaults(func=run)
    if (Path(__file__).resolve().parent / "instructor" / "__init__.py").is_file():  # never in a student copy
        from .instructor.cli import add_assignment_commands

        add_assignment_commands(sub)
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
    except (UsageError, B.BackendUnavailable, ValueError, TypeError, OSError, KeyError, RuntimeError,
            FloatingPointError) as err:
        if os.environ.get("TINYVAE_DEBUG"):
            raise
        print(_message(err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinyvae: interrupted", file=sys.stderr)
        return 130
