"""Tests for tinyvae.pca: PCA by SVD on the active backend, against an eigendecomposition of the covariance on the host.

Conventions checked here: explained_variance_ uses the sample covariance (divide by N - 1), so the mean squared
reconstruction error on the training data is (N - 1) / N times the sum of the discarded eigenvalues.
"""
import numpy as np
import pytest

import tinyvae as tv
from tinyvae import datasets
from tinyvae.pca import PCA


def anisotropic(n=60, d=7, seed=0):
    """Data whose covariance has well-separated eigenvalues (so each direction is defined up to sign)."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
    scales = np.array([5.0, 3.0, 2.0, 1.2, 0.7, 0.4, 0.2])[:d]
    return (rng.standard_normal((n, d)) * scales) @ rotation.T + rng.standard_normal(d)


def eigen(x):
    """Eigenvalues (largest first) and eigenvectors (as rows) of the sample covariance, with PCA's sign rule."""
    w, v = np.linalg.eigh(np.cov(x, rowvar=False))
    w, v = w[::-1], v[:, ::-1].T
    rows = np.arange(len(v))
    v = v * np.sign(v[rows, np.argmax(np.abs(v), axis=1)])[:, None]
    return w, v


def test_matches_the_eigendecomposition_of_the_covariance():
    x = anisotropic()
    w, v = eigen(x)
    pca = PCA(3).fit(tv.asarray(x, dtype="float64"))
    assert tv.backend.is_array(pca.components_)  # computed and kept on the active backend
    assert tv.to_numpy(pca.components_).shape == (3, 7)
    assert np.allclose(tv.to_numpy(pca.mean_), x.mean(axis=0), atol=1e-12)
    assert np.allclose(tv.to_numpy(pca.explained_variance_), w[:3], rtol=1e-10)
    assert np.allclose(tv.to_numpy(pca.explained_variance_ratio_), w[:3] / w.sum(), rtol=1e-10)
    assert np.allclose(tv.to_numpy(pca.components_), v[:3], atol=1e-10)  # same directions, same signs
    c = tv.to_numpy(pca.components_)
    assert np.allclose(c @ c.T, np.eye(3), atol=1e-12)


def test_sign_convention_makes_the_largest_entry_positive():
    x = anisotropic(seed=3)
    a = tv.to_numpy(PCA(4).fit(x).components_)
    b = tv.to_numpy(PCA(4).fit(-x[::-1]).components_)  # the same directions, the SVD free to flip them
    rows = np.arange(4)
    assert np.all(a[rows, np.argmax(np.abs(a), axis=1)] > 0)
    assert np.allclose(a, b, atol=1e-10)


def test_training_reconstruction_error_is_the_discarded_variance():
    x = anisotropic()
    n = len(x)
    w, _ = eigen(x)
    for k in (1, 3, 5):
        pca = PCA(k).fit(tv.asarray(x))
        # mean_n |x_n - x_hat_n|^2 = sum of discarded S_i^2 / N = (N - 1) / N * sum of discarded eigenvalues.
        assert pca.reconstruction_error(x) == pytest.approx(w[k:].sum() * (n - 1) / n, rel=1e-10)
        z = pca.transform(x)
        assert tuple(z.shape) == (n, k)
        # The coordinates are uncorrelated, with the explained variances as their variances.
        assert np.allclose(np.cov(tv.to_numpy(z), rowvar=False).reshape(k, k), np.diag(w[:k]), atol=1e-9)


def test_full_rank_reconstructs_exactly():
    x = anisotropic(n=5, d=7)  # fewer examples than features: min(N, D) = 5 components
    pca = PCA(5).fit(x)
    assert np.allclose(tv.to_numpy(pca.inverse_transform(pca.transform(x))), x, atol=1e-10)
    assert pca.reconstruction_error(x) < 1e-20
    assert np.allclose(tv.to_numpy(pca.fit_transform(x)), tv.to_numpy(pca.transform(x)), atol=1e-12)


def test_float32_images_and_more_components_reconstruct_better():
    x = datasets.load("mnist-small").x_train[:300]
    errors = [PCA(k).fit(x).reconstruction_error(x) for k in (2, 10, 30)]
    assert errors[0] > errors[1] > errors[2] > 0
    pca = PCA(10).fit(x)
    assert tv.to_numpy(pca.components_).dtype == np.float32
    assert float(np.sum(tv.to_numpy(pca.explained_variance_ratio_))) < 1.0


def test_clear_errors():
    x = anisotropic(n=10, d=7)
    with pytest.raises(ValueError, match=r"n_components=8 is larger than min\(N, D\) = 7"):
        PCA(8).fit(x)
    with pytest.raises(ValueError, match="int >= 1"):
        PCA(0)
    with pytest.raises(RuntimeError, match="not fitted yet; call fit"):
        PCA(2).transform(x)
    pca = PCA(2).fit(x)
    with pytest.raises(ValueError, match=r"fitted on 7 features; got shape \(10, 6\)"):
        pca.transform(x[:, :6])
    with pytest.raises(ValueError, match=r"inverse_transform expects shape \(N, 2\); got \(10, 3\)"):
        pca.inverse_transform(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="2-D array"):
        pca.transform(x[0])
