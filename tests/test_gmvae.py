"""ELU and the mixture-prior VAE (issue 21): the log-mixture density against its definition and its gradient into z,
the means and the variances; the GMVAE's whole objective in float64 (eps fixed); the IWAE bound through the
model's own prior; sampling from the mixture; checkpoints."""
import math

import numpy as np
import pytest

import tinyvae as tv
from tinyvae import activations, checkpoint
from tinyvae import gmvae
from tinyvae.gmvae import GMVAE, log_mixture_density, log_mixture_density_backward
from tinyvae.gradcheck import check_gradients, check_model, check_module
from tinyvae.models import VAE
from tinyvae.iwae import iwae_bound
from tinyvae.train import evaluate, fit


def _f64(a):
    return tv.asarray(np.asarray(a, dtype=np.float64), dtype="float64")


# ------------------------------------------------------------------------------------------------------- ELU
def test_elu_is_its_formula_and_finite_at_large_inputs():
    x = _f64([[-800.0, -1.0, 0.0, 1e-8, 2.5, 800.0]])
    expected = np.where(np.array([-800.0, -1.0, 0.0, 1e-8, 2.5, 800.0]) > 0, [-800.0, -1.0, 0.0, 1e-8, 2.5, 800.0],
                        np.expm1(np.minimum([-800.0, -1.0, 0.0, 1e-8, 2.5, 800.0], 0)))
    np.testing.assert_allclose(tv.to_numpy(activations.elu(x))[0], expected, rtol=1e-15)
    assert tv.ACTIVATIONS["elu"] is tv.ELU


@pytest.mark.parametrize("shape", [(4, 6), (1, 3)])
def test_elu_backward_is_gradient_checked(shape):
    x = _f64(np.random.default_rng(0).normal(size=shape) * 2)
    x = tv.get_xp().where(x >= 0, x + 1e-2, x - 1e-2)  # away from the kink at 0
    report = check_module(tv.ELU(), x, rng=1)
    assert report.passed, str(report)


# ---------------------------------------------------------------------------------------- the mixture density
def _mixture(n=5, k=4, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return _f64(rng.normal(size=(n, d))), _f64(rng.normal(size=(k, d))), _f64(rng.random((k, d)) + 0.3), rng


def test_the_log_mixture_density_is_the_log_of_the_mean_of_the_component_densities():
    z, means, variances, _ = _mixture()
    zn, mn, vn = (tv.to_numpy(a) for a in (z, means, variances))
    pdf = np.exp(-0.5 * (((zn[:, None, :] - mn[None]) ** 2) / vn + np.log(2 * np.pi * vn)).sum(axis=2))
    np.testing.assert_allclose(tv.to_numpy(log_mixture_density(z, means, variances)), np.log(pdf.mean(axis=1)),
                               rtol=1e-12)


def test_one_component_is_a_gaussian_and_far_codes_stay_finite():
    z, means, variances, _ = _mixture(k=1)
    zn, mn, vn = (tv.to_numpy(a) for a in (z, means, variances))
    gauss = -0.5 * (((zn - mn) ** 2) / vn + np.log(2 * np.pi * vn)).sum(axis=1)
    np.testing.assert_allclose(tv.to_numpy(log_mixture_density(z, means, variances)), gauss, rtol=1e-12)
    far = log_mixture_density(_f64([[1e3, -1e3, 1e3]]), *_mixture()[1:3])
    assert np.isfinite(tv.to_numpy(far)).all() and float(far[0]) < -1e5  # no exp underflow to log(0)


@pytest.mark.parametrize("n,k,d", [(5, 4, 3), (1, 1, 2), (3, 7, 1)])
def test_the_log_mixture_density_gradient_into_z_means_and_variances(n, k, d):
    z, means, variances, rng = _mixture(n, k, d, seed=n + k)
    dlogp = _f64(rng.normal(size=n))
    dz, dm, dv = log_mixture_density_backward(dlogp, z, means, variances)
    weighted = lambda: float(tv.get_xp().sum(log_mixture_density(z, means, variances) * dlogp))  # noqa: E731
    report = check_gradients(weighted, {"z": z, "m": means, "v": variances}, {"z": dz, "m": dm, "v": dv})
    assert report.passed, str(report)


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-10), ("float32", 2e-5)])
def test_the_matrix_product_twins_equal_the_plain_mixture_formulas(dtype, rtol):
    """The square expanded into matrix products (in float64) against the (N, K, d) formulas, with codes far from
    narrow components, where the expanded terms are 1e5 times their difference."""
    z, means, variances, rng = _mixture(9, 6, 4, seed=3)
    z = z * 3.0
    variances = variances * _f64(np.where(rng.random((6, 4)) < 0.3, 1e-4, 1.0))
    dlogp = _f64(rng.normal(size=9))
    z, means, variances, dlogp = (tv.asarray(a, dtype=dtype) for a in (z, means, variances, dlogp))
    for plain, fast in ((gmvae.log_normal_components(z, means, variances),
                         gmvae.log_normal_components_fast(z, means, variances)),
                        (log_mixture_density(z, means, variances), gmvae.log_mixture_density_fast(z, means, variances))):
        assert fast.dtype == plain.dtype
        np.testing.assert_allclose(tv.to_numpy(fast), tv.to_numpy(plain), rtol=rtol)
    for name, plain, fast in zip("zmv", log_mixture_density_backward(dlogp, z, means, variances),
                                 gmvae.log_mixture_density_backward_fast(dlogp, z, means, variances)):
        assert fast.dtype == plain.dtype
        scale = float(np.abs(tv.to_numpy(plain)).max())
        np.testing.assert_allclose(tv.to_numpy(fast), tv.to_numpy(plain), rtol=rtol, atol=rtol * scale, err_msg=name)


# ------------------------------------------------------------------------------------------------------ GMVAE
def _gmvae(**kw):
    return GMVAE(8, kw.pop("hidden", (6, 5)), 3, components=kw.pop("components", 4), dtype="float64", rng=1, **kw)


@pytest.mark.parametrize("n,kw", [(4, {}), (1, {}), (3, dict(beta=0.5, activation="tanh", hidden=(5,)))], ids=str)
def test_the_whole_gmvae_objective_is_gradient_checked(n, kw):
    rng = np.random.default_rng(n)
    report = check_model(_gmvae(**kw), _f64(rng.random((n, 8))), eps=_f64(rng.normal(size=(n, 3))))
    assert report.passed, str(report)
    assert any("prior_rho" in c.name for c in report) and any("prior_means" in c.name for c in report)


def test_the_kl_term_is_log_q_minus_the_log_mixture_and_the_iwae_bound_uses_the_mixture():
    model, rng = _gmvae(), np.random.default_rng(3)
    x, eps = _f64(rng.random((4, 8))), _f64(rng.normal(size=(4, 3)))
    parts = model.loss_per_example(x, eps=eps)
    mu, logvar = model.encode(x)
    z = mu + tv.get_xp().exp(0.5 * logvar) * eps
    log_q = -0.5 * tv.get_xp().sum(eps * eps + logvar + math.log(2 * math.pi), axis=1)
    log_p = log_mixture_density(z, model.prior_means.data, model.prior_variances())
    np.testing.assert_allclose(tv.to_numpy(parts["kl"]), tv.to_numpy(log_q - log_p), rtol=1e-12)
    # one importance sample is the one-sample negative ELBO: the same number, so log_weights uses the mixture
    bound = iwae_bound(model, x, k=1, eps=tv.get_xp().reshape(eps, (4, 1, 3)))
    assert bound == pytest.approx(float(tv.get_xp().mean(parts["loss"])), rel=1e-12)
    assert iwae_bound(model, x, k=50) < evaluate(model, x)["loss"] + 1.0


def test_a_vae_log_prior_is_the_standard_normal():
    vae, z = VAE(8, (6,), 3, dtype="float64", rng=0), _f64(np.random.default_rng(0).normal(size=(2, 5, 3)))
    zn = tv.to_numpy(z)
    np.testing.assert_allclose(tv.to_numpy(vae.log_prior(z)), -0.5 * (zn ** 2).sum(-1) - 1.5 * math.log(2 * math.pi),
                               rtol=1e-13)


def test_prior_samples_come_from_the_components_with_their_variances():
    model = _gmvae(components=2)
    model.prior_means.data[...] = _f64([[-20.0, 0.0, 5.0], [20.0, 3.0, -5.0]])
    model.prior_rho.data[...] = _f64([[0.0, 1.0, -1.0], [2.0, 0.5, 0.0]])
    z = tv.to_numpy(model.sample_prior(20000, rng=4))
    left = z[:, 0] < 0
    assert abs(left.mean() - 0.5) < 0.02  # each component is picked with probability 1/2 (4 sigma: 0.014)
    variances = tv.to_numpy(model.prior_variances())
    for rows, k in ((z[left], 0), (z[~left], 1)):
        np.testing.assert_allclose(rows.mean(axis=0), tv.to_numpy(model.prior_means.data)[k], atol=0.06)
        np.testing.assert_allclose(rows.var(axis=0), variances[k], rtol=0.06)
    assert tuple(model.sample(5, rng=0).shape) == (5, 8) and tuple(model.component_means().shape) == (2, 8)


@pytest.mark.backends("numpy")
def test_a_gmvae_checkpoint_rebuilds_the_same_model(tmp_path):
    model, rng = _gmvae(components=5), np.random.default_rng(5)
    x, eps = _f64(rng.random((3, 8))), _f64(rng.normal(size=(3, 3)))
    checkpoint.save(model, tmp_path / "gmvae.npz")
    loaded = checkpoint.load(tmp_path / "gmvae.npz").model
    assert isinstance(loaded, GMVAE) and loaded.components == 5
    assert loaded.loss(x, eps=eps).total == model.loss(x, eps=eps).total


def test_bad_components_are_a_clear_error():
    with pytest.raises(ValueError, match="components must be a positive int"):
        GMVAE(8, (6,), 3, components=0)


@pytest.mark.backends("numpy")
def test_the_library_fit_trains_a_gmvae():
    rng = np.random.default_rng(6)
    x = (rng.random((120, 8)) < np.linspace(0.1, 0.9, 8)).astype(np.float64)
    model = GMVAE(8, (16,), 2, components=5, dtype="float64", rng=0)
    history = fit(model, x, epochs=6, batch_size=20, lr=1e-2, progress=False)
    assert history.train_loss[-1] < history.train_loss[0]
