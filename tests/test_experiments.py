"""The shared experiments: the squared error they report, AE vs PCA rows, the beta sweep."""
import math

import pytest

import tinyvae as tv
from tinyvae import experiments


@pytest.fixture
def digits():
    data = tv.datasets.load("mnist-small")
    return data.x_train[:300, :], data.x_test[:100, :]


def test_squared_error_is_the_gaussian_reconstruction_loss(digits):
    # For a "gaussian" autoencoder the training loss IS the squared error of the reconstruction.
    x_train, x_test = digits
    ae = tv.Autoencoder(784, (16,), 4, likelihood="gaussian", rng=0)
    tv.fit(ae, x_train, 1, progress=False)
    ae.eval()
    assert experiments.squared_error(ae, x_test, batch_size=33) == pytest.approx(tv.evaluate(ae, x_test)["recon"],
                                                                                rel=1e-5)


def test_ae_vs_pca_rows(digits):
    x_train, x_test = digits
    rows = experiments.ae_vs_pca(x_train, x_test, latents=(2, 5), epochs=1, hidden=(16,))
    assert [r["latent"] for r in rows] == [2, 5]
    assert all(math.isfinite(r["pca"]) and math.isfinite(r["ae"]) and r["ae"] > 0 for r in rows)
    assert rows[1]["pca"] < rows[0]["pca"]  # more components never reconstruct worse


def test_beta_sweep_trades_kl_for_reconstruction(digits):
    x_train, x_test = digits
    results = experiments.beta_sweep(x_train, x_test, betas=(0.1, 8.0), epochs=2, hidden=(32,))
    assert [r["beta"] for r in results] == [0.1, 8.0]
    low, high = results
    assert high["kl"] < low["kl"]  # a heavier KL weight pulls q(z|x) toward the prior
    assert all(r["loss"] == pytest.approx(r["recon"] + r["kl"]) for r in results)
