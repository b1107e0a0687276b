"""Tests for the losses: gradient checks in float64, values against the textbook formulas, the stable BCE at
logits of +-1e4, KL exactly zero at the prior, dtypes and shape errors."""
import math
import warnings

import numpy as np
import pytest
from hypothesis_or_skip import HealthCheck, assume, given, settings, st

import tinyvae as tv
from tinyvae import backend as B
from tinyvae import losses
from tinyvae.gradcheck import check_gradients

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SHAPES = [(3, 5), (1, 1), (1, 7), (4, 2)]


def host_array(values, shape, dtype="float64"):
    return tv.asarray(np.asarray(values, dtype=np.float64).reshape(shape), dtype=dtype)


def assert_passes(report, names):
    assert [c.name.rsplit(" ", 1)[-1] for c in report] == names
    assert report.passed, "\n" + str(report)


def _matrix(draw, shape, lo, hi):
    n = shape[0] * shape[1]
    return host_array(draw(st.lists(st.floats(lo, hi), min_size=n, max_size=n)), shape)


@st.composite
def shapes(draw):
    return draw(st.integers(1, 4)), draw(st.integers(1, 5))


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("shape", SHAPES)
def test_mse_gradient(shape):
    g = B.Generator(shape)
    pred, target = g.standard_normal(shape, "float64"), g.random(shape, "float64")
    _, dpred = losses.mse(pred, target)
    assert_passes(check_gradients(lambda: losses.mse(pred, target)[0], {"dpred": pred}, {"dpred": dpred}), ["dpred"])


@pytest.mark.parametrize("shape", SHAPES)
def test_bce_with_logits_gradient(shape):
    g = B.Generator(shape)
    logits, target = g.standard_normal(shape, "float64") * 4.0, g.random(shape, "float64")
    _, dl = losses.bce_with_logits(logits, target)
    report = check_gradients(lambda: losses.bce_with_logits(logits, target)[0], {"dlogits": logits}, {"dlogits": dl})
    assert_passes(report, ["dlogits"])


@pytest.mark.parametrize("shape", SHAPES)
def test_gaussian_kl_gradients(shape):
    g = B.Generator(shape)
    mu, logvar = g.standard_normal(shape, "float64"), g.standard_normal(shape, "float64")
    _, dmu, dlogvar = losses.gaussian_kl(mu, logvar)
    report = check_gradients(lambda: losses.gaussian_kl(mu, logvar)[0], {"dmu": mu, "dlogvar": logvar},
                             {"dmu": dmu, "dlogvar": dlogvar})
    assert_passes(report, ["dmu", "dlogvar"])


def _scored(analytic):
    """Skip draws whose true gradient is (nearly) zero everywhere, e.g. logit 0 against target 0.5. There the centered
    difference is pure roundoff, ~1e-16 |f| / h = 1e-11, which rel_error's 1e-8 floor turns into ~1e-3: the check
    would score finite-difference noise, not the backward. Exact zeros are tested exactly (KL at the prior)."""
    assume(all(float(np.abs(B.to_numpy(g)).max()) >= 1e-3 for g in analytic.values()))
    return analytic


@FAST
@given(data=st.data(), shape=shapes())
def test_loss_gradients_random_values(data, shape):
    a, b = _matrix(data.draw, shape, -8.0, 8.0), _matrix(data.draw, shape, 0.0, 1.0)
    _, d = losses.mse(a, b)
    assert_passes(check_gradients(lambda: losses.mse(a, b)[0], {"d": a}, _scored({"d": d})), ["d"])
    _, d = losses.bce_with_logits(a, b)
    assert_passes(check_gradients(lambda: losses.bce_with_logits(a, b)[0], {"d": a}, _scored({"d": d})), ["d"])
    lv = _matrix(data.draw, shape, -4.0, 4.0)
    _, dmu, dlv = losses.gaussian_kl(a, lv)
    report = check_gradients(lambda: losses.gaussian_kl(a, lv)[0], {"dmu": a, "dlv": lv},
                             _scored({"dmu": dmu, "dlv": dlv}))
    assert_passes(report, ["dmu", "dlv"])


# ---------------------------------------------------------------- values

def test_mse_value_is_summed_over_features_and_averaged_over_the_batch():
    pred, target = host_array([[1.0, 2.0], [0.0, -1.0]], (2, 2)), host_array([[0.0, 0.0], [0.0, 1.0]], (2, 2))
    value, dpred = losses.mse(pred, target)
    assert value == (1 + 4 + 0 + 4) / 2
    np.testing.assert_array_equal(B.to_numpy(dpred), [[1.0, 2.0], [0.0, -2.0]])  # 2 (pred - target) / N
    np.testing.assert_array_equal(B.to_numpy(losses.mse_per_example(pred, target)), [5.0, 4.0])


def _logits_and_targets(data, shape, limit):
    """Logits in [-limit, limit] and targets in [0, 1], as backend arrays and as NumPy copies."""
    logits, target = _matrix(data.draw, shape, -limit, limit), _matrix(data.draw, shape, 0.0, 1.0)
    return logits, target, B.to_numpy(logits), B.to_numpy(target)


@FAST
@given(data=st.data(), shape=shapes())
def test_bce_with_logits_equals_the_naive_formula(data, shape):
    # |l| <= 15 keeps the naive formula accurate: 1 - sigmoid(l) cancels, losing ~1e-16 / (1 - s) of relative
    # precision, 3e-10 at l = 15 (and everything at l = 40, where the stable form is the only right answer).
    logits, target, lg, x = _logits_and_targets(data, shape, 15.0)
    value, _ = losses.bce_with_logits(logits, target)
    s = 1.0 / (1.0 + np.exp(-lg))
    naive = -x * np.log(s) - (1 - x) * np.log(1 - s)
    assert value == pytest.approx(naive.sum() / lg.shape[0], rel=1e-8, abs=1e-8)
    per_example = B.to_numpy(losses.bce_with_logits_per_example(logits, target))
    np.testing.assert_allclose(per_example, naive.sum(axis=1), rtol=1e-8, atol=1e-8)


@FAST
@given(data=st.data(), shape=shapes())
def test_bce_gradient_equals_the_plain_sigmoid_formula(data, shape):
    # The gradient uses sigmoid(l) = (1 + tanh(l / 2)) / 2; the plain 1 / (1 + exp(-l)) - x is accurate at |l| <= 700
    # in float64. The two agree to a few roundings of 1, which is all the difference s - x resolves.
    logits, target, lg, x = _logits_and_targets(data, shape, 700.0)
    _, dlogits = losses.bce_with_logits(logits, target)
    plain = (1.0 / (1.0 + np.exp(-lg)) - x) / lg.shape[0]
    np.testing.assert_allclose(B.to_numpy(dlogits), plain, rtol=0, atol=4e-16 / lg.shape[0])


@pytest.mark.parametrize("fast", [False, True], ids=["plain", "fast"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bce_with_logits_is_exact_at_huge_logits(dtype, fast, xp):
    # Exact limits: at l = 1e4, x = 0 the loss is l itself (log(1 + e^l) -> l); at l = -1e4, x = 1 it is |l|; where
    # sigmoid(l) agrees with x it is 0 (e^-1e4 underflows to exactly 0 in both dtypes).
    logits = tv.asarray([[1e4, -1e4, 1e4, -1e4, 1e4], [-1e4, 1e4, 0.0, 0.0, -1e4]], dtype=dtype)
    target = tv.asarray([[0.0, 1.0, 1.0, 0.0, 0.5], [0.0, 1.0, 0.0, 1.0, 0.25]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow anywhere (exp(1e4) would be inf and warn)
        if fast:  # one exp for value and gradient, sigmoid = 1/2 + sign(l) (1 / (1 + e^-|l|) - 1/2)
            value, dlogits = losses.bce_with_logits_fast(logits, target)
            per_example = B.to_numpy(losses.bce_with_logits_per_example_fast(logits, target))
        else:
            value, dlogits = losses.bce_with_logits(logits, target)
            per_example = B.to_numpy(losses.bce_with_logits_per_example(logits, target))
        value = float(value)  # a 0-d device array from the fast twin on CuPy
    # element by element: max(l, 0) - l x + log1p(e^-|l|), the last term exactly 0 at |l| = 1e4 and log 2 at l = 0
    row0 = 1e4 + 1e4 + 0.0 + 0.0 + (1e4 - 0.5e4)
    row1 = 0.0 + 0.0 + math.log(2.0) + math.log(2.0) + 0.25e4
    np.testing.assert_allclose(per_example, [row0, row1], rtol=1e-7 if dtype == "float32" else 1e-15)
    assert value == pytest.approx((row0 + row1) / 2, rel=1e-7 if dtype == "float32" else 1e-15)
    assert math.isfinite(value) and dlogits.dtype == getattr(xp, dtype)
    # dl = (sigmoid(l) - x) / N with sigmoid exactly 0 or 1 in the tails
    np.testing.assert_array_equal(B.to_numpy(dlogits), np.array(
        [[1.0, -1.0, 0.0, 0.0, 0.5], [0.0, 0.0, 0.5, -0.5, -0.25]], dtype=dtype) / 2)


def test_bce_single_element_at_1e4_is_1e4():
    value, _ = losses.bce_with_logits(tv.asarray([[1e4]], dtype="float64"), tv.asarray([[0.0]], dtype="float64"))
    assert value == 1e4


def test_kl_is_exactly_zero_at_the_prior(xp):
    for dtype in ("float32", "float64"):
        mu, logvar = B.zeros((3, 4), dtype), B.zeros((3, 4), dtype)
        value, dmu, dlogvar = losses.gaussian_kl(mu, logvar)
        assert value == 0.0
        assert not B.to_numpy(dmu).any() and not B.to_numpy(dlogvar).any()
        assert not B.to_numpy(losses.gaussian_kl_per_example(mu, logvar)).any()


@FAST
@given(data=st.data(), shape=shapes())
def test_kl_is_positive_away_from_the_prior(data, shape):
    mu, logvar = _matrix(data.draw, shape, -5.0, 5.0), _matrix(data.draw, shape, -5.0, 5.0)
    # 1e-3 away from 0 in some entry: closer, e^lv - 1 - lv ~ lv^2 / 2 sinks below the roundoff of e^lv - 1.
    assume(max(np.abs(B.to_numpy(mu)).max(), np.abs(B.to_numpy(logvar)).max()) >= 1e-3)
    value, _, _ = losses.gaussian_kl(mu, logvar)
    assert value > 0.0
    m, lv = B.to_numpy(mu), B.to_numpy(logvar)
    expected = 0.5 * (m**2 + np.exp(lv) - 1 - lv).sum() / m.shape[0]
    assert value == pytest.approx(expected, rel=1e-12)


def test_kl_of_a_known_gaussian():
    # KL(N(1, e^2) || N(0, 1)) = 1/2 (1 + e^2 - 1 - 2) = (e^2 - 2) / 2 per dimension
    value, _, _ = losses.gaussian_kl(host_array([[1.0, 1.0]], (1, 2)), host_array([[2.0, 2.0]], (1, 2)))
    assert value == pytest.approx(math.exp(2.0) - 2.0, rel=1e-15)


@pytest.mark.parametrize("name", ["mse", "bce_with_logits", "gaussian_kl"])
def test_per_example_values_average_to_the_loss(name):
    g = B.Generator(9)
    a, b = g.standard_normal((5, 3), "float64"), g.random((5, 3), "float64")
    value = getattr(losses, name)(a, b)[0]
    per = B.to_numpy(getattr(losses, name + "_per_example")(a, b))
    assert per.shape == (5,) and per.mean() == pytest.approx(value, rel=1e-14)


# ---------------------------------------------------------------- dtypes and errors

@pytest.mark.parametrize("name", ["mse", "bce_with_logits", "gaussian_kl"])
def test_float32_gradients_stay_float32(name, xp):
    g = B.Generator(0)
    a = g.standard_normal((2, 3))
    for b in (g.random((2, 3)), g.random((2, 3), "float64")):  # a float64 target must not promote the gradient
        value, *grads = getattr(losses, name)(a, b)
        assert isinstance(value, float) and len(grads) == (2 if name == "gaussian_kl" else 1)
        assert all(d.dtype == xp.float32 and tuple(d.shape) == (2, 3) for d in grads)


@pytest.mark.parametrize("name, names", [("mse", "pred and target"), ("bce_with_logits", "logits and target"),
                                         ("gaussian_kl", "mu and logvar")])
def test_mismatched_shapes_name_both(name, names):
    with pytest.raises(ValueError, match=rf"{name}: {names} must both have shape \(N, D\); got \(2, 3\) and \(3, 2\)"):
        getattr(losses, name)(B.zeros((2, 3)), B.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"got \(6,\) and \(6,\)"):
        getattr(losses, name)(B.zeros((6,)), B.zeros((6,)))


# ---------------------------------------------------------------- softmax cross-entropy (issue 11)

@pytest.mark.parametrize("shape", [(3, 5), (1, 2), (4, 10)])
def test_softmax_cross_entropy_gradient(shape):
    g = B.Generator(shape)
    logits = g.standard_normal(shape, "float64") * 3.0
    labels = tv.asarray(np.arange(shape[0]) % shape[1])
    _, dl = losses.softmax_cross_entropy(logits, labels)
    report = check_gradients(lambda: losses.softmax_cross_entropy(logits, labels)[0], {"dlogits": logits},
                             {"dlogits": dl})
    assert_passes(report, ["dlogits"])


def test_softmax_cross_entropy_matches_torch_and_the_per_example_form():
    torch = pytest.importorskip("torch")
    logits = np.random.default_rng(0).standard_normal((6, 4))
    labels = np.array([0, 3, 1, 1, 2, 0])
    value, dl = losses.softmax_cross_entropy(tv.asarray(logits), tv.asarray(labels))
    t = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(t, torch.tensor(labels))
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(B.to_numpy(dl), t.grad.numpy(), rtol=1e-10, atol=1e-14)
    per = B.to_numpy(losses.softmax_cross_entropy_per_example(tv.asarray(logits), tv.asarray(labels)))
    assert per.shape == (6,) and per.mean() == pytest.approx(value, rel=1e-12)


def test_softmax_cross_entropy_is_exact_at_huge_logits():
    value, dl = losses.softmax_cross_entropy(host_array([1e4, -1e4, 0.0, 1e4], (2, 2)), tv.asarray(np.array([1, 0])))
    assert value == pytest.approx((2e4 + 1e4) / 2)
    np.testing.assert_allclose(B.to_numpy(dl), [[0.5, -0.5], [-0.5, 0.5]], atol=1e-12)


@pytest.mark.parametrize("labels, match", [
    (np.array([0, 1]), r"shape \(3,\)"),
    (np.array([0.0, 1.0, 2.0]), "integers"),
    (np.array([0, 1, 5]), r"\[0, 4\)"),
    (np.array([-1, 1, 2]), r"\[0, 4\)"),
])
def test_check_labels_errors(labels, match):
    with pytest.raises((ValueError, TypeError), match=match):
        losses.softmax_cross_entropy(host_array(np.zeros(12), (3, 4)), tv.asarray(labels))
