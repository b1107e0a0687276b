"""A small MLP digit classifier (784-256-128-10), trained with tinyvae itself, for scoring generated samples.

    >>> from tinyvae import classifier
    >>> clf = classifier.load_pretrained()          # the weights shipped in the package: works offline
    >>> classifier.predict(clf, images)             # (N,) digits
    >>> clf.features(images)                        # (N, 128) penultimate features, for the Frechet distance

The shipped weights (``tinyvae/data/mnist_classifier.npz``, float16) were trained by
``scripts/train_mnist_classifier.py``; ``tinyvae/data/README.md`` says how, and with what test accuracy.
"""
from pathlib import Path

from . import backend as B
from . import losses
from .activations import ReLU
from .checks import check_batch, check_labels
from .layers import Dense
from .module import Module, Sequential
from .optim import Adam

WEIGHTS = Path(__file__).parent / "data" / "mnist_classifier.npz"


class MLPClassifier(Module):
    """features(x) = relu(relu(x W1 + b1) W2 + b2); logits = features(x) W3 + b3.

    Backward: dlogits (N, C) -> through the head and the feature stack -> dx (N, D).
    """

    def __init__(self, in_features=784, hidden=(256, 128), num_classes=10, rng=None, dtype=None):
        rng = B.as_generator(rng)
        layers, width = [], in_features
        for h in hidden:
            layers += [Dense(width, h, init="he", rng=rng, dtype=dtype), ReLU()]
            width = h
        self.body = Sequential(*layers)
        self.head = Dense(width, num_classes, rng=rng, dtype=dtype)
        self.in_features, self.hidden, self.num_classes = in_features, tuple(hidden), num_classes

    def features(self, x):
        """The penultimate activations (N, hidden[-1]): what the Frechet distance compares."""
        return self.body.forward(check_batch(x, self.in_features, "MLPClassifier"))

    def forward(self, x):
        return self.head.forward(self.features(x))

    def backward(self, dlogits):
        """dx = body'(head'(dlogits)), parameter gradients added on the way.   dlogits: (N, C); dx: (N, D) or None."""
        return self.body.backward(self.head.backward(dlogits))


def _batches(fn, x, batch_size):
    return B.concat([fn(x[i:min(i + batch_size, x.shape[0]), ...]) for i in range(0, x.shape[0], batch_size)])


def predict(model, x, batch_size=1000):
    """The most likely digit for each row of x: (N,) integers."""
    return _batches(lambda b: B.get_xp().argmax(model.forward(b), axis=1), x, batch_size)


def features(model, x, batch_size=1000):
    """Penultimate features of every row of x, in batches: (N, hidden[-1])."""
    return _batches(model.features, x, batch_size)


def accuracy(model, x, y, batch_size=1000):
    """Share of rows of x whose predicted digit equals y."""
    y = check_labels(B.asarray(y), x.shape[0], model.num_classes, "accuracy")
    return float(B.get_xp().mean(B.astype(predict(model, x, batch_size) == y, "float64")))


def train_classifier(model, x, y, epochs=15, batch_size=128, lr=1e-3, seed=0, progress=None):
    """Minibatch Adam on the softmax cross-entropy; returns the mean training loss of each epoch.

    ``progress(epoch, loss)`` is called after each epoch if given.
    """
    x = check_batch(B.asarray(x), model.in_features, "train_classifier")
    y = check_labels(B.asarray(y), x.shape[0], model.num_classes, "train_classifier")
    xp, rng, opt, history = B.get_xp(), B.as_generator(seed), Adam(model.parameters(), lr=lr), []
    for epoch in range(epochs):
        order, total = rng.permutation(x.shape[0]), 0.0
        for i in range(0, x.shape[0], batch_size):
            idx = order[i:min(i + batch_size, x.shape[0])]
            opt.zero_grad()
            logits = model.forward(xp.take(x, idx, axis=0))
            value, dlogits = losses.softmax_cross_entropy(logits, xp.take(y, idx, axis=0))
            model.backward(dlogits)
            opt.step()
            total += value * idx.shape[0]
        history.append(total / x.shape[0])
        if progress is not None:
            progress(epoch, history[-1])
    return history


def load_pretrained(path=None, dtype=None):
    """The classifier with the shipped weights (or those in ``path``, as written by the training script)."""
    from .checkpoint import read_arrays  # reads an .npz eagerly, with a one-line error for a missing or corrupt file

    path = WEIGHTS if path is None else Path(path)
    arrays = read_arrays(str(path))
    shape = tuple(int(v) for v in arrays["hidden"])
    model = MLPClassifier(int(arrays["in_features"]), shape, int(arrays["num_classes"]), rng=0, dtype=dtype)
    model.load_state_dict({k: v for k, v in arrays.items() if k not in ("hidden", "in_features", "num_classes")})
    return model.eval()
