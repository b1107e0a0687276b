"""Training on the IWAE bound (VAE(k=5)) against the VAE: test bound, -ELBO, active units and time per epoch.

    nice -n 10 python benchmarks/bench_iwae_train.py [--data ../shared/data/mnist] [--epochs 10] [--ks 1,5]
        [--iwae-n 500] [--iwae-k 1000]

For each k: a VAE 784-400-20 (ReLU, Bernoulli decoder, Adam lr 1e-3, batch 128, float32, seed 0) trained with k
importance samples per image (k = 1: the plain VAE) on the training split of --data. Printed: the test IWAE bound
(k = --iwae-k, first --iwae-n test images), the -ELBO as the k = 1 bound on the same images (a sampled KL term),
the active units (Var_x mu(x) > 0.01 over the whole test split) and the training seconds per epoch.
"""
import argparse
import time

import machine

import tinyvae as tv
from tinyvae import datasets
from tinyvae.iwae import iwae_bound
from tinyvae.train import active_units, fit


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    machine.add_data_argument(p)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--ks", default="1,5")
    p.add_argument("--iwae-n", type=int, default=500)
    p.add_argument("--iwae-k", type=int, default=1000)
    args = p.parse_args(argv)
    data = datasets.load(args.data, download=False)
    x_eval = data.x_test[:args.iwae_n]
    print(f"{data.x_train.shape[0]} training images, {args.epochs} epochs; bounds in nats on {x_eval.shape[0]} "
          f"test images, active units on {data.x_test.shape[0]}")
    print(f"{'k':>3} {'IWAE bound (k=' + str(args.iwae_k) + ')':>20} {'-ELBO':>8} {'active':>7} {'s/epoch':>8}")
    for k in (int(v) for v in args.ks.split(",")):
        model = tv.VAE(784, (400,), 20, k=k, rng=0)
        start = time.perf_counter()
        fit(model, data.x_train, args.epochs, progress=False)
        seconds = (time.perf_counter() - start) / args.epochs
        bound = iwae_bound(model, x_eval, k=args.iwae_k)
        print(f"{k:>3} {bound:>20.2f} {iwae_bound(model, x_eval, k=1):>8.2f} "
              f"{active_units(model, data.x_test):>7} {seconds:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
