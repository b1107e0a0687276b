"""``tinyvae sample``, ``reconstruct`` and ``interpolate``: one figure of a trained model each.

Each command imports tinyvae.plots when it draws (matplotlib takes a second or more to import: the other commands
start without it).
"""
from .. import backend as B
from .common import UsageError, add_checkpoint, at_least, between, checkpoint_and_data, load_checkpoint, \
    subcommand, unconditional, with_article


def _args_sample(p):
    add_checkpoint(p, "samples.png", dataset=False)
    p.add_argument("--n", type=between(1, 400, "more would be an unreadable mosaic"), default=64,
                   help="how many images (a conditional model without --digit: about n / 10 of each digit)")
    p.add_argument("--digit", type=at_least(0), default=None,
                   help="the digit to draw (conditional models, e.g. a cvae; default: one row of each digit)")


def _check_digit(model, args, name):
    """An error for --digit on a model that is not conditional, or for a digit it does not draw."""
    classes = getattr(model, "num_classes", None)
    if args.digit is not None and not classes:
        raise UsageError(f"tinyvae sample: error: --digit {args.digit}: {args.checkpoint} holds {name}, which is "
                         "not conditional (train one with tinyvae train --model cvae)")
    if args.digit is not None and args.digit >= classes:
        raise UsageError(f"tinyvae sample: error: --digit {args.digit} is out of range: this model draws the "
                         f"digits 0 to {classes - 1}")
    return classes


@subcommand("sample", "draw new images from a VAE checkpoint's prior (--digit for a conditional model)",
            _args_sample)
def cmd_sample(args):
    from .. import plots

    B.use(args.backend)
    model = load_checkpoint(args.checkpoint).model
    name = with_article(type(model).__name__)
    if not hasattr(model, "sample"):
        raise UsageError(f"tinyvae sample: error: {args.checkpoint} holds {name}, which has no prior to sample "
                         "from: train a VAE (tinyvae train --model vae)")
    classes = _check_digit(model, args, name)
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
            lambda p: (add_checkpoint(p, "reconstructions.png"),
                       p.add_argument("--n", type=between(1, 100, "more would be digits too small to see"),
                                      default=10, help="how many test images")))
def cmd_reconstruct(args):
    from .. import plots

    model, data = checkpoint_and_data(args)
    unconditional(model, args)
    if hasattr(model, "noise"):  # a denoising autoencoder: show the corrupted input too
        plots.denoising(model, data.x_test, rng=args.seed, n=args.n, path=args.out)
    else:
        plots.reconstructions(model, data.x_test, n=args.n, path=args.out)
    print(f"wrote reconstructions of {args.n} {data.name} test images to {args.out}")
    return 0


def _args_interpolate(p):
    add_checkpoint(p, "interpolation.png")
    p.add_argument("--steps", type=between(2, 50, "more would be digits too small to see"), default=10,
                   help="images along the walk, ends included")
    p.add_argument("--a", type=at_least(0), default=0, help="index of the first test image")
    p.add_argument("--b", type=at_least(0), default=1, help="index of the second test image")


@subcommand("interpolate", "walk between two test images' latent codes (the figure train writes too)",
            _args_interpolate)
def cmd_interpolate(args):
    from .. import plots

    model, data = checkpoint_and_data(args)
    unconditional(model, args)
    n = data.x_test.shape[0]
    for i in (args.a, args.b):
        if not 0 <= i < n:
            raise UsageError(f"tinyvae interpolate: error: image index {i} is out of range: the test set has {n} "
                             "images")
    plots.blend_comparison(model, data.x_test[args.a], data.x_test[args.b], steps=args.steps, path=args.out)
    print(f"wrote the walk from test image {args.a} to {args.b} ({args.steps} steps) to {args.out}")
    return 0
