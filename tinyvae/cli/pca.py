"""``tinyvae compare-pca``: an autoencoder's test error against PCA's at several latent sizes."""
from .. import backend as B
from ..experiments import ae_vs_pca
from .common import DATASET_HELP, add_common, at_least, int_list, load_data, plural, subcommand, table


def _args_compare_pca(p):
    p.add_argument("--dataset", default="mnist-small", help=DATASET_HELP)
    p.add_argument("--latents", type=int_list, default=[2, 10, 20, 32], help="latent sizes to compare")
    p.add_argument("--epochs", type=at_least(1), default=10, help="training epochs of each autoencoder")
    p.add_argument("--hidden", type=int_list, default=[400], help="hidden layer sizes of the autoencoder")
    p.add_argument("--out", default="ae_vs_pca.png", help="the PNG to write")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_common(p)


@subcommand("compare-pca", "autoencoder vs PCA test error at several latent sizes", _args_compare_pca)
def cmd_compare_pca(args):
    from .. import plots

    B.use(args.backend)
    data = load_data(args.dataset, progress=False)
    print(f"test squared error per image (sum over pixels, not nats) on {data.name}: PCA vs an autoencoder "
          f"{data.x_train.shape[1]}-{'-'.join(map(str, args.hidden))}-k trained {plural(args.epochs, 'epoch')}")
    rows = ae_vs_pca(data.x_train, data.x_test, args.latents, epochs=args.epochs, hidden=args.hidden, seed=args.seed,
                     progress=not args.quiet)
    print(table([(r["latent"], f"{r['pca']:.2f}", f"{r['ae']:.2f}", f"{r['ae'] / r['pca']:.2f}") for r in rows],
                ("latent", "PCA", "autoencoder", "AE/PCA")))
    plots.ae_vs_pca([r["latent"] for r in rows], [r["ae"] for r in rows], [r["pca"] for r in rows], path=args.out)
    print(f"wrote {args.out}")
    return 0
