"""``tinyvae evaluate`` (the test figures of a checkpoint) and ``tinyvae score`` (the quality of its samples)."""
from .. import backend as B
from .. import metrics
from .common import UsageError, add_checkpoint, at_least, checkpoint_and_data, conditional, load_checkpoint, \
    load_data, subcommand, trained_on, with_article, write_json
from .report import print_figures, test_figures


@subcommand("evaluate", "test loss, -ELBO, IWAE bound and active units of a checkpoint",
            lambda p: (add_checkpoint(p),
                       p.add_argument("--k", type=at_least(1), default=100, help="importance samples (IWAE)"),
                       p.add_argument("--n", type=at_least(1), default=1000,
                                      help="test images for the IWAE bound (it costs k passes each)")))
def cmd_evaluate(args):
    model, data = checkpoint_and_data(args)
    print(f"evaluating {type(model).__name__} from {args.checkpoint} on {data.name} ({data.x_test.shape[0]} test "
          f"images), backend {B.backend_name()}")
    print_figures(test_figures(model, data.x_test, k=args.k, n_iwae=args.n, labels=data.y_test), model,
                  data.name)
    return 0


def draw_samples(model, n, seed):
    """n prior samples and the digits asked for: a conditional model draws each digit in turn."""
    if conditional(model):
        digits = B.arange(n) % model.num_classes
        return model.sample(n, rng=seed, digits=digits), digits
    return model.sample(n, rng=seed), None


def _args_score(p):
    add_checkpoint(p)
    p.add_argument("--n", type=at_least(2), default=2000, help="samples (and test images) to compare")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")


def _scorable(model, args):
    """An error for a model without a prior, or one whose images the classifier cannot read."""
    if not hasattr(model, "sample"):
        raise UsageError(f"tinyvae score: error: {args.checkpoint} holds {with_article(type(model).__name__)}, which "
                         "has no prior to sample from: score a generative model (vae, cvae, vaegan)")
    if getattr(model, "input_dim", 784) != 784:
        raise UsageError("tinyvae score: error: the classifier scores 28x28 digits (784 pixels); "
                         f"{args.checkpoint} holds a model of {model.input_dim} inputs")


@subcommand("score", "sample quality of a generative checkpoint (Frechet distance, sharpness, ...)", _args_score)
def cmd_score(args):
    B.use(args.backend)
    ckpt = load_checkpoint(args.checkpoint)
    _scorable(ckpt.model, args)
    data = load_data(trained_on(ckpt, args.dataset)[0], progress=False)  # grey levels, as the classifier reads
    samples, digits = draw_samples(ckpt.model, args.n, args.seed)
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
        write_json(args.json, result)
    return 0
