"""Beyond the blur: sample quality of the VAE, beta-VAEs, IWAE, CVAE and VAE-GAN, side by side.

    nice -n 10 python benchmarks/bench_beyond_blur.py [--data ../shared/data/mnist] [--epochs 10] [--seeds 3]
        [--samples 10000] [--iwae-n 500] [--iwae-k 1000] [--only vae,beta0.5,...]

Every model: 784-400-20-400-784 (ReLU, Bernoulli decoder), Adam lr 1e-3, batch 128, float32, the same epochs;
the VAE-GAN adds its defaults (discriminator 784-512-256-1, gamma 0.03, pixel_weight 1) and trains with gan.fit
(one Adam per network: 1e-3 for encoder and decoder, 2e-4 for the discriminator, beta1 0.5). Each model is
trained on the training split of --data and scored against its test split. For each model: the Frechet
distance of the shipped classifier's penultimate features between --samples prior samples and the test images (the FID recipe with an MNIST classifier in place of Inception: NOT comparable
to published FIDs), the sharpness (mean Laplacian energy; the real test images' figure is printed beside it), the
digit shares' range (mode collapse), and seconds per training epoch. VAE and VAE-GAN are trained with --seeds
seeds (mean and spread); the CVAE (with its default beta = 4, see ConditionalVAE) adds the classifier's accuracy
on the digit it was asked for; the VAE and the
IWAE (k = 5) add the test IWAE bound (k = --iwae-k, on the first --iwae-n test images) and active units.
Models not in this checkout (the VAE-GAN) are listed as missing rather than failing the run.
"""
import argparse
import statistics
import time

import machine
import tinyvae as tv
from tinyvae import classifier, datasets, kinds, metrics, models
from tinyvae.iwae import iwae_bound
from tinyvae.train import active_units, fit

SIZES = dict(input_dim=784, hidden=(400,), latent_dim=20)


def _vae(seed, **kw):
    return models.VAE(**SIZES, rng=seed, **kw)


def _registered(kind):
    return lambda seed, **kw: kinds.MODELS[kind](**SIZES, rng=seed, **kw) if kind in kinds.MODELS else None


SPECS = {  # name: (builder, kwargs, needs labels)
    "vae": (_vae, {}, False),
    "beta0.5": (_vae, {"beta": 0.5}, False),
    "beta4": (_vae, {"beta": 4.0}, False),
    "iwae5": (_vae, {"k": 5}, False),
    "cvae": (_registered("cvae"), {"num_classes": 10}, True),
    "vaegan": (_registered("vaegan"), {}, False),
}
MULTI_SEED = ("vae", "vaegan")


def train(name, model, data, epochs, seed):
    """Train with the model's own loop (VAE-GAN) or fit; returns seconds per epoch."""
    start = time.perf_counter()
    if name == "vaegan":
        from tinyvae import gan
        gan.fit(model, data.x_train, epochs, seed=seed, progress=False)
    else:
        y = data.y_train if SPECS[name][2] else None
        fit(model, data.x_train, epochs, seed=seed, progress=False, y_train=y)
    return (time.perf_counter() - start) / epochs


def samples_of(model, n, seed, conditional):
    if conditional:  # a ConditionalVAE: each digit in turn
        digits = tv.backend.arange(n) % model.num_classes
        return model.sample(n, rng=seed, digits=digits), digits
    return model.sample(n, rng=seed), None


def run_one(name, seed, data, args, clf, real):
    builder, kwargs, conditional = SPECS[name]
    model = builder(seed, **kwargs)
    if model is None:
        return None
    row = {"epoch_s": train(name, model, data, args.epochs, seed)}
    x, digits = samples_of(model, args.samples, seed + 1000, conditional)
    row.update(metrics.score(x, real, clf, digits=digits))
    if name in ("vae", "iwae5") and seed == args.first_seed:
        sub = tv.asarray(data.x_test[:args.iwae_n])
        row["iwae_bound"] = iwae_bound(model, sub, k=args.iwae_k, batch_size=10)
        row["active_units"] = active_units(model, tv.asarray(data.x_test))
    return row


def spread(values):
    return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    machine.add_data_argument(p)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--iwae-n", type=int, default=500)
    p.add_argument("--iwae-k", type=int, default=1000)
    p.add_argument("--only", default=",".join(SPECS))
    args = p.parse_args(argv)

    data = datasets.load(args.data, download=False)
    clf, real = classifier.load_pretrained(), tv.asarray(data.x_test[:args.samples])
    print(f"{data.x_train.shape[0]} training images, {real.shape[0]} test images, {args.epochs} epochs, "
          f"{args.samples} samples; Frechet distance = FID recipe with an MNIST classifier, not comparable to "
          f"published FIDs; real test images' sharpness {metrics.sharpness(real):.4f}")
    header = f"{'model':<8} {'seeds':>5} {'Frechet':>16} {'sharpness':>16} {'digit shares':>13} {'cond.acc':>8} " \
             f"{'IWAE bound':>10} {'active':>6} {'s/epoch':>7}"
    print(header + "\n" + "-" * len(header))
    for name in args.only.split(","):
        seeds = range(args.first_seed, args.first_seed + (args.seeds if name in MULTI_SEED else 1))
        rows = [r for r in (run_one(name, s, data, args, clf, real) for s in seeds) if r is not None]
        if not rows:
            print(f"{name:<8} missing: not in this checkout")
            continue
        fd, sh = spread([r["frechet_distance"] for r in rows]), spread([r["sharpness"] for r in rows])
        shares = [v for r in rows for v in r["digit_shares"]]
        acc = f"{rows[0]['conditional_accuracy']:.3f}" if "conditional_accuracy" in rows[0] else "-"
        bound = f"{rows[0]['iwae_bound']:.2f}" if "iwae_bound" in rows[0] else "-"
        au = str(rows[0].get("active_units", "-"))
        print(f"{name:<8} {len(rows):>5} {fd[0]:>9.2f} ±{fd[1]:>5.2f} {sh[0]:>9.4f} ±{sh[1]:.4f} "
              f"{min(shares):>6.3f}-{max(shares):.3f} {acc:>8} {bound:>10} {au:>6} "
              f"{statistics.median(r['epoch_s'] for r in rows):>7.1f}", flush=True)


if __name__ == "__main__":
    main()
