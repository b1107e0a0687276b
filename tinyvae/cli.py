"""The ``tinyvae`` command: train, sample, reconstruct, interpolate, compare-pca, gradcheck, score.
Where tinyvae/instructor/ exists (never in a student copy) it also has `assignment make|grade`.

A mistake (a bad option, an unknown name, a missing file, an unavailable backend) is reported in one line on
stderr with exit code 2; set TINYVAE_DEBUG=1 to see the full traceback instead.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import backend as B
from .files import atomic_write

DATASET_HELP = "mnist-small (bundled), mnist, fashion-mnist, or a folder of IDX files"


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


def _model_kwargs(args, data):
    """The constructor arguments of ``--model`` from the options (each model takes the ones it has)."""
    common = dict(latent_dim=args.latent, likelihood=args.likelihood, activation=args.activation, dtype=args.dtype,
                  rng=args.seed)
    if args.model in ("convvae", "convae"):
        kwargs = dict(image_shape=(1, *data.image_shape), channels=args.channels, **common)
    else:
        kwargs = dict(input_dim=data.x_train.shape[1], hidden=args.hidden, **common)
    if args.model in ("vae", "convvae"):
        kwargs["beta"] = args.beta
    if args.model == "dae":
        kwargs.update(noise=args.noise, noise_level=args.noise_level)
    return kwargs


def cmd_train(args):
    from . import checkpoint, plots
    from .models import MODELS, VAE
    from .optim import Adam
    from .train import active_units, evaluate, fit, iwae_bound

    B.use(args.backend)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"tinyvae train: error: --out {out} exists and is not a folder")
    data = _load_data(args.dataset, progress=not args.quiet)
    model = MODELS[args.model](**_model_kwargs(args, data))
    is_vae = isinstance(model, VAE)
    optimizer = Adam(model.parameters(), lr=args.lr)
    out.mkdir(parents=True, exist_ok=True)  # only now: a bad option above leaves no empty folder behind
    layers = getattr(model, "channels", args.hidden)  # a convolutional model's channels, else the hidden sizes
    print(f"training {type(model).__name__} {data.x_train.shape[1]}-{'-'.join(map(str, layers))}-"
          f"{args.latent} on {data.name} ({data.x_train.shape[0]} images) for {_plural(args.epochs, 'epoch')}, "
          f"backend {B.backend_name()}, {model.dtype}")
    start = time.perf_counter()
    history = fit(model, data.x_train, args.epochs, batch_size=args.batch_size, optimizer=optimizer,
                  x_val=data.x_test, seed=args.seed, progress=not args.quiet, kl_warmup=args.kl_warmup)
    seconds = time.perf_counter() - start

    test = evaluate(model, data.x_test)
    figures = {"test loss (nats/image)": test["loss"], "test recon": test["recon"]}
    if is_vae:
        figures["test KL"] = test["kl"]
        n_iwae = min(1000, data.x_test.shape[0])
        figures[f"test IWAE NLL bound (k=100, {n_iwae} images)"] = iwae_bound(model, data.x_test[:n_iwae], k=100)
        figures["active units"] = active_units(model, data.x_test)
    figures["training seconds"] = seconds

    checkpoint.save(model, out / "model.npz", optimizer, dataset=data.name, epochs=args.epochs, seed=args.seed)
    _write_json(out / "metrics.json", {"command": "tinyvae " + " ".join(args.argv), "dataset": data.name,
                                       "config": model.config(), "history": history.to_dict(), "test": figures})
    x_test, labels = data.x_test, data.y_test
    written = [plots.training_curves(history, path=out / "curves.png"),
               plots.reconstructions(model, x_test, path=out / "reconstructions.png"),
               plots.latent_space(model, x_test[:2000], labels[:2000], path=out / "latent_space.png"),
               plots.interpolation(model, x_test[0], x_test[1], path=out / "interpolation.png")]
    if is_vae:
        written.append(plots.samples(model, 64, rng=args.seed, path=out / "samples.png"))
        if args.latent == 2:
            written.append(plots.latent_manifold(model, path=out / "manifold.png"))
    if args.model == "dae":
        written.append(plots.denoising(model, x_test, rng=args.seed, path=out / "denoising.png"))
    for fig in written:
        fig.clear()

    rows = [(name, f"{value:.2f}" if isinstance(value, float) else value) for name, value in figures.items()]
    print(_table(rows, ("test figure", "value")))
    print(f"wrote {out / 'model.npz'}, {out / 'metrics.json'} and {len(written)} figures in {out}")
    return 0


def _checkpoint(path):
    from . import checkpoint

    return checkpoint.load(path)


def cmd_sample(args):
    from . import plots

    B.use(args.backend)
    ckpt = _checkpoint(args.checkpoint)
    if not hasattr(ckpt.model, "sample"):
        raise UsageError(f"tinyvae sample: error: {args.checkpoint} holds {_a(type(ckpt.model).__name__)}, which "
                         "has no prior to sample from: train a VAE (tinyvae train --model vae)")
    plots.samples(ckpt.model, args.n, rng=args.seed, path=args.out)
    print(f"wrote {args.n} samples from the prior to {args.out}")
    return 0


def _checkpoint_and_data(args):
    B.use(args.backend)
    ckpt = _checkpoint(args.checkpoint)
    name = args.dataset or ckpt.meta.get("dataset", "mnist-small")
    return ckpt.model, _load_data(name, progress=False)


def cmd_reconstruct(args):
    from . import plots

    model, data = _checkpoint_and_data(args)
    if model.kind == "dae":
        plots.denoising(model, data.x_test, rng=args.seed, n=args.n, path=args.out)
    else:
        plots.reconstructions(model, data.x_test, n=args.n, path=args.out)
    print(f"wrote reconstructions of {args.n} {data.name} test images to {args.out}")
    return 0


def cmd_interpolate(args):
    from . import plots

    model, data = _checkpoint_and_data(args)
    n = data.x_test.shape[0]
    for i in (args.a, args.b):
        if not 0 <= i < n:
            raise UsageError(f"tinyvae interpolate: error: image index {i} is out of range: the test set has {n} "
                             "images")
    plots.blend_comparison(model, data.x_test[args.a], data.x_test[args.b], steps=args.steps, path=args.out)
    print(f"wrote the walk from test image {args.a} to {args.b} ({args.steps} steps) to {args.out}")
    return 0


def cmd_compare_pca(args):
    from . import plots
    from .experiments import ae_vs_pca

    B.use(args.backend)
    data = _load_data(args.dataset, progress=False)
    print(f"test squared error per image on {data.name}: PCA vs an autoencoder "
          f"{data.x_train.shape[1]}-{'-'.join(map(str, args.hidden))}-k trained {_plural(args.epochs, 'epoch')}")
    rows = ae_vs_pca(data.x_train, data.x_test, args.latents, epochs=args.epochs, hidden=args.hidden, seed=args.seed,
                     progress=not args.quiet)
    print(_table([(r["latent"], f"{r['pca']:.2f}", f"{r['ae']:.2f}", f"{r['ae'] / r['pca']:.2f}") for r in rows],
                 ("latent", "PCA", "autoencoder", "AE/PCA")))
    plots.ae_vs_pca([r["latent"] for r in rows], [r["ae"] for r in rows], [r["pca"] for r in rows], path=args.out)
    print(f"wrote {args.out}")
    return 0


def cmd_gradcheck(args):
    from .gradcheck import check_components

    B.use(args.backend)
    report = check_components(seed=args.seed)
    print(f"tinyvae gradient check: float64 centered differences (h = 1e-5), backend {B.backend_name()}")
    print(report)
    return 0 if report.passed else 1


# ---- tinyvae score (issue 11): self-contained; registered by _add_score_command ----
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


def _add_score_command(sub):
    p = sub.add_parser("score", help="sample quality of a generative checkpoint (Frechet distance, sharpness, ...)")
    p.add_argument("checkpoint")
    p.add_argument("--n", type=_at_least(2), default=2000, help="samples (and test images) to compare")
    p.add_argument("--dataset", default=None, help="real images to compare with (default: the checkpoint's); "
                   + DATASET_HELP)
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    _common(p)
    p.set_defaults(func=cmd_score)


def _common(p, seed=True):
    p.add_argument("--backend", default=B.backend_name(), choices=B.BACKENDS,
                   help="array backend (default: $TINYVAE_BACKEND, else numpy)")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def build_parser():
    from .models import LIKELIHOODS, MODELS, NOISES

    parser = _Parser(prog="tinyvae", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("train", help="train a model; write the checkpoint, metrics.json and figures")
    p.add_argument("--model", choices=tuple(MODELS), default="vae")
    p.add_argument("--dataset", default="mnist-small", help=DATASET_HELP)
    p.add_argument("--epochs", type=_at_least(1), default=20)
    p.add_argument("--latent", type=_at_least(1), default=20, help="latent dimensions (2 adds the manifold figure)")
    p.add_argument("--hidden", type=_int_list, default=[400], help="hidden sizes, e.g. 400 or 512,256")
    p.add_argument("--channels", type=_int_list, default=[32, 64],
                   help="channels of the stride-2 convolutions (convvae, convae), e.g. 32,64")
    p.add_argument("--beta", type=float, default=1.0, help="weight of the KL term (VAE)")
    p.add_argument("--kl-warmup", type=_at_least(0), default=0, help="epochs over which beta rises from 0 (VAE)")
    p.add_argument("--likelihood", choices=LIKELIHOODS, default="bernoulli")
    p.add_argument("--activation", default="relu")
    p.add_argument("--noise", choices=NOISES, default="gaussian", help="corruption (dae)")
    p.add_argument("--noise-level", type=float, default=0.5, help="noise std or masking probability (dae)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=_at_least(1), default=128)
    p.add_argument("--dtype", choices=B.DTYPES, default="float32")
    p.add_argument("--out", default="runs/latest", help="output folder (default: runs/latest)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="draw new images from a VAE checkpoint's prior")
    p.add_argument("checkpoint")
    p.add_argument("--n", type=_at_least(1), default=64)
    p.add_argument("--out", default="samples.png")
    _common(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("reconstruct", help="test images over their reconstructions")
    p.add_argument("checkpoint")
    p.add_argument("--dataset", default=None, help="default: the checkpoint's data set")
    p.add_argument("--n", type=_at_least(1), default=10)
    p.add_argument("--out", default="reconstructions.png")
    _common(p)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("interpolate", help="walk between two test images' latent codes")
    p.add_argument("checkpoint")
    p.add_argument("--dataset", default=None, help="default: the checkpoint's data set")
    p.add_argument("--steps", type=_at_least(2), default=10)
    p.add_argument("--a", type=int, default=0, help="index of the first test image")
    p.add_argument("--b", type=int, default=1, help="index of the second test image")
    p.add_argument("--out", default="interpolation.png")
    _common(p)
    p.set_defaults(func=cmd_interpolate)

    p = sub.add_parser("compare-pca", help="autoencoder vs PCA test error at several latent sizes")
    p.add_argument("--dataset", default="mnist-small", help=DATASET_HELP)
    p.add_argument("--latents", type=_int_list, default=[2, 10, 20, 32])
    p.add_argument("--epochs", type=_at_least(1), default=10)
    p.add_argument("--hidden", type=_int_list, default=[400])
    p.add_argument("--out", default="ae_vs_pca.png")
    p.add_argument("--quiet", action="store_true")
    _common(p)
    p.set_defaults(func=cmd_compare_pca)

    p = sub.add_parser("gradcheck", help="check every hand-written backward pass against finite differences")
    _common(p)
    p.set_defaults(func=cmd_gradcheck)

    _add_score_command(sub)

    if (Path(__file__).resolve().parent / "instructor" / "__init__.py").is_file():  # never in a student copy
        from .instructor.cli import add_assignment_commands

        add_assignment_commands(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.argv = sys.argv[1:] if argv is None else [str(a) for a in argv]  # recorded in metrics.json
        if args.command is None:
            parser.print_help()
            return 2
        return args.func(args)
    except (UsageError, B.BackendUnavailable, ValueError, TypeError, OSError, KeyError, RuntimeError,
            FloatingPointError) as err:
        if os.environ.get("TINYVAE_DEBUG"):
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if not message.startswith("tinyvae"):
            message = f"tinyvae: error: {message}"
        print(message, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinyvae: interrupted", file=sys.stderr)
        return 130
