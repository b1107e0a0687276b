"""Tests for tinyvae.gan: float64 gradient checks of every VAE-GAN loss (the discriminator's, the generator's through
the discriminator, the feature-matching term, each network's whole objective), the training loop, exact resume."""
import math

import numpy as np
import pytest

import tinyvae as tv
from tinyvae import backend as B
from tinyvae import checkpoint, datasets, gan, kinds, models
from tinyvae.activations import LeakyReLU, ReLU
from tinyvae.gradcheck import check_gradients, numerical_gradient, rel_error

TOL = 1e-6
X = datasets.load("mnist-small").x_train[:96]


def normal(rng, *shape):
    return rng.standard_normal(shape, "float64")


def small(dtype="float64", **kw):
    return gan.VAEGAN(12, (7,), 3, disc_hidden=(6, 5), dtype=dtype, rng=1, **kw)


def kink_margin(model):
    """The smallest |pre-activation| of every ReLU and LeakyReLU after the last forward (the checks perturb the
    weights by h = 1e-5, so a margin far above that means no unit crosses its kink during a check)."""
    xp = B.get_xp()
    ins = [layer._cache for seq in (model.decoder, model.encoder, model.discriminator.body) for layer in seq
           if isinstance(layer, LeakyReLU)]
    outs = []
    for seq in (model.decoder, model.encoder):  # a ReLU keeps its output: a pre-activation of exactly 0 shows as 0
        for a, b in zip(list(seq)[:-1], list(seq)[1:]):
            if isinstance(b, ReLU):
                outs.append(a.forward(a._cache))
    return min(float(xp.min(xp.abs(v))) for v in ins + outs)


def test_discriminator_loss_gradients_wrt_logits():
    rng = B.Generator(0)
    real, fake = normal(rng, 5, 1) * 3.0, normal(rng, 7, 1) * 3.0
    value, dreal, dfake = gan.discriminator_loss(real, fake)
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    expected = -np.mean(np.log(sig(B.to_numpy(real)))) - np.mean(np.log(1.0 - sig(B.to_numpy(fake))))
    assert abs(value - expected) < 1e-12
    report = check_gradients(lambda: gan.discriminator_loss(real, fake)[0], {"real": real, "fake": fake},
                             {"real": dreal, "fake": dfake})
    assert report.passed and max(c.error for c in report) < TOL, str(report)


def test_generator_loss_is_non_saturating_and_checked():
    rng = B.Generator(1)
    fake = normal(rng, 6, 1) * 3.0
    value, dfake = gan.generator_loss(fake)
    assert rel_error(dfake, numerical_gradient(lambda f: gan.generator_loss(f)[0], fake)) < TOL
    # where D rejects the fakes (logit -10), the gradient stays strong: -(1 - s(-10)) / N, not s(-10) / N
    _, d = gan.generator_loss(B.asarray([[-10.0]], dtype="float64"))
    assert float(d[0, 0]) < -0.99


def test_discriminator_parameter_and_input_gradients():
    rng = B.Generator(2)
    disc = gan.Discriminator(9, (6, 5), dtype="float64", rng=rng)
    x = normal(rng, 4, 9)
    dlogits, dfeat = normal(rng, 4, 1), normal(rng, 4, 5)
    logits = disc.forward(x)
    assert tuple(logits.shape) == (4, 1) and tuple(disc.features.shape) == (4, 5)
    assert min(float(np.min(np.abs(B.to_numpy(layer._cache)))) for layer in disc.body
               if isinstance(layer, LeakyReLU)) > 1e-3
    disc.zero_grad()
    disc.backward(dlogits, dfeat)
    dx = disc.input_gradient(dlogits, dfeat)
    assert all(float(np.abs(B.to_numpy(p.grad)).max()) > 0 for p in disc.parameters())
    grads_before = [B.copy(p.grad) for p in disc.parameters()]
    disc.input_gradient(dlogits, dfeat)  # touches no parameter gradient
    assert all(np.array_equal(B.to_numpy(a), B.to_numpy(p.grad)) for a, p in zip(grads_before, disc.parameters()))

    def weighted():
        out = disc.forward(x)
        return float(np.sum(B.to_numpy(out * dlogits)) + np.sum(B.to_numpy(disc.features * dfeat)))

    inputs = {"x": x, **{n: p.data for n, p in disc.named_parameters()}}
    analytic = {"x": dx, **{n: B.copy(p.grad) for n, p in disc.named_parameters()}}
    report = check_gradients(weighted, inputs, analytic)
    assert report.passed and max(c.error for c in report) < TOL, str(report)


def _clear_of_kinks(model, rows=4, first_seed=3, tries=20):
    """(x, eps, z_prior) drawn on the host (NumPy, seeds 3, 4, ...) for which every unit of ``model`` lies well clear
    of its kink: the weights come from the backend's own stream (CuPy's differs from NumPy's), so a fixed draw
    can land near a kink on one backend; the first draw that holds is taken, on any stream."""
    for seed in range(first_seed, first_seed + tries):
        host = np.random.default_rng(seed)
        x = B.asarray(host.random((rows, 12)), dtype="float64")
        eps, z_prior = (B.asarray(host.standard_normal((rows, 3)), dtype="float64") for _ in range(2))
        model.loss(x, eps=eps, z_prior=z_prior)
        if kink_margin(model) > 1e-4:
            return x, eps, z_prior
    raise AssertionError(f"no draw of {tries} left every unit 1e-4 clear of its kink")


def _objective_check(model, x, eps, z_prior, network, objective):
    """Check d(objective)/d(each parameter of ``network``) from ``model.backward()``."""
    model.zero_grad()
    model.loss(x, eps=eps, z_prior=z_prior)
    model.backward()
    assert kink_margin(model) > 1e-4
    names = {id(p): n for n, p in model.named_parameters()}
    params = model.networks()[network]
    report = check_gradients(lambda: getattr(model.loss(x, eps=eps, z_prior=z_prior), objective),
                             {names[id(p)]: p.data for p in params}, {names[id(p)]: B.copy(p.grad) for p in params},
                             network + " ")
    assert report.passed and max(c.error for c in report) < TOL, str(report)


# The whole-objective checks run on NumPy (and CuPy where present); under strict, test_fit_runs_... runs the same
# loss and backward, and the strict run of these checks alone would double the file's time.
@pytest.mark.backends("numpy", "cupy")
@pytest.mark.parametrize("network,objective", [("encoder", "encoder"), ("decoder", "decoder"),
                                               ("discriminator", "discriminator")])
def test_each_networks_whole_objective(network, objective):
    model = small(beta=0.8, gamma=0.3, pixel_weight=0.7)
    _objective_check(model, *_clear_of_kinks(model), network, objective)


@pytest.mark.backends("numpy", "cupy")
@pytest.mark.parametrize("term", ["llike", "gan"])
def test_feature_matching_and_generator_terms_alone(term):
    """pixel_weight = 0 and beta = 0 leave the encoder with L_llike alone; gamma = 0 leaves the decoder with L_gen
    alone, the generator's gradient through the discriminator; gamma = 1 gives the decoder L_llike + L_gen."""
    if term == "llike":
        model = small(beta=0.0, pixel_weight=0.0, gamma=1.0)
        x, eps, z_prior = _clear_of_kinks(model, rows=3, first_seed=4)
        parts = model.loss(x, eps=eps, z_prior=z_prior)
        assert parts.encoder == parts.llike and parts.decoder == parts.llike + parts.gan
        for network in ("encoder", "decoder"):
            _objective_check(model, x, eps, z_prior, network, network)
    else:
        model = small(gamma=0.0)
        x, eps, z_prior = _clear_of_kinks(model, rows=3, first_seed=4)
        parts = model.loss(x, eps=eps, z_prior=z_prior)
        assert parts.decoder == parts.gan
        _objective_check(model, x, eps, z_prior, "decoder", "gan")


def test_feature_matching_value_and_gradient():
    rng = B.Generator(5)
    real, fake = normal(rng, 4, 6), normal(rng, 4, 6)
    value, dfake = gan.feature_matching(real, fake)
    assert abs(value - 0.5 * float(np.sum((B.to_numpy(fake) - B.to_numpy(real)) ** 2)) / 4) < 1e-12
    assert rel_error(dfake, numerical_gradient(lambda f: gan.feature_matching(real, f)[0], fake)) < TOL


def test_model_registry_config_and_vae_methods():
    model = kinds.MODELS["vaegan"](input_dim=784, hidden=(16,), latent_dim=4, rng=0)
    assert isinstance(model, tv.VAE) and model.kind == "vaegan"
    rebuilt = kinds.build(model.config())
    assert rebuilt.config() == model.config()
    assert tuple(model.sample(5, rng=0).shape) == (5, 784)
    assert tuple(model.reconstruct(X[:3]).shape) == (3, 784)
    assert tuple(model.interpolate(X[0], X[1], steps=4).shape) == (4, 784)
    assert sum(len(v) for v in model.networks().values()) == len(model.parameters())
    with pytest.raises(ValueError, match="gamma"):
        gan.VAEGAN(gamma=-1.0)
    with pytest.raises(ValueError, match="disc_hidden"):
        gan.VAEGAN(disc_hidden=())


def test_fit_runs_keeps_losses_finite_and_trains_each_network():
    model = gan.VAEGAN(784, (32,), 4, disc_hidden=(32, 16), rng=0)
    before = [B.copy(p.data) for p in model.parameters()]
    history = gan.fit(model, X, 2, batch_size=32, seed=3, progress=False)
    assert history.epochs == [1, 2] and len(history.train_disc) == 2
    for key in history.KEYS:
        assert all(math.isfinite(v) for v in history[key]), key
    changed = [not np.array_equal(B.to_numpy(a), B.to_numpy(p.data)) for a, p in zip(before, model.parameters())]
    assert all(changed)
    assert "disc=" in repr(history)
    with pytest.raises(TypeError, match="VAEGAN"):
        gan.fit(tv.VAE(784, (8,), 2, rng=0), X, 1, progress=False)


def test_fit_stops_on_a_non_finite_loss_before_updating():
    model = gan.VAEGAN(784, (16,), 3, disc_hidden=(8, 4), rng=0)
    x = np.array(X[:40], copy=True)
    x[5, 3] = np.nan
    before = [B.copy(p.data) for p in model.parameters()]
    with pytest.raises(FloatingPointError, match="epoch 1, step 1"):
        gan.fit(model, x, 1, batch_size=64, progress=False)
    assert all(np.array_equal(B.to_numpy(a), B.to_numpy(p.data)) for a, p in zip(before, model.parameters()))


def test_resume_from_a_checkpoint_is_exact(tmp_path):
    """2 epochs straight == 1 epoch, save, load, 1 more epoch: bit for bit, weights, optimizers and history."""
    def new():
        model = gan.VAEGAN(784, (16,), 3, disc_hidden=(16, 8), gamma=0.5, rng=2)
        return model, gan.make_optimizers(model, lr=1e-3, disc_lr=5e-4)

    straight, opts = new()
    h_straight = gan.fit(straight, X, 2, batch_size=32, seed=5, optimizers=opts, progress=False)

    first, opts = new()
    h = gan.fit(first, X, 1, batch_size=32, seed=5, optimizers=opts, progress=False)
    checkpoint.save(first, tmp_path / "run.npz", opts, history=h.to_dict())
    ckpt = checkpoint.load(tmp_path / "run.npz")
    assert isinstance(ckpt.optimizer, tv.optim.PerNetwork)
    assert ckpt.optimizer["discriminator"].lr == 5e-4 and ckpt.optimizer["encoder"].t == 3
    h = gan.VAEGANHistory.from_dict(ckpt.meta["history"])
    gan.fit(ckpt.model, X, 1, batch_size=32, seed=5, optimizers=ckpt.optimizer, history=h, progress=False)

    for a, b in zip(straight.parameters(), ckpt.model.parameters()):
        assert np.array_equal(B.to_numpy(a.data), B.to_numpy(b.data))
    for key in h.KEYS[:-1]:
        assert h[key] == h_straight[key], key
    assert h.epochs == [1, 2]


def test_checkpoint_of_a_plain_optimizer_still_round_trips(tmp_path):
    model = tv.VAE(784, (8,), 2, rng=0)
    opt = tv.Adam(model.parameters())
    checkpoint.save(model, tmp_path / "m.npz", opt)
    assert type(checkpoint.load(tmp_path / "m.npz").optimizer) is tv.Adam


def test_per_network_state_dict_round_trips_and_names_the_networks():
    model = small()
    opts = gan.make_optimizers(model)
    x = B.Generator(0).random((4, 12), "float64")
    for _ in range(2):
        opts.zero_grad()
        model.loss(x, rng=1)
        model.backward()
        opts.step()
    fresh = gan.make_optimizers(model)
    fresh.load_state_dict(opts.state_dict())
    for name in opts.optimizers:
        assert fresh[name].t == opts[name].t == 2
        ours, theirs = fresh[name].state_dict()["buffers"], opts[name].state_dict()["buffers"]
        assert ours.keys() == theirs.keys() and ours
        for key in ours:
            assert np.array_equal(B.to_numpy(ours[key]), B.to_numpy(theirs[key])), (name, key)
    with pytest.raises(ValueError, match="discriminator"):
        fresh.load_state_dict({"type": "PerNetwork", "networks": {"encoder": opts["encoder"].state_dict()}})


def test_fit_refuses_optimizers_built_for_another_model():
    model, other = small(), small()
    x = B.Generator(0).random((4, 12), "float64")
    with pytest.raises(ValueError, match=r"gan.fit: the optimizer does not hold this model's parameters.*"
                                         r"gan.make_optimizers\(model\)"):
        gan.fit(model, x, 1, optimizers=gan.make_optimizers(other), progress=False)
