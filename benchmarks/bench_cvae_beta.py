"""The conditional VAE's beta: how often the shipped classifier finds the requested digit, against the bound.

    nice -n 10 python benchmarks/bench_cvae_beta.py [--data ../shared/data/mnist] [--betas 1,4] [--epochs 10]
        [--every 5] [--latent 20] [--samples 2000]

For each beta: a ConditionalVAE 784-400-LATENT (ReLU, Bernoulli decoder, Adam lr 1e-3, batch 128, float32, seed 0)
trained on the training split of --data; every --every epochs it prints the conditional accuracy of --samples
prior samples (each digit in turn, metrics.conditional_accuracy), the test -ELBO (recon + KL, beta = 1) and
IWAE bound (k = 100, first 300 test images) of -log p(x | y), the active units, and the seconds so far.
"""
import argparse
import time

import machine

import tinyvae as tv
from tinyvae import datasets, metrics
from tinyvae.models import ConditionalVAE
from tinyvae.iwae import iwae_bound
from tinyvae.train import active_units, evaluate, fit


def report(model, data, args, epoch, start):
    digits = tv.backend.arange(args.samples) % 10
    acc = metrics.conditional_accuracy(model.sample(args.samples, rng=1000, digits=digits), digits)
    test = evaluate(model, data.x_test[:2000], labels=data.y_test[:2000])
    bound = iwae_bound(model, data.x_test[:300], k=100, labels=data.y_test[:300])
    active = active_units(model, data.x_test[:2000], labels=data.y_test[:2000])
    print(f"{model.beta:>5g} {epoch:>6} {acc:>9.3f} {test['recon'] + test['kl']:>8.2f} {bound:>11.2f} "
          f"{active:>7} {time.perf_counter() - start:>8.0f}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    machine.add_data_argument(p)
    p.add_argument("--betas", default="1,4")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--every", type=int, default=5)
    p.add_argument("--latent", type=int, default=20)
    p.add_argument("--samples", type=int, default=2000)
    args = p.parse_args(argv)
    data = datasets.load(args.data, download=False)
    print(f"{data.x_train.shape[0]} training images, latent {args.latent}; accuracy = share of samples in which "
          "the classifier finds the requested digit; -ELBO and IWAE bound (k=100) in nats, given the label")
    print(f"{'beta':>5} {'epoch':>6} {'accuracy':>9} {'-ELBO':>8} {'IWAE bound':>11} {'active':>7} {'seconds':>8}")
    for beta in (float(b) for b in args.betas.split(",")):
        model = ConditionalVAE(784, (400,), args.latent, beta=beta, rng=0)
        start = time.perf_counter()
        fit(model, data.x_train, args.epochs, y_train=data.y_train, progress=False,
            callback=lambda e, h: (e % args.every == 0 or e == args.epochs) and report(model, data, args, e, start))


if __name__ == "__main__":
    main()
