"""The VAE-GAN's defaults: sample quality and mode collapse against gamma (and the learning rates), beside a VAE.

    nice -n 10 python benchmarks/bench_vaegan.py [--data mnist-small] [--epochs 8] [--gammas 0.03,0.1,0.3]
        [--disc-lrs 2e-4] [--samples 2000] [--seed 0] [--no-vae]

Each row: a VAEGAN with the library's sizes (784-400-20-400-784, discriminator 784-512-256-1, pixel_weight 1)
trained by gan.fit for --epochs (Adam 1e-3 for encoder and decoder, the row's rate for the discriminator), then
--samples prior samples scored against the test images with tinyvae.metrics: the Frechet distance (the FID recipe
with an MNIST classifier, NOT comparable to published FIDs), sharpness (the real images' beside it) and the range
of the digit shares (0.1 each = no mode collapse), with the last epoch's mean losses and seconds per epoch.
A VAE of the same sizes trained by fit for the same epochs is the baseline row (unless --no-vae).
"""
import argparse
import time

import machine
import tinyvae as tv
from tinyvae import datasets, gan, metrics


def _floats(text):
    return [float(v) for v in text.split(",")]


def scored(model, n, seed, real):
    s = metrics.score(model.sample(n, rng=seed + 1000), real)
    return (f"{s['frechet_distance']:>8.2f} {s['sharpness']:>9.4f} "
            f"{min(s['digit_shares']):>6.3f}-{max(s['digit_shares']):.3f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    machine.add_data_argument(p)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--gammas", type=_floats, default=[0.03, 0.1, 0.3])
    p.add_argument("--disc-lrs", type=_floats, default=[2e-4])
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-vae", action="store_true")
    args = p.parse_args(argv)

    data = datasets.load(args.data, download=False)
    real = tv.asarray(data.x_test[:args.samples])
    print(f"{data.name}: {data.x_train.shape[0]} training images, {args.epochs} epochs, {args.samples} samples, "
          f"seed {args.seed}; real test images' sharpness {metrics.sharpness(real):.4f}")
    header = (f"{'model':<24} {'Frechet':>8} {'sharpness':>9} {'digit shares':>13} {'pixel':>7} {'llike':>6} "
              f"{'gan':>5} {'disc':>5} {'s/epoch':>7}")
    print(header + "\n" + "-" * len(header), flush=True)
    if not args.no_vae:
        vae = tv.VAE(rng=args.seed)
        start = time.perf_counter()
        h = tv.fit(vae, data.x_train, args.epochs, seed=args.seed, progress=False)
        seconds = (time.perf_counter() - start) / args.epochs
        print(f"{'VAE':<24} {scored(vae, args.samples, args.seed, real)} {h.train_recon[-1]:>7.2f} {'-':>6} "
              f"{'-':>5} {'-':>5} {seconds:>7.1f}", flush=True)
    for disc_lr in args.disc_lrs:
        for gamma in args.gammas:
            model = gan.VAEGAN(gamma=gamma, rng=args.seed)
            start = time.perf_counter()
            h = gan.fit(model, data.x_train, args.epochs, seed=args.seed, progress=False, disc_lr=disc_lr)
            seconds = (time.perf_counter() - start) / args.epochs
            print(f"{f'VAE-GAN g={gamma:g} dlr={disc_lr:g}':<24} {scored(model, args.samples, args.seed, real)} "
                  f"{h.train_pixel[-1]:>7.2f} {h.train_llike[-1]:>6.2f} {h.train_gan[-1]:>5.2f} "
                  f"{h.train_disc[-1]:>5.2f} {seconds:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
