"""Retrain the classifier shipped as tinyvae/data/mnist_classifier.npz (used by `tinyvae score` / tinyvae.metrics).

    python scripts/train_mnist_classifier.py --data ../shared/data/mnist --epochs 20

Host-only script: it writes the weights with NumPy (float16, a few hundred kB) and prints the test accuracy on the
whole test split of --data.
"""
import argparse
import time

import numpy as np

from tinyvae import backend as B
from tinyvae import classifier, datasets
from tinyvae.files import atomic_write


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/mnist", help="a data set name or a folder of MNIST IDX files")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(classifier.WEIGHTS))
    args = p.parse_args(argv)

    data = datasets.load(args.data, download=False)
    model = classifier.MLPClassifier(rng=args.seed)
    start = time.perf_counter()
    classifier.train_classifier(model, data.x_train, data.y_train, args.epochs, args.batch_size, args.lr, args.seed,
                                progress=lambda e, v: print(f"epoch {e + 1}: loss {v:.4f}", flush=True))
    state = {k: B.to_numpy(v).astype(np.float16) for k, v in model.state_dict().items()}
    with atomic_write(args.out) as f:
        np.savez_compressed(f, hidden=np.array(model.hidden), in_features=np.array(model.in_features),
                            num_classes=np.array(model.num_classes), **state)
    shipped = classifier.load_pretrained(args.out)  # the float16 weights, as users get them
    print(f"trained on {data.x_train.shape[0]} images in {time.perf_counter() - start:.0f} s; test accuracy of the "
          f"float16 weights on {data.x_test.shape[0]} images: {classifier.accuracy(shipped, data.x_test, data.y_test):.4f}")


if __name__ == "__main__":
    main()
