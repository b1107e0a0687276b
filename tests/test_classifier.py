"""The shipped MNIST classifier: its weights load offline, it classifies the bundled test split, it trains."""
import numpy as np
import pytest

import tinyvae as tv
from tinyvae import backend as B
from tinyvae import classifier, datasets
from tinyvae.gradcheck import check_module


@pytest.fixture(scope="module")
def data():
    return datasets.load("mnist-small")


def test_shipped_weights_load_and_are_small():
    assert classifier.WEIGHTS.is_file() and classifier.WEIGHTS.stat().st_size < 500_000
    clf = classifier.load_pretrained()
    assert (clf.in_features, clf.hidden, clf.num_classes) == (784, (256, 128), 10)


def test_accuracy_on_the_bundled_test_split(data):
    # 96.5% measured (97.4% on the full MNIST test set, see tinyvae/data/README.md); 95% leaves room for backends
    clf = classifier.load_pretrained()
    assert classifier.accuracy(clf, tv.asarray(data.x_test), tv.asarray(data.y_test)) > 0.95


def test_features_are_the_penultimate_layer(data):
    clf = classifier.load_pretrained()
    x = tv.asarray(data.x_test[:5])
    f = classifier.features(clf, x)
    assert tuple(f.shape) == (5, 128) and float(B.get_xp().min(f)) >= 0.0
    logits = clf.forward(x)
    np.testing.assert_allclose(B.to_numpy(clf.head.forward(f)), B.to_numpy(logits), rtol=1e-5, atol=1e-5)


def test_classifier_backward_is_gradient_checked():
    clf = classifier.MLPClassifier(7, (5, 4), 3, rng=0, dtype="float64")
    x = B.Generator(1).standard_normal((3, 7), "float64")
    report = check_module(clf, x, rng=0, name="MLPClassifier")
    assert report.passed, str(report)


def test_training_learns_a_small_problem(data):
    clf = classifier.MLPClassifier(784, (32,), 10, rng=0)
    x, y = tv.asarray(data.x_train[:1000]), tv.asarray(data.y_train[:1000])
    history = classifier.train_classifier(clf, x, y, epochs=4, batch_size=100, lr=5e-3)
    assert history[-1] < history[0] and classifier.accuracy(clf, x, y) > 0.8


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        classifier.load_pretrained(tmp_path / "nope.npz")
