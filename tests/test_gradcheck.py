"""Tests for tinyvae.gradcheck itself: the numerical gradient on known functions, rel_error on simple cases, a check
that fails on a deliberately wrong backward, the printed Report, and the float64 requirement."""
import numpy as np
import pytest

import tinyvae as tv
from tinyvae import backend as B
from tinyvae import gradcheck
from tinyvae.gradcheck import check_model, check_module, numerical_gradient, rel_error


def host_array(values, dtype="float64"):
    return tv.asarray(np.asarray(values, dtype=np.float64), dtype=dtype)


# ---------------------------------------------------------------- numerical_gradient and rel_error

def test_numerical_gradient_of_a_cube_sum():
    xp = tv.get_xp()
    x = host_array([[0.5, -1.0, 2.0], [3.0, 0.0, -0.25]])
    before = B.to_numpy(x).copy()
    grad = numerical_gradient(lambda v: xp.sum(v**3), x)
    # centered differences are exact for the quadratic part; the error is h^2 f''' / 6 = 1e-10 here
    np.testing.assert_allclose(B.to_numpy(grad), 3 * before**2, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(B.to_numpy(x), before)  # x is restored after each perturbation


def test_numerical_gradient_weighted_by_upstream_gradient():
    xp = tv.get_xp()
    x, df = host_array([[1.0, -2.0], [0.5, 4.0]]), host_array([[1.0, 0.5], [-3.0, 2.0]])
    grad = numerical_gradient(lambda v: xp.sin(v), x, df=df)  # sum(df * d sin(x) / dx) = df * cos(x)
    np.testing.assert_allclose(B.to_numpy(grad), B.to_numpy(df) * np.cos(B.to_numpy(x)), rtol=1e-9, atol=1e-10)


def test_rel_error_values():
    assert rel_error(host_array([1.0, 2.0]), host_array([1.0, 2.0])) == 0.0
    assert rel_error(host_array([1.0, 2.0]), host_array([1.0, 2.2])) == pytest.approx(0.2 / 4.2, rel=1e-12)
    assert rel_error(host_array([[3.0]]), host_array([[-3.0]])) == 1.0  # opposite signs: the worst case
    # the denominator is the largest |a| + |b| of the whole array, so a roundoff-sized entry does not dominate
    assert rel_error(host_array([1e-13, 1.0]), host_array([0.0, 1.0])) == pytest.approx(1e-13 / 2, rel=1e-12)
    # and is floored at 1e-8, so two gradients that are both ~0 compare as equal
    assert rel_error(host_array([1e-12]), host_array([0.0])) == pytest.approx(1e-4, rel=1e-12)
    with pytest.raises(ValueError, match=r"rel_error: shapes differ, \(2,\) and \(3,\)"):
        rel_error(host_array([1.0, 2.0]), host_array([1.0, 2.0, 3.0]))


# ---------------------------------------------------------------- the check can fail

class ScaledInputGradDense(tv.Dense):
    """A Dense layer whose input gradient is off by 1%: a plausible bug that gradient checking must catch."""

    def backward(self, dout):
        return 1.01 * super().backward(dout)


class BiasMeanDense(tv.Dense):
    """db averaged over the batch instead of summed: off by a factor N, a bug only a batch of N > 1 reveals."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.b.grad -= tv.get_xp().sum(dout, axis=0) * (1.0 - 1.0 / dout.shape[0])
        return dx


def test_check_module_catches_a_wrong_input_gradient():
    layer = ScaledInputGradDense(4, 3, rng=0, dtype="float64")
    report = check_module(layer, B.Generator(1).standard_normal((2, 4), "float64"))
    results = {c.name: c.passed for c in report}
    assert results == {"Dense(4 -> 3) dx": False, "Dense(4 -> 3) dW": True, "Dense(4 -> 3) db": True}
    assert not report.passed
    assert report[0].error == pytest.approx(0.01 / 2.01, rel=1e-3)  # |1.01 a - a| / (1.01 |a| + |a|)


def test_check_module_catches_a_wrong_bias_gradient():
    layer = BiasMeanDense(3, 3, rng=0, dtype="float64")
    report = check_module(layer, B.Generator(1).standard_normal((5, 3), "float64"), name="bad")
    assert [c.passed for c in report] == [True, True, False]
    assert report[2].name == "bad db" and report[2].error == pytest.approx(0.8 / 1.2, rel=1e-6)  # (1 - 1/5) / (1 + 1/5)
    # with a batch of one the mean is the sum: the same check passes, which is why the suite checks N > 1 too
    assert check_module(layer, B.Generator(1).standard_normal((1, 3), "float64")).passed


def test_report_prints_a_table_with_pass_and_fail():
    good = check_module(tv.Dense(3, 2, rng=0, dtype="float64"), B.Generator(0).standard_normal((2, 3), "float64"),
                        name="Good")
    bad = check_module(ScaledInputGradDense(3, 2, rng=0, dtype="float64"),
                       B.Generator(0).standard_normal((2, 3), "float64"), name="Scaled")
    table = str(gradcheck.Report(good + bad)).splitlines()
    assert table[0].split() == ["gradient", "shape", "rel.", "error", "threshold", "result"]
    assert set(table[1]) == {"-"}
    rows = {line.split()[0] + " " + line.split()[1]: line.split() for line in table[2:-1]}
    assert rows["Good dx"][-1] == "pass" and rows["Scaled dx"][-1] == "FAIL"
    assert rows["Scaled dW"][-1] == "pass" and rows["Scaled dx"][2:4] == ["2x3", "4.98e-03"]
    assert table[-1] == "5 of 6 passed"
    assert good.passed and not gradcheck.Report(good + bad).passed


def test_threshold_is_respected():
    check = gradcheck.Check("x", (2,), error=5e-7)
    assert not check.passed
    assert gradcheck.Check("x", (2,), error=5e-7, threshold=1e-6).passed
    assert gradcheck.THRESHOLD == 1e-7


# ---------------------------------------------------------------- float64 only

def test_float32_is_refused():
    with pytest.raises(TypeError, match="gradient checks need float64 arrays .*: the input is float32"):
        check_module(tv.Dense(3, 2, dtype="float64"), B.zeros((2, 3), "float32"))
    with pytest.raises(TypeError, match="parameter W is float32 .*build the module with dtype='float64'"):
        check_module(tv.Dense(3, 2), B.zeros((2, 3), "float64"))
    with pytest.raises(TypeError, match="parameter encoder.0.W is float32"):
        check_model(tv.Autoencoder(4, (3,), 2), B.zeros((2, 4), "float64"))
    with pytest.raises(TypeError, match="x is float32"):
        numerical_gradient(lambda v: v, B.zeros((2,), "float32"))


def test_check_components_all_pass():
    report = gradcheck.check_components(seed=1)
    assert len(report) > 50
    names = " ".join(c.name for c in report)
    for part in ("Dense(init=he)", "LeakyReLU", "Softplus", "Sequential", "mse", "bce_with_logits",
                 "gaussian_kl dlogvar", "Reparameterize dlogvar", "Autoencoder", "DenoisingAutoencoder",
                 "VAE(bernoulli", "VAE(gaussian", "ConvTranspose2d(stride 2, padding 1) dW", "ConvVAE(tanh) decoder",
                 "VAEGAN encoder objective: encoder", "VAEGAN decoder objective: decoder",
                 "VAEGAN discriminator objective: discriminator"):
        assert part in names
    assert report.passed, "\n" + str(report)
