"""``tinyvae reproduce cs236``: Stanford CS236 homework 2's table (VAE, GMVAE, IWAE, SSVAE) beside its bands.

A thin command over ``tinyvae.reproduce``, where the training, the evaluation and the table live.
"""
from pathlib import Path

from .. import backend as B
from .common import add_common, at_least, plural, subcommand


def _args_reproduce(p):
    p.add_argument("which", choices=("cs236",), help="the table to reproduce: cs236 (Stanford CS236 homework 2)")
    p.add_argument("--dataset", default="mnist-small",
                   help="MNIST: mnist-small (bundled), mnist, or a folder of the four IDX files (all 60,000 "
                        "training images for the bands)")
    p.add_argument("--quick", action="store_true", help="far fewer steps (about a minute on the bundled data, for CI)")
    p.add_argument("--binarize", choices=("dynamic", "static", "none"), default="dynamic",
                   help="training images: a new Bernoulli draw at every batch (dynamic, the homework's), one draw "
                        "(static, seed 1) or grey levels (none); the test images are drawn once (seed 0)")
    p.add_argument("--out", default="runs/cs236", help="folder for results.json, the checkpoints and the figures")
    p.add_argument("--models", default="vae,gmvae,ssvae,classifier",
                   help="which of vae, gmvae, ssvae, classifier to train (comma-separated)")
    p.add_argument("--full-iwae-m", type=at_least(1), default=None,
                   help="importance samples of the whole test set's IWAE bound (default 1000; 5 with --quick)")
    p.add_argument("--subsets", choices=("cs236", "first"), default=None,
                   help="the 100 labeled training images and the 100-image test subset: the homework's hand-picked "
                        "ones (cs236; the default, needs MNIST's full sets) or the first 10 of each digit (first; "
                        "the default with --quick)")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_common(p)


@subcommand("reproduce", "reproduce a published table: cs236 (VAE, GMVAE, IWAE, SSVAE on binarized MNIST)",
            _args_reproduce)
def cmd_reproduce(args):
    from .. import reproduce

    B.use(args.backend)
    results = reproduce.run(args.dataset, quick=args.quick, out=args.out, seed=args.seed, binarize=args.binarize,
                            progress=not args.quiet, figures=not args.no_figures, full_iwae_m=args.full_iwae_m,
                            subsets=args.subsets,
                            kinds=tuple(k.strip() for k in args.models.split(",") if k.strip()))
    print(f"wrote {Path(args.out) / 'results.json'}, the checkpoints and "
          f"{plural(len(results.get('figures', [])), 'figure')} in {args.out}")
    return 0 if args.quick or all(r["pass"] is not False for r in results["rows"]) else 1
