"""tinyvae.metrics: the Frechet distance (zero for identical sets, the closed form for known Gaussians),
sharpness (blurring lowers it), digit shares and conditional accuracy with the shipped classifier."""
import math

import numpy as np
import pytest

import tinyvae as tv
from tinyvae import backend as B
from tinyvae import datasets, metrics


@pytest.fixture(scope="module")
def data():
    return datasets.load("mnist-small")


def test_frechet_distance_of_identical_sets_is_zero():
    f = B.Generator(0).standard_normal((200, 6), "float64")
    assert abs(metrics.frechet_distance(f, f)) < 1e-8


def test_frechet_distance_of_known_gaussians_matches_the_closed_form():
    # Diagonal covariances: d = |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2.
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 1.0])
    got = metrics.frechet_distance_gaussians(tv.asarray(mu1), tv.asarray(np.diag(s1)),
                                             tv.asarray(mu2), tv.asarray(np.diag(s2)))
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_of_a_rotated_covariance():
    # S2 = R S1 R^T (same spectrum, rotated): tr (S1 S2)^(1/2) computed independently with an SVD-based sqrt.
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 4))
    s1 = a @ a.T + np.eye(4)
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    s2 = q @ s1 @ q.T
    w, v = np.linalg.eigh(s1)
    r = v @ np.diag(np.sqrt(w)) @ v.T
    cross = np.sum(np.sqrt(np.linalg.eigvalsh(r @ s2 @ r)))
    expected = np.trace(s1) + np.trace(s2) - 2 * cross
    got = metrics.frechet_distance_gaussians(tv.asarray(np.zeros(4)), tv.asarray(s1), tv.asarray(np.zeros(4)),
                                             tv.asarray(s2))
    assert got == pytest.approx(expected, rel=1e-8) and got > 0


def test_frechet_distance_rejects_mismatched_features():
    with pytest.raises(ValueError, match="same D"):
        metrics.frechet_distance(B.zeros((5, 3), "float64"), B.zeros((5, 4), "float64"))


def _blur(x):
    img = x.reshape(-1, 28, 28)
    out = img.copy()
    out[:, 1:-1, 1:-1] = sum(img[:, 1 + di:27 + di, 1 + dj:27 + dj] for di in (-1, 0, 1) for dj in (-1, 0, 1)) / 9
    return out.reshape(-1, 784)


def test_sharpness_of_blurred_images_is_lower(data):
    x = data.x_test[:200]
    sharp, blurred = metrics.sharpness(tv.asarray(x)), metrics.sharpness(tv.asarray(_blur(x)))
    assert blurred < 0.5 * sharp
    assert metrics.sharpness(B.zeros((2, 784), "float32")) == 0.0


def test_real_images_score_as_real(data):
    x, y = tv.asarray(data.x_test[:500]), tv.asarray(data.y_test[:500])
    result = metrics.score(x, tv.asarray(data.x_train[:500]), digits=y)
    assert result["conditional_accuracy"] > 0.9
    assert result["sharpness"] == pytest.approx(result["sharpness_real"], rel=0.2)
    shares = np.array(result["digit_shares"])
    assert shares.sum() == pytest.approx(1.0) and shares.min() > 0.03
    blurred = metrics.classifier_frechet_distance(tv.asarray(_blur(data.x_test[:500])), tv.asarray(data.x_train[:500]))
    assert result["frechet_distance"] < blurred


def test_collapsed_samples_show_in_digit_shares(data):
    ones = data.x_test[data.y_test == 1][:100]
    shares = B.to_numpy(metrics.digit_shares(tv.asarray(ones)))
    assert shares[1] > 0.9 and math.isclose(shares.sum(), 1.0)
