"""Tests for Parameter, Module, Sequential, Dense and the activations: gradient checks in float64 (threshold 1e-7),
the stable sigmoid/softplus, dtypes, the Module API and the errors for bad input."""
import math
import warnings

import numpy as np
import pytest
from hypothesis_or_skip import HealthCheck, given, settings, st

import tinyvae as tv
from tinyvae import backend as B
from tinyvae.activations import ACTIVATIONS, sigmoid, softplus
from tinyvae.gradcheck import check_module

FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ACTIVATION_CLASSES = [tv.ReLU, tv.LeakyReLU, tv.Sigmoid, tv.Tanh, tv.Softplus, tv.Identity]


def assert_passes(report, names):
    """Every expected gradient was checked (an empty report would pass vacuously) and all of them passed."""
    assert [c.name.rsplit(" ", 1)[-1] for c in report] == names
    assert report.passed, "\n" + str(report)


def host_array(values, shape, dtype="float64"):
    return tv.asarray(np.asarray(values, dtype=np.float64).reshape(shape), dtype=dtype)


def away_from_zero(magnitudes, signs, shape):
    """Entries with |x| >= 1e-3. ReLU and LeakyReLU have no derivative at 0: with h = 1e-5, an entry closer than h to
    the kink would make the centered difference average the two slopes, failing a correct backward."""
    return host_array([m * (1.0 if s else -1.0) for m, s in zip(magnitudes, signs)], shape)


# ---------------------------------------------------------------- Dense: gradients

@pytest.mark.parametrize("init", ["pytorch", "xavier", "he"])
@pytest.mark.parametrize("n, d_in, d_out", [(3, 7, 5), (1, 4, 3), (1, 1, 1), (5, 2, 9)])
def test_dense_gradients(init, n, d_in, d_out):
    layer = tv.Dense(d_in, d_out, init=init, rng=n * d_in, dtype="float64")
    x = B.Generator(1).standard_normal((n, d_in), "float64")
    assert_passes(check_module(layer, x), ["dx", "dW", "db"])


@FAST
@given(n=st.integers(1, 4), d_in=st.integers(1, 6), d_out=st.integers(1, 6),
       init=st.sampled_from(["pytorch", "xavier", "he"]), seed=st.integers(0, 2**31), scale=st.floats(0.01, 100.0))
def test_dense_gradients_random_shapes(n, d_in, d_out, init, seed, scale):
    layer = tv.Dense(d_in, d_out, init=init, rng=seed, dtype="float64")
    x = B.Generator(seed + 1).standard_normal((n, d_in), "float64") * scale
    assert_passes(check_module(layer, x, rng=seed), ["dx", "dW", "db"])


def test_dense_forward_is_x_at_w_plus_b():
    layer = tv.Dense(3, 2, rng=0, dtype="float64")
    x = host_array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]], (2, 3))
    W, b = B.to_numpy(layer.W.data), B.to_numpy(layer.b.data)
    np.testing.assert_allclose(B.to_numpy(layer.forward(x)), B.to_numpy(x) @ W + b, rtol=1e-14)
    assert layer.W.shape == (3, 2) and layer.b.shape == (2,)


def test_dense_inits_follow_their_distributions():
    d_in, d_out = 200, 150
    pt = tv.Dense(d_in, d_out, init="pytorch", rng=0, dtype="float64")
    bound = 1.0 / math.sqrt(d_in)
    for p in (pt.W, pt.b):
        a = B.to_numpy(p.data)
        assert np.abs(a).max() <= bound and np.abs(a).max() > 0.9 * bound
    xa = tv.Dense(d_in, d_out, init="xavier", rng=0, dtype="float64")
    W = B.to_numpy(xa.W.data)
    assert np.abs(W).max() <= math.sqrt(6.0 / (d_in + d_out)) and not B.to_numpy(xa.b.data).any()
    he = tv.Dense(d_in, d_out, init="he", rng=0, dtype="float64")
    W, n = B.to_numpy(he.W.data), d_in * d_out
    # The sample std of n normal draws has standard error sigma / sqrt(2n): 6 of them leave no room for chance.
    sigma = math.sqrt(2.0 / d_in)
    assert abs(W.std() - sigma) < 6 * sigma / math.sqrt(2 * n)
    assert abs(W.mean()) < 6 * sigma / math.sqrt(n) and not B.to_numpy(he.b.data).any()


def test_dense_same_rng_same_weights():
    a, b = tv.Dense(5, 4, rng=3), tv.Dense(5, 4, rng=3)
    np.testing.assert_array_equal(B.to_numpy(a.W.data), B.to_numpy(b.W.data))
    assert not np.array_equal(B.to_numpy(a.W.data), B.to_numpy(tv.Dense(5, 4, rng=4).W.data))


def test_backward_adds_into_grad():
    layer = tv.Dense(4, 3, rng=0, dtype="float64")
    x = B.Generator(0).standard_normal((2, 4), "float64")
    dout = B.Generator(1).standard_normal((2, 3), "float64")
    layer.forward(x)
    layer.backward(dout)
    once = [B.to_numpy(p.grad).copy() for p in layer.parameters()]
    assert all(g.any() for g in once)
    layer.backward(dout)
    for p, g in zip(layer.parameters(), once):
        np.testing.assert_allclose(B.to_numpy(p.grad), 2 * g, rtol=1e-14)
    layer.zero_grad()
    assert not any(B.to_numpy(p.grad).any() for p in layer.parameters())


def test_dense_can_skip_its_input_gradient():
    layer = tv.Dense(4, 3, rng=0, dtype="float64")
    x = B.Generator(0).standard_normal((2, 4), "float64")
    dout = B.Generator(1).standard_normal((2, 3), "float64")
    layer.forward(x)
    assert layer.backward(dout) is not None
    full = [B.to_numpy(p.grad).copy() for p in layer.parameters()]
    layer.zero_grad()
    layer.input_grad = False
    assert layer.backward(dout) is None
    for p, g in zip(layer.parameters(), full):
        np.testing.assert_array_equal(B.to_numpy(p.grad), g)
    assert_passes(check_module(layer, x), ["dW", "db"])  # the parameter gradients are still right


# ---------------------------------------------------------------- Dense: bad input

def test_dense_wrong_width_names_layer_and_shapes():
    layer = tv.Dense(3, 5)
    with pytest.raises(ValueError, match=r"Dense\(3 -> 5\) expects input of shape \(N, 3\); got shape \(2, 4\)"):
        layer.forward(B.zeros((2, 4)))


@pytest.mark.parametrize("shape", [(3,), (2, 3, 1), ()])
def test_dense_needs_a_2d_batch(shape):
    with pytest.raises(ValueError, match=r"Dense\(3 -> 5\) expects a 2-D batch of shape \(N, 3\); got shape"):
        tv.Dense(3, 5).forward(B.zeros(shape))
    if len(shape) == 1:
        with pytest.raises(ValueError, match=r"x.reshape\(1, -1\)"):
            tv.Dense(3, 5).forward(B.zeros(shape))


def test_dense_rejects_integer_and_wrong_float_input():
    layer = tv.Dense(3, 2)  # float32 parameters
    with pytest.raises(TypeError, match="expects floating-point input; got .*int"):
        layer.forward(tv.asarray(np.arange(6).reshape(2, 3)))
    with pytest.raises(TypeError, match="holds float32 parameters but got float64 input"):
        layer.forward(B.zeros((2, 3), "float64"))


def test_dense_constructor_errors():
    with pytest.raises(ValueError, match="unknown init 'glorot': expected one of pytorch, xavier, he"):
        tv.Dense(3, 2, init="glorot")
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="in_features must be an int >= 1"):
            tv.Dense(bad, 2)


def test_dense_backward_checks_dout_shape():
    layer = tv.Dense(3, 2)
    layer.forward(B.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"expects dout of shape \(4, 2\); got \(4, 3\)"):
        layer.backward(B.zeros((4, 3)))


@pytest.mark.parametrize("make", [lambda: tv.Dense(3, 2), *ACTIVATION_CLASSES,
                                  lambda: tv.Sequential(tv.Dense(3, 2), tv.ReLU())])
def test_backward_before_forward_is_a_clear_error(make):
    module = make()
    with pytest.raises(RuntimeError, match=r"backward was called before .*forward: call forward first"):
        module.backward(B.zeros((2, 2)))


# ---------------------------------------------------------------- activations

@pytest.mark.parametrize("cls", ACTIVATION_CLASSES)
def test_activation_gradients_on_a_grid(cls):
    # Magnitudes from 1e-3 to 30: both sides of every kink, and far into the saturated tails of sigmoid/tanh.
    x = host_array(np.geomspace(1e-3, 30.0, 12) * np.resize([1, -1], 12), (3, 4))
    assert_passes(check_module(cls(), x), ["dx"])


@FAST
@given(data=st.data(), name=st.sampled_from(sorted(ACTIVATIONS)), n=st.integers(1, 3), d=st.integers(1, 5))
def test_activation_gradients_random_inputs(data, name, n, d):
    # |x| <= 50: beyond that the centered difference is roundoff of f (ulp(|x|) / h exceeds 1e-7 of the slope for
    # Softplus at |x| ~ 1e4); the tails are tested exactly in test_sigmoid_and_softplus_are_exact_in_the_tails.
    # rel_error measures against the largest gradient entry, so the first entry is kept unsaturated (|x| <= 2): in a
    # batch of only saturated tanh units (slope ~1e-5 at |x| = 6) the roundoff of f near 1, ~1e-16 / h = 1e-11, is
    # already 1e-7 of the gradient, and the check would score finite-difference noise instead of the backward.
    mags = data.draw(st.lists(st.floats(1e-3, 2.0), min_size=1, max_size=1))
    mags += data.draw(st.lists(st.floats(1e-3, 50.0), min_size=n * d - 1, max_size=n * d - 1))
    signs = data.draw(st.lists(st.booleans(), min_size=n * d, max_size=n * d))
    module = tv.LeakyReLU(data.draw(st.floats(0.0, 0.5))) if name == "leaky_relu" else ACTIVATIONS[name]()
    assert_passes(check_module(module, away_from_zero(mags, signs, (n, d))), ["dx"])


def _reference(name, x):
    """The activations written the obvious way in NumPy float64 (fine for the moderate inputs used here)."""
    return {"relu": np.maximum(x, 0), "leaky_relu": np.where(x > 0, x, 0.01 * x), "sigmoid": 1 / (1 + np.exp(-x)),
            "tanh": np.tanh(x), "softplus": np.log1p(np.exp(x)), "identity": x,
            "elu": np.where(x > 0, x, np.exp(x) - 1)}[name]


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_forward_matches_the_formula(name):
    host = np.linspace(-20, 20, 42).reshape(6, 7)
    y = B.to_numpy(ACTIVATIONS[name]().forward(tv.asarray(host)))
    np.testing.assert_allclose(y, _reference(name, host), rtol=1e-13, atol=1e-300)


def test_sigmoid_and_softplus_are_exact_in_the_tails(xp):
    for dtype in ("float32", "float64"):
        x = tv.asarray([[1e4, -1e4, 1e30, -1e30, 0.0]], dtype=dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an overflow in exp would be a RuntimeWarning, now an error
            s, sp = B.to_numpy(sigmoid(x)), B.to_numpy(softplus(x))
            sig, soft = tv.Sigmoid(), tv.Softplus()
            sig.forward(x), soft.forward(x)
            ones = xp.ones_like(x)
            ds, dsp = B.to_numpy(sig.backward(ones)), B.to_numpy(soft.backward(ones))
        np.testing.assert_array_equal(s, [[1.0, 0.0, 1.0, 0.0, 0.5]])
        np.testing.assert_array_equal(sp, np.array([[1e4, 0.0, 1e30, 0.0, math.log(2.0)]], dtype=dtype))
        np.testing.assert_array_equal(ds, [[0.0, 0.0, 0.0, 0.0, 0.25]])  # y (1 - y) vanishes in the tails
        np.testing.assert_array_equal(dsp, [[1.0, 0.0, 1.0, 0.0, 0.5]])  # the slope of softplus is sigmoid


@FAST
@given(values=st.lists(st.floats(-1e300, 1e300, allow_nan=False), min_size=1, max_size=12))
def test_sigmoid_and_softplus_stay_finite_and_in_range(values):
    x = host_array(values, (1, len(values)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s, sp = B.to_numpy(sigmoid(x)), B.to_numpy(softplus(x))
    host = np.asarray(values)
    assert np.all((s >= 0) & (s <= 1)) and np.all(np.isfinite(sp))
    assert np.all(sp >= np.maximum(host, 0)) and np.all(sp <= np.maximum(host, 0) + math.log(2.0) + 1e-15)
    assert np.all(s[0, host > 40] == 1.0) and np.all(sp[0, host > 40] == host[host > 40])


@FAST
@given(values=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=12), slope=st.floats(0.0, 1.0))
def test_leaky_relu_is_x_or_slope_times_x(values, slope):
    x = host_array(values, (1, len(values)))
    y = B.to_numpy(tv.LeakyReLU(slope).forward(x))[0]
    host = np.asarray(values)
    np.testing.assert_allclose(y, np.where(host > 0, host, slope * host), rtol=1e-15, atol=0)


@pytest.mark.parametrize("cls", ACTIVATION_CLASSES)
def test_activations_keep_float32(cls, xp):
    act = cls()
    x = B.Generator(0).standard_normal((3, 4))
    y = act.forward(x)
    assert y.dtype == xp.float32 and act.backward(xp.ones_like(y)).dtype == xp.float32


def test_unknown_activation_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown activation 'gelu': expected one of relu, leaky_relu, sigmoid, "
                                         "tanh, softplus, identity"):
        tv.get_activation("gelu")
    a, b = tv.get_activation("relu"), tv.get_activation("relu")
    assert isinstance(a, tv.ReLU) and a is not b  # a new module each time: they keep their own forward state


# ---------------------------------------------------------------- Sequential

def _mlp(dtype="float64"):
    return tv.Sequential(tv.Dense(6, 5, rng=0, dtype=dtype), tv.Tanh(), tv.Dense(5, 4, init="he", rng=1, dtype=dtype),
                         tv.LeakyReLU(0.1), tv.Dense(4, 3, init="xavier", rng=2, dtype=dtype), tv.Sigmoid(),
                         tv.Dense(3, 2, rng=3, dtype=dtype), tv.Softplus())


@pytest.mark.parametrize("n", [1, 3])
def test_sequential_gradients(n):
    x = B.Generator(n).standard_normal((n, 6), "float64")
    names = ["dx"] + [f"d{i}.{p}" for i in (0, 2, 4, 6) for p in ("W", "b")]
    assert_passes(check_module(_mlp(), x), names)


def test_sequential_with_relu_and_identity_gradients():
    seq = tv.Sequential(tv.Dense(5, 7, rng=0, dtype="float64"), tv.ReLU(), tv.Dense(7, 3, rng=1, dtype="float64"),
                        tv.Identity())
    x = B.Generator(5).standard_normal((4, 5), "float64")
    assert_passes(check_module(seq, x), ["dx", "d0.W", "d0.b", "d2.W", "d2.b"])


def test_sequential_names_order_and_container_api():
    seq = _mlp()
    names = [n for n, _ in seq.named_parameters()]
    assert names == ["0.W", "0.b", "2.W", "2.b", "4.W", "4.b", "6.W", "6.b"]
    assert [id(p) for p in seq.parameters()] == [id(p) for p in seq.parameters()]  # stable
    assert seq.parameters()[2] is seq[2].W and len(seq) == 8 and list(seq)[1] is seq[1]
    with pytest.raises(TypeError, match="Sequential takes Modules, got function"):
        tv.Sequential(tv.ReLU(), lambda x: x)


def test_sequential_stops_at_a_first_layer_without_input_gradient():
    seq = tv.Sequential(tv.Dense(3, 4, rng=0, dtype="float64"), tv.Tanh(), tv.Dense(4, 2, rng=1, dtype="float64"))
    seq[0].input_grad = False
    x = B.Generator(0).standard_normal((2, 3), "float64")
    seq.forward(x)
    assert seq.backward(B.ones((2, 2), "float64")) is None
    assert_passes(check_module(seq, x), ["d0.W", "d0.b", "d2.W", "d2.b"])


# ---------------------------------------------------------------- Module API

class _Pair(tv.Module):
    """A custom module: an own Parameter, a child and a list of children, to test naming and traversal."""

    def __init__(self):
        self.scale = tv.Parameter(B.ones((2,), "float64"))
        self.first = tv.Dense(2, 3, rng=0, dtype="float64")
        self.rest = [tv.ReLU(), tv.Dense(3, 1, rng=1, dtype="float64")]


def test_parameter_holds_data_and_a_zero_grad(xp):
    data = B.Generator(0).random((3, 2))
    p = tv.Parameter(data)
    assert p.data is data and p.shape == (3, 2) and p.grad.dtype == xp.float32
    assert tuple(p.grad.shape) == (3, 2) and not B.to_numpy(p.grad).any()
    assert repr(p) == "Parameter(shape=(3, 2), dtype=float32)"


def test_parameter_accumulate_is_grad_plus_equals_and_zero_grad_reads_as_zeros(xp):
    gen = B.Generator(0)
    p = tv.Parameter(gen.standard_normal((3, 2), "float64"))
    g1, g2 = gen.standard_normal((3, 2), "float64"), gen.standard_normal((3, 2), "float64")
    p.accumulate(B.copy(g1))  # the first gradient after zero_grad is kept as it is ...
    p.accumulate(B.copy(g2))  # ... and later ones are added to it
    np.testing.assert_allclose(B.to_numpy(p.grad), B.to_numpy(g1) + B.to_numpy(g2), rtol=1e-15)
    p.zero_grad()
    assert not B.to_numpy(p.grad).any() and tuple(p.grad.shape) == (3, 2)
    p.zero_grad()
    p.grad += g1  # the zeros read after zero_grad are a real array: in-place arithmetic lands in .grad
    np.testing.assert_array_equal(B.to_numpy(p.grad), B.to_numpy(g1))
    p.grad = None  # as in PyTorch: no gradient, read as zeros
    assert not B.to_numpy(p.grad).any()


def test_parameter_rejects_a_gradient_of_the_wrong_shape_or_dtype(xp):
    p = tv.Parameter(B.zeros((3, 2), "float32"))
    with pytest.raises(ValueError, match=r"accumulate: expected a gradient of shape \(3, 2\) and dtype float32, "
                                         r"got shape \(1, 2\)"):
        p.accumulate(B.zeros((1, 2), "float32"))  # would broadcast if added; adopted, it would be a wrong .grad
    with pytest.raises(ValueError, match=r"grad: expected a gradient of shape \(3, 2\) and dtype float32, got .*64"):
        p.grad = B.zeros((3, 2), "float64")  # float64 into float32 parameters would promote every update


def test_named_parameters_are_complete_and_in_a_stable_order():
    m = _Pair()
    assert [n for n, _ in m.named_parameters()] == ["scale", "first.W", "first.b", "rest.1.W", "rest.1.b"]
    assert m.parameters()[3] is m.rest[1].W
    assert [type(c).__name__ for c in m.children()] == ["Dense", "ReLU", "Dense"]


def test_train_and_eval_reach_every_submodule():
    m = tv.Sequential(_Pair(), tv.Sequential(tv.Tanh()))
    everything = [m, m[0], m[0].first, *m[0].rest, m[1], m[1][0]]
    assert m.eval() is m
    assert all(sub.training is False for sub in everything)
    m.train()
    assert all(sub.training is True for sub in everything)


def test_state_dict_round_trip_and_copies():
    a, b = _Pair(), _Pair()
    for p in b.parameters():
        p.data[...] = 0.5
    state = a.state_dict()
    assert list(state) == ["scale", "first.W", "first.b", "rest.1.W", "rest.1.b"]
    b.load_state_dict(state)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        np.testing.assert_array_equal(B.to_numpy(pa.data), B.to_numpy(pb.data), err_msg=name)
    a.first.W.data[...] = 9.0  # the state dict holds copies, not views
    assert float(state["first.W"][0, 0]) != 9.0
    host_state = {k: B.to_numpy(v) for k, v in state.items()}  # a checkpoint on disk holds NumPy arrays
    b.load_state_dict(host_state)
    np.testing.assert_array_equal(B.to_numpy(b.first.W.data), host_state["first.W"])


def test_load_state_dict_errors():
    m = _Pair()
    state = m.state_dict()
    partial = {k: v for k, v in state.items() if k != "first.b"}
    with pytest.raises(KeyError, match=r"missing keys \['first.b'\], unexpected keys \[\]"):
        m.load_state_dict(partial)
    with pytest.raises(KeyError, match=r"unexpected keys \['extra'\]"):
        m.load_state_dict({**state, "extra": state["scale"]})
    with pytest.raises(ValueError, match=r"'first.W' has shape \(3, 2\), expected \(2, 3\)"):
        m.load_state_dict({**state, "first.W": B.zeros((3, 2), "float64")})


# ---------------------------------------------------------------- float32 stays float32

@pytest.mark.parametrize("make", [lambda: tv.Dense(4, 3, rng=0), lambda: _mlp(dtype=None),
                                  lambda: tv.Sequential(tv.Dense(4, 3, rng=0), tv.ReLU())])
def test_float32_in_float32_out(make, xp):
    module = make()
    width = module[0].in_features if isinstance(module, tv.Sequential) else module.in_features
    x = B.Generator(0).standard_normal((2, width))
    y = module.forward(x)
    dx = module.backward(xp.ones_like(y))
    assert y.dtype == xp.float32 and dx.dtype == xp.float32
    assert all(p.data.dtype == xp.float32 and p.grad.dtype == xp.float32 for p in module.parameters())
