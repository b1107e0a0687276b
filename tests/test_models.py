"""Tests for Autoencoder, DenoisingAutoencoder and VAE: the whole objective gradient-checked end to end in float64
(eps and noise fixed), the model API (encode/decode/sample/reconstruct/interpolate, config/build, modes) and errors."""
import math

import numpy as np
import pytest

import tinyvae as tv
from tinyvae import backend as B
from tinyvae import kinds, losses, models
from tinyvae.gradcheck import check_model

D = 7  # an odd input width: nothing lines up by accident


def data(n=3, seed=0, dtype="float64"):
    return B.Generator((seed, 99)).random((n, D), dtype)


def assert_passes(report, model):
    expected = [name for name, _ in model.named_parameters()]
    assert [c.name.rsplit(" ", 1)[-1] for c in report] == expected and expected
    assert report.passed, "\n" + str(report)


# ---------------------------------------------------------------- the whole objective, gradient-checked

@pytest.mark.parametrize("hidden, activation, likelihood, n, h", [
    ((), "relu", "bernoulli", 3, 1e-5),
    ((5,), "relu", "bernoulli", 1, 1e-5),
    ((5,), "tanh", "gaussian", 3, 1e-5),
    ((6, 4), "leaky_relu", "bernoulli", 2, 1e-5),
    # Four sigmoid layers shrink the gradient at encoder.0.W to ~3e-4 while the objective is ~4: the roundoff of the
    # centered difference, ~1e-16 * 4 / h, is then 1e-7 of it at h = 1e-5 (it scales as 1/h: 1.4e-6 at h = 1e-6).
    # A larger step, h = 1e-4 (truncation error h^2 ~ 1e-8), keeps the 1e-7 threshold meaningful.
    ((4, 3), "sigmoid", "gaussian", 3, 1e-4),
    ((5,), "softplus", "bernoulli", 2, 1e-5),
])
def test_autoencoder_objective_gradients(hidden, activation, likelihood, n, h):
    model = tv.Autoencoder(D, hidden, 3, likelihood=likelihood, activation=activation, dtype="float64", rng=1)
    assert_passes(check_model(model, data(n), h=h), model)


@pytest.mark.parametrize("noise, level, hidden", [("gaussian", 0.4, (5,)), ("masking", 0.3, (5,)),
                                                  ("masking", 0.5, (6, 4)), ("gaussian", 1.0, ())])
def test_denoising_autoencoder_objective_gradients(noise, level, hidden):
    model = tv.DenoisingAutoencoder(D, hidden, 3, noise=noise, noise_level=level, dtype="float64", rng=2)
    # rng=<int seed> (not a Generator) redraws the same noise on every evaluation: a deterministic objective
    assert_passes(check_model(model, data(), rng=7), model)


@pytest.mark.parametrize("likelihood, beta, hidden, activation", [
    ("bernoulli", 1.0, (5,), "relu"),
    ("bernoulli", 0.5, (), "relu"),
    ("bernoulli", 2.5, (6, 4), "tanh"),
    ("gaussian", 0.25, (5,), "softplus"),
    ("gaussian", 4.0, (), "identity"),
    ("gaussian", 1.5, (6, 4), "leaky_relu"),
    ("bernoulli", 0.0, (4,), "sigmoid"),
])
def test_vae_objective_gradients(likelihood, beta, hidden, activation):
    eps = B.Generator(4).standard_normal((3, 3), "float64")
    vae = _kink_safe_vae(data(), eps, hidden=hidden, latent_dim=3, likelihood=likelihood, beta=beta,
                         activation=activation)
    assert_passes(check_model(vae, data(), eps=eps), vae)


def _kink_distance(vae, x, eps):
    """The smallest |input| of any ReLU or LeakyReLU in the VAE's forward pass on (x, eps)."""
    xp, found = tv.get_xp(), [float("inf")]

    def run(layers, h):
        for layer in layers:
            if isinstance(layer, (tv.ReLU, tv.LeakyReLU)):
                found.append(float(xp.min(xp.abs(h))))
            h = layer.forward(h)
        return h

    h = run(vae.encoder, B.asarray(x))
    mu, logvar = vae.mu_head.forward(h), vae.logvar_head.forward(h)
    run(vae.decoder, mu + xp.exp(0.5 * logvar) * eps)
    return min(found)


def _kink_safe_vae(x, eps, margin=1e-3, **kwargs):
    """The first VAE (init seeds 3, 4, ...) whose ReLU-like units all see inputs at least ``margin`` from 0.

    Centered differences step each parameter by h = 1e-5, which moves a pre-activation by about h times an input:
    one that close to the kink of a piecewise-linear activation gives a difference quotient mixing both slopes
    (e.g. 1.25e-6 instead of < 1e-7 under CuPy's draws). Which seed qualifies depends on the backend's draws.
    """
    for seed in range(3, 103):
        vae = tv.VAE(D, dtype="float64", rng=seed, **kwargs)
        if _kink_distance(vae, x, eps) > margin:
            return vae
    raise AssertionError("no kink-safe initialisation among 100 seeds")


def test_vae_objective_gradients_with_a_batch_of_one():
    vae = tv.VAE(D, (5,), 2, beta=0.7, dtype="float64", rng=5)
    assert_passes(check_model(vae, data(1), eps=B.Generator(6).standard_normal((1, 2), "float64")), vae)


class _VAEWithoutBeta(tv.VAE):
    """A VAE whose backward forgets beta on the KL gradient at logvar: the whole-objective check must notice."""

    def backward(self):
        dout, dmu_kl, dlogvar_kl = self._loss_grads
        self._loss_grads = (dout, dmu_kl, dlogvar_kl / self.beta)
        super().backward()


def test_check_model_catches_a_miswired_backward():
    vae = _VAEWithoutBeta(D, (5,), 2, beta=3.0, dtype="float64", rng=3)
    report = check_model(vae, data(), eps=B.Generator(4).standard_normal((3, 2), "float64"))
    results = {c.name.rsplit(" ", 1)[-1]: c.passed for c in report}
    assert not results["logvar_head.W"] and not results["encoder.0.W"]  # the error flows on into the encoder
    assert results["mu_head.W"] and results["decoder.0.W"]             # what it does not reach stays right


# ---------------------------------------------------------------- parameters, gradients, modes

def test_parameter_names_are_complete_and_ordered():
    vae = tv.VAE(D, (5, 4), 2)
    layers = ["encoder.0", "encoder.2", "mu_head", "logvar_head", "decoder.0", "decoder.2", "decoder.4"]
    assert [n for n, _ in vae.named_parameters()] == [f"{layer}.{p}" for layer in layers for p in ("W", "b")]
    assert [p.shape for p in vae.parameters()] == [(7, 5), (5,), (5, 4), (4,), (4, 2), (2,), (4, 2), (2,),
                                                   (2, 4), (4,), (4, 5), (5,), (5, 7), (7,)]
    ae = tv.Autoencoder(D, (5,), 2)
    assert [n for n, _ in ae.named_parameters()] == ["encoder.0.W", "encoder.0.b", "encoder.2.W", "encoder.2.b",
                                                     "decoder.0.W", "decoder.0.b", "decoder.2.W", "decoder.2.b"]
    assert [id(p) for p in vae.parameters()] == [id(p) for p in vae.parameters()]


def _grads(model):
    return [B.to_numpy(p.grad).copy() for p in model.parameters()]


def _loss_and_backward(model, x):
    kw = {"eps": B.Generator(1).standard_normal((x.shape[0], model.latent_dim), "float64")} \
        if isinstance(model, tv.VAE) else {"rng": 1}
    model.zero_grad()
    model.loss(x, **kw)
    model.backward()


@pytest.mark.parametrize("make, first_layers", [
    (lambda: tv.Autoencoder(D, (5,), 2, dtype="float64", rng=0), lambda m: [m.encoder[0]]),
    (lambda: tv.DenoisingAutoencoder(D, (5,), 2, dtype="float64", rng=0), lambda m: [m.encoder[0]]),
    (lambda: tv.VAE(D, (5,), 2, dtype="float64", rng=0), lambda m: [m.encoder[0]]),
    (lambda: tv.VAE(D, (), 2, dtype="float64", rng=0), lambda m: [m.mu_head, m.logvar_head]),
])
def test_first_dense_skips_its_input_gradient_and_gradients_stay_right(make, first_layers):
    model, x = make(), data()
    _loss_and_backward(model, x)
    skipped = _grads(model)
    for layer in first_layers(model):
        assert layer.input_grad is False
        assert layer.backward(B.zeros((3, layer.out_features), "float64")) is None  # zeros: grads unchanged
        layer.input_grad = True
    _loss_and_backward(model, x)
    for a, b in zip(skipped, _grads(model)):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-300)


def test_model_backward_adds_and_zero_grad_clears():
    vae = tv.VAE(D, (5,), 2, dtype="float64", rng=0)
    _loss_and_backward(vae, data())
    once = _grads(vae)
    assert all(g.any() for g in once)
    vae.backward()  # the same loss again: every gradient doubles
    for g, g2 in zip(once, _grads(vae)):
        np.testing.assert_allclose(g2, 2 * g, rtol=1e-14)
    vae.zero_grad()
    assert not any(g.any() for g in _grads(vae))


def test_train_and_eval_propagate_through_models():
    for model in (tv.Autoencoder(D, (5,), 2), tv.DenoisingAutoencoder(D, (5,), 2), tv.VAE(D, (5, 4), 2)):
        subs = [model, *model.children(), *(m for c in model.children() for m in c.children())]
        assert len(subs) > 4
        model.eval()
        assert not any(m.training for m in subs)
        model.train()
        assert all(m.training for m in subs)


def test_denoising_autoencoder_corrupts_only_in_training_mode():
    dae = tv.DenoisingAutoencoder(D, (5,), 2, noise="masking", noise_level=0.5, dtype="float64", rng=0)
    x = data(6)

    def recon_of(inp):
        return losses.bce_with_logits(dae.decoder.forward(dae.encoder.forward(inp)), x)[0]

    assert dae.training
    assert dae.loss(x, rng=1).total == pytest.approx(recon_of(dae.corrupt(x, rng=1)), rel=1e-14)
    assert dae.loss(x, rng=1).total != dae.loss(x, rng=2).total
    dae.eval()
    clean = recon_of(x)
    assert dae.loss(x, rng=1).total == dae.loss(x, rng=2).total == pytest.approx(clean, rel=1e-14)
    assert B.to_numpy(dae.corrupt(x, rng=1)).tolist() != B.to_numpy(x).tolist()  # corrupt() itself always corrupts


@pytest.mark.parametrize("noise, level", [("masking", 0.3), ("gaussian", 0.2)])
def test_corruption_statistics(noise, level):
    dae = tv.DenoisingAutoencoder(D, (5,), 2, noise=noise, noise_level=level, dtype="float64")
    x = B.Generator(0).random((4000, D), "float64") * 0.5 + 0.5  # no pixel is 0 to begin with
    xc, xh = B.to_numpy(dae.corrupt(x, rng=3)), B.to_numpy(x)
    n = xh.size
    if noise == "masking":
        dropped = xc == 0
        np.testing.assert_array_equal(xc[~dropped], xh[~dropped])  # kept pixels are untouched
        # the dropped fraction is binomial: standard error sqrt(p (1 - p) / n); 6 of them
        assert abs(dropped.mean() - level) < 6 * math.sqrt(level * (1 - level) / n)
    else:
        noise_std = (xc - xh).std(ddof=1)
        assert abs(noise_std - level) < 6 * level / math.sqrt(2 * (n - 1))  # std error of a sample std
        assert abs((xc - xh).mean()) < 6 * level / math.sqrt(n)


# ---------------------------------------------------------------- encode, decode, sample, reconstruct, interpolate

@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_vae_api_shapes_and_ranges(likelihood):
    vae = tv.VAE(D, (5,), 3, likelihood=likelihood, rng=0)
    x = data(4, dtype="float32")
    mu, logvar = vae.encode(x)
    assert tuple(mu.shape) == tuple(logvar.shape) == (4, 3)
    outputs = {"decode": vae.decode(mu), "sample": vae.sample(6, rng=1), "reconstruct": vae.reconstruct(x),
               "interpolate": vae.interpolate(x[0, ...], x[1, ...], steps=5)}
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {"decode": (4, D), "sample": (6, D),
                                                                "reconstruct": (4, D), "interpolate": (5, D)}
    if likelihood == "bernoulli":  # mean images of a Bernoulli decoder are probabilities
        for v in outputs.values():
            v = B.to_numpy(v)
            assert v.min() >= 0.0 and v.max() <= 1.0
    assert tuple(vae.encode(x[0, ...])[0].shape) == (1, 3)  # a single image is a batch of one


def test_autoencoder_api_shapes_and_ranges():
    ae = tv.Autoencoder(D, (5,), 3, rng=0)
    x = data(4, dtype="float32")
    z = ae.encode(x)
    assert tuple(z.shape) == (4, 3)
    for out in (ae.decode(z), ae.reconstruct(x)):
        out = B.to_numpy(out)
        assert out.shape == (4, D) and out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_allclose(B.to_numpy(ae.reconstruct(x)), B.to_numpy(ae.decode(z)), rtol=1e-6)


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolate_endpoints_decode_the_inputs_means(method):
    vae = tv.VAE(D, (5,), 3, dtype="float64", rng=0)
    x = data(2)
    mu, _ = vae.encode(x)
    path = B.to_numpy(vae.interpolate(x[0, ...], x[1, ...], steps=4, method=method))
    ends = B.to_numpy(vae.decode(mu))
    np.testing.assert_allclose(path[0], ends[0], rtol=1e-12)
    np.testing.assert_allclose(path[-1], ends[1], rtol=1e-12)
    assert path.shape == (4, D) and not np.allclose(path[1], path[0]) and not np.allclose(path[1], path[-1])
    if method == "linear":
        mid = vae.interpolate(x[0, ...], x[1, ...], steps=3, method="linear")
        np.testing.assert_allclose(B.to_numpy(mid)[1], B.to_numpy(vae.decode((mu[0:1, :] + mu[1:2, :]) * 0.5))[0],
                                   rtol=1e-12)


def test_slerp_follows_the_arc_and_linear_the_chord(monkeypatch):
    # A VAE whose mu is its input (no hidden layer, mu_head = identity) and a spy on decode expose the codes.
    vae = tv.VAE(2, (), 2, dtype="float64", rng=0)
    vae.mu_head.W.data[...] = tv.asarray(np.eye(2), dtype="float64")
    vae.mu_head.b.data[...] = 0.0
    codes = []
    decode = vae.decode
    monkeypatch.setattr(vae, "decode", lambda z: codes.append(B.to_numpy(z)) or decode(z))
    a, b = tv.asarray([3.0, 4.0], dtype="float64"), tv.asarray([-4.0, 3.0], dtype="float64")  # |a| = |b| = 5
    vae.interpolate(a, b, steps=5, method="slerp")
    vae.interpolate(a, b, steps=5, method="linear")
    slerp, linear = codes
    np.testing.assert_allclose(np.linalg.norm(slerp, axis=1), 5.0, rtol=1e-12)  # on the sphere through a and b
    # a and b are orthogonal (omega = pi/2): the midpoint is sin(pi/4) (a + b) / sin(pi/2) = (a + b) / sqrt(2)
    np.testing.assert_allclose(slerp[2], np.array([-1.0, 7.0]) / math.sqrt(2), rtol=1e-12)
    np.testing.assert_allclose(linear[2], [-0.5, 3.5], rtol=1e-15)  # the chord's midpoint, norm 5 / sqrt(2)


def test_interpolate_errors():
    vae = tv.VAE(D, (5,), 3)
    x = data(2, dtype="float32")
    for steps in (1, 0, -3):
        with pytest.raises(ValueError, match=f"steps must be at least 2, got {steps}"):
            vae.interpolate(x[0, ...], x[1, ...], steps=steps)
    with pytest.raises(ValueError, match="unknown interpolation 'spline': expected 'linear' or 'slerp'"):
        vae.interpolate(x[0, ...], x[1, ...], method="spline")


def test_sample_is_reproducible_with_a_seed():
    vae = tv.VAE(D, (5,), 3, rng=0)
    a, b = B.to_numpy(vae.sample(4, rng=11)), B.to_numpy(vae.sample(4, rng=11))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, B.to_numpy(vae.sample(4, rng=12)))
    g = B.Generator(11)
    np.testing.assert_array_equal(B.to_numpy(vae.sample(4, rng=g)), a)


# ---------------------------------------------------------------- config, build, loss_per_example

@pytest.mark.parametrize("make", [
    lambda: tv.Autoencoder(D, (5, 4), 3, likelihood="gaussian", activation="tanh", dtype="float64", rng=1),
    lambda: tv.DenoisingAutoencoder(D, (5,), 2, noise="masking", noise_level=0.25, dtype="float64", rng=1),
    lambda: tv.VAE(D, (6,), 2, likelihood="gaussian", beta=0.5, activation="leaky_relu", dtype="float64", rng=1),
    lambda: tv.VAE(D, (), 2, dtype="float64", rng=1),
])
def test_config_rebuilds_the_same_architecture(make):
    model = make()
    config = model.config()
    assert config["model"] in ("ae", "dae", "vae") and config["dtype"] == "float64"
    twin = kinds.build(config)
    assert type(twin) is type(model) and twin.config() == config
    assert [(n, p.shape) for n, p in twin.named_parameters()] == [(n, p.shape) for n, p in model.named_parameters()]
    assert repr(twin) == repr(model)
    x = data()
    assert not np.array_equal(B.to_numpy(twin.reconstruct(x)), B.to_numpy(model.reconstruct(x)))  # fresh weights
    twin.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(B.to_numpy(twin.reconstruct(x)), B.to_numpy(model.reconstruct(x)))
    model.eval(), twin.eval()
    kw = {"eps": B.Generator(2).standard_normal((3, 2), "float64")} if isinstance(model, tv.VAE) else {}
    assert twin.loss(x, **kw) == model.loss(x, **kw)


def test_build_rejects_an_unknown_model():
    with pytest.raises(ValueError, match="unknown model 'gan': expected one of ae, dae, vae"):
        kinds.build({"model": "gan"})


@pytest.mark.parametrize("make", [lambda: tv.VAE(D, (5,), 2, beta=0.3, dtype="float64", rng=0),
                                  lambda: tv.VAE(D, (5,), 2, likelihood="gaussian", dtype="float64", rng=0),
                                  lambda: tv.Autoencoder(D, (5,), 2, dtype="float64", rng=0),
                                  lambda: tv.DenoisingAutoencoder(D, (5,), 2, dtype="float64", rng=0).eval()])
def test_loss_per_example_averages_to_loss(make):
    # (a denoising autoencoder's per-example figures are evaluation figures, on clean input: eval mode matches them)
    model, x = make(), data(5)
    kw = {"eps": B.Generator(3).standard_normal((5, 2), "float64")} if isinstance(model, tv.VAE) else {}
    parts = model.loss(x, **kw)
    per = {k: B.to_numpy(v) for k, v in model.loss_per_example(x, **kw).items()}
    assert all(v.shape == (5,) for v in per.values())
    assert per["loss"].mean() == pytest.approx(parts.total, rel=1e-13)
    assert per["recon"].mean() == pytest.approx(parts.recon, rel=1e-13)
    assert per["kl"].mean() == pytest.approx(parts.kl, rel=1e-13, abs=1e-300)
    beta = getattr(model, "beta", 0.0)
    assert parts.total == pytest.approx(parts.recon + beta * parts.kl, rel=1e-15)


# ---------------------------------------------------------------- float32 in, float32 out

@pytest.mark.parametrize("make", [lambda: tv.Autoencoder(D, (5,), 3, rng=0),
                                  lambda: tv.DenoisingAutoencoder(D, (5,), 3, rng=0),
                                  lambda: tv.VAE(D, (5,), 3, rng=0),
                                  lambda: tv.VAE(D, (), 3, likelihood="gaussian", rng=0)])
def test_float32_models_stay_float32(make, xp):
    model = make()
    x = data(4, dtype="float32")
    code = model.encode(x)
    z = code[0] if isinstance(model, tv.VAE) else code
    arrays = [z, model.decode(z), model.reconstruct(x), model.forward(x)]
    if isinstance(model, tv.VAE):
        arrays += [code[1], model.sample(3, rng=0), model.interpolate(x[0, ...], x[1, ...], steps=3),
                   model.interpolate(x[0, ...], x[1, ...], steps=3, method="slerp")]
    assert all(a.dtype == xp.float32 for a in arrays)
    parts = model.loss(data(4, dtype="float64"), rng=1)  # float64 data is converted to the model's dtype
    assert all(isinstance(v, float) and math.isfinite(v) for v in (parts.total, parts.recon, parts.kl))
    model.backward()
    assert all(p.data.dtype == xp.float32 and p.grad.dtype == xp.float32 for p in model.parameters())


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("make", [lambda: tv.Autoencoder(D, (5,), 2), lambda: tv.DenoisingAutoencoder(D, (5,), 2),
                                  lambda: tv.VAE(D, (5,), 2)])
def test_models_reject_bad_input(make):
    model = make()
    name = type(model).__name__
    with pytest.raises(ValueError, match=rf"{name} expects input of shape \(N, 7\); got shape \(3, 6\)"):
        model.loss(B.zeros((3, 6)))
    with pytest.raises(ValueError, match=rf"{name} expects input of shape \(N, 7\); got shape \(2, 7, 1\)"):
        model.encode(B.zeros((2, D, 1)))
    with pytest.raises(TypeError, match=rf"{name} expects pixel intensities in \[0, 1\] as floats; got .*int"):
        model.loss(tv.asarray(np.zeros((2, D), dtype=np.uint8)))
    with pytest.raises(RuntimeError, match=rf"{name}.backward was called before {name}.loss.*call loss\(x\) right"):
        model.backward()
    with pytest.raises(ValueError, match=r"Dense\(2 -> 5\) expects input of shape \(N, 2\); got shape \(1, 3\)"):
        model.decode(B.zeros((1, 3)))


@pytest.mark.parametrize("make", [lambda: tv.Autoencoder(D, (5,), 2), lambda: tv.VAE(D, (5,), 2)])
@pytest.mark.parametrize("between", ["encode", "reconstruct", "decode", "loss_per_example"])
def test_a_forward_pass_between_loss_and_backward_is_an_error(make, between):
    # The layers keep only the inputs of the LAST forward pass: backward after another one would give wrong
    # gradients silently, so the model forgets the loss and says so instead.
    model, x = make(), tv.Generator(0).random((4, D))
    model.loss(x, rng=0)
    if between == "decode":
        model.decode(B.zeros((2, 2)))
    else:
        getattr(model, between)(x)
    with pytest.raises(RuntimeError, match="another forward pass"):
        model.backward()
    model.loss(x, rng=0)
    model.backward()  # loss right before backward works again


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="unknown likelihood 'poisson': expected one of bernoulli, gaussian"):
        tv.VAE(D, likelihood="poisson")
    with pytest.raises(ValueError, match="unknown likelihood 'laplace'"):
        tv.Autoencoder(D, likelihood="laplace")
    with pytest.raises(ValueError, match="unknown noise 'salt': expected one of gaussian, masking"):
        tv.DenoisingAutoencoder(D, noise="salt")
    with pytest.raises(ValueError, match="unknown activation 'gelu': expected one of relu, leaky_relu"):
        tv.VAE(D, (5,), 2, activation="gelu")


def test_bad_sizes_and_settings():
    for kwargs, message in [({"hidden": (5, 0)}, "hidden must be an int >= 1, got 0"),
                            ({"latent_dim": 2.5}, "latent_dim must be an int >= 1, got 2.5"),
                            ({"beta": -1.0}, "beta must be >= 0, got -1.0")]:
        with pytest.raises(ValueError, match=message):
            tv.VAE(D, **{"hidden": (5,), "latent_dim": 2, **kwargs})
    with pytest.raises(ValueError, match=r"noise_level must be >= 0 \(and <= 1 for masking\), got 1.5"):
        tv.DenoisingAutoencoder(D, noise="masking", noise_level=1.5)
    assert tv.VAE(D, 5, 2).hidden == [5]  # an int is one hidden layer
