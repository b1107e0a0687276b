"""Tests for Reparameterize: gradients with eps fixed, samples with mean mu and variance exp(logvar) (a statistical
test whose tolerance comes from the sample size), and the classic exp(logvar) * eps bug caught."""
import math

import numpy as np
import pytest
from hypothesis_or_skip import HealthCheck, given, settings, st

import tinyvae as tv
from tinyvae import backend as B
from tinyvae.gradcheck import check_gradients

FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
MU = [-1.0, 0.5, 2.0, 0.0]
LOGVAR = [-2.0, 0.0, 1.5, 3.0]


def host_array(values, shape, dtype="float64"):
    return tv.asarray(np.asarray(values, dtype=np.float64).reshape(shape), dtype=dtype)


def check_reparam(mu, logvar, eps, dz):
    rep = tv.Reparameterize()
    rep.forward(mu, logvar, eps=eps)
    dmu, dlogvar = rep.backward(dz)
    xp = tv.get_xp()
    weighted = lambda: float(xp.sum(rep.forward(mu, logvar, eps=eps) * dz))  # noqa: E731
    return check_gradients(weighted, {"dmu": mu, "dlogvar": logvar}, {"dmu": dmu, "dlogvar": dlogvar})


def assert_passes(report):
    assert [c.name for c in report] == ["dmu", "dlogvar"]
    assert report.passed, "\n" + str(report)


# ---------------------------------------------------------------- gradients (eps fixed)

@pytest.mark.parametrize("shape", [(3, 5), (1, 1), (1, 4), (6, 2)])
def test_reparameterize_gradients(shape):
    g = B.Generator(shape)
    mu, logvar, eps, dz = (g.standard_normal(shape, "float64") for _ in range(4))
    assert_passes(check_reparam(mu, logvar, eps, dz))


@FAST
@given(n=st.integers(1, 4), k=st.integers(1, 4), seed=st.integers(0, 2**31), spread=st.floats(0.1, 3.0))
def test_reparameterize_gradients_random(n, k, seed, spread):
    g = B.Generator(seed)
    mu, eps, dz = (g.standard_normal((n, k), "float64") for _ in range(3))
    logvar = g.standard_normal((n, k), "float64") * spread  # variances from e^-9 to e^9 and beyond
    assert_passes(check_reparam(mu, logvar, eps, dz))


# ---------------------------------------------------------------- the sample is N(mu, exp(logvar))

def test_z_is_mu_plus_standard_deviation_times_eps():
    mu, logvar = host_array(MU, (1, 4)), host_array(LOGVAR, (1, 4))
    z = B.to_numpy(tv.Reparameterize().forward(mu, logvar, eps=B.ones((1, 4), "float64")))
    # With eps = 1, z - mu is the standard deviation exp(logvar / 2), not the variance exp(logvar).
    np.testing.assert_allclose(z[0] - np.array(MU), np.exp(np.array(LOGVAR) / 2), rtol=1e-14)
    var4 = host_array([math.log(4.0)], (1, 1))
    z = tv.Reparameterize().forward(B.zeros((1, 1), "float64"), var4, eps=host_array([1.5], (1, 1)))
    assert float(z[0, 0]) == pytest.approx(3.0, rel=1e-15)  # variance 4: std 2, so z = 2 * 1.5


def _moments_agree(z, mu, var):
    """Per column: is the sample mean within 6 standard errors of mu, and the sample variance within 6 of var?

    For n independent draws of N(mu, var): the sample mean has standard error sqrt(var / n), the (unbiased) sample
    variance has standard error var * sqrt(2 / (n - 1)). Six standard errors: a correct sampler fails with
    probability ~2e-9 per check (and the seed is fixed, so the test is deterministic anyway).
    """
    n = z.shape[0]
    mean_ok = np.abs(z.mean(axis=0) - mu) < 6 * np.sqrt(var / n)
    var_ok = np.abs(z.var(axis=0, ddof=1) - var) < 6 * var * math.sqrt(2.0 / (n - 1))
    return mean_ok, var_ok


N_SAMPLES = 100_000  # mean to within 6 sqrt(var / n) = 1.9% of sigma, variance to within 2.7%


def _draw(seed):
    mu = host_array(np.tile(MU, (N_SAMPLES, 1)), (N_SAMPLES, 4))
    logvar = host_array(np.tile(LOGVAR, (N_SAMPLES, 1)), (N_SAMPLES, 4))
    return B.to_numpy(tv.Reparameterize().forward(mu, logvar, rng=B.Generator(seed)))


def test_samples_have_mean_mu_and_variance_exp_logvar():
    z = _draw(2024)
    mean_ok, var_ok = _moments_agree(z, np.array(MU), np.exp(LOGVAR))
    assert mean_ok.all(), (z.mean(axis=0), MU)
    assert var_ok.all(), (z.var(axis=0, ddof=1), np.exp(LOGVAR))


def test_the_statistical_test_catches_exp_logvar_times_eps():
    # The bug of numpy-ml's and DeZero's VAEs: z = mu + exp(logvar) * eps has variance exp(2 logvar). Fed the same
    # eps, the moment test above must reject it in every column where logvar != 0 (at logvar = 0 both are 1).
    z = _draw(2024)
    mu, std = np.array(MU), np.exp(np.array(LOGVAR) / 2)
    eps = (z - mu) / std
    buggy = mu + np.exp(LOGVAR) * eps
    _, var_ok = _moments_agree(buggy, mu, np.exp(LOGVAR))
    np.testing.assert_array_equal(var_ok, np.array(LOGVAR) == 0.0)
    _, var_ok = _moments_agree(z, mu, np.exp(2 * np.array(LOGVAR)))  # and the right sampler is not exp(2 logvar)
    np.testing.assert_array_equal(var_ok, np.array(LOGVAR) == 0.0)


# ---------------------------------------------------------------- randomness, dtypes, errors

def test_same_seed_same_sample():
    mu, logvar = B.zeros((3, 2)), B.zeros((3, 2))
    rep = tv.Reparameterize()
    a, b = (B.to_numpy(rep.forward(mu, logvar, rng=5)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    g = B.Generator(5)
    np.testing.assert_array_equal(B.to_numpy(rep.forward(mu, logvar, rng=g)), a)
    assert not np.array_equal(B.to_numpy(rep.forward(mu, logvar, rng=g)), a)  # a Generator moves on


def test_float32_stays_float32(xp):
    g = B.Generator(0)
    mu, logvar = g.standard_normal((3, 2)), g.standard_normal((3, 2))
    rep = tv.Reparameterize()
    for eps in (None, g.standard_normal((3, 2), "float64")):  # a float64 eps must not promote z
        z = rep.forward(mu, logvar, eps=eps, rng=1)
        dmu, dlogvar = rep.backward(xp.ones_like(z))
        assert z.dtype == dmu.dtype == dlogvar.dtype == xp.float32


def test_reparameterize_errors():
    rep = tv.Reparameterize()
    with pytest.raises(RuntimeError, match="Reparameterize.backward was called before Reparameterize.forward: "
                                           "call forward first"):
        rep.backward(B.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"mu and logvar must both have shape \(N, K\); got \(2, 3\) and \(2, 2\)"):
        rep.forward(B.zeros((2, 3)), B.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"got \(4,\) and \(4,\)"):
        rep.forward(B.zeros((4,)), B.zeros((4,)))
    with pytest.raises(ValueError, match=r"eps must have shape \(2, 3\); got \(3, 2\)"):
        rep.forward(B.zeros((2, 3)), B.zeros((2, 3)), eps=B.zeros((3, 2)))
