"""Autoencoder against PCA on MNIST: test squared error per image at latent sizes 2, 10, 20, 32.

    python benchmarks/bench_ae_vs_pca.py [--data ../shared/data/mnist] [--epochs 10] [--latents 2,10,20,32]
                                         [--likelihood bernoulli|gaussian]

PCA is the best linear code of each size (fitted by SVD on the training images). The autoencoder is
784-400-k-400-784, ReLU, sigmoid outputs trained on cross-entropy ("bernoulli"), Adam(lr=1e-3), batch 128,
float32, seed 0, trained for --epochs epochs on the same images (``--likelihood gaussian``: linear outputs trained
on squared error, the loss PCA minimizes). Both are scored by the squared error of their reconstructions of the
t10k test images.
"""
import argparse
import time

import machine
import tinyvae as tv
from tinyvae.experiments import ae_vs_pca


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    machine.add_data_argument(parser)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--latents", default="2,10,20,32")
    parser.add_argument("--likelihood", default="bernoulli", choices=["bernoulli", "gaussian"])
    args = parser.parse_args()
    data = tv.datasets.load(args.data)
    latents = [int(k) for k in args.latents.split(",")]
    start = time.perf_counter()
    rows = ae_vs_pca(data.x_train, data.x_test, latents, epochs=args.epochs, likelihood=args.likelihood)
    print(f"test squared error per image, {data.x_train.shape[0]} training / {data.x_test.shape[0]} test images, "
          f"autoencoder ({args.likelihood}) trained {args.epochs} epochs ({time.perf_counter() - start:.0f} s in all)")
    print(f"{'latent':>6} {'PCA':>8} {'autoencoder':>12} {'AE/PCA':>7}")
    for r in rows:
        print(f"{r['latent']:>6} {r['pca']:>8.2f} {r['ae']:>12.2f} {r['ae'] / r['pca']:>7.2f}")
    print("the autoencoder beats PCA at every size:", all(r["ae"] < r["pca"] for r in rows))


if __name__ == "__main__":
    main()
