"""Tests for tinyvae.train: fit, History, evaluate, iwae_bound, active units (run under every backend)."""
import functools
import json
import math

import numpy as np
import pytest

import tinyvae as tv
from tinyvae import datasets
from tinyvae.models import LossParts
from tinyvae.iwae import iwae_bound
from tinyvae.train import History, active_units, evaluate, fit, latent_variances


@functools.cache
def _mnist():
    return datasets.load("mnist-small")


def data(n=300, split="train"):
    """The first n bundled MNIST images (host float32, in [0, 1])."""
    d = _mnist()
    return (d.x_train if split == "train" else d.x_test)[:n]


def vae(latent=4, dtype=None, beta=1.0, seed=0):
    return tv.VAE(784, hidden=(32,), latent_dim=latent, beta=beta, dtype=dtype, rng=seed)


def params(model):
    """Host copies of the parameters (to_numpy returns the array itself under NumPy: copy, or it changes)."""
    return [np.array(tv.to_numpy(p.data), copy=True) for p in model.parameters()]


def same_params(a, b):
    return all(np.array_equal(x, y) for x, y in zip(params(a), params(b), strict=True))


def figures(history):
    """The history without the timings, which differ from run to run."""
    d = history.to_dict()
    del d["epoch_time"]
    return d


@pytest.mark.parametrize("kind", ["vae", "ae", "dae"])
def test_fit_reduces_the_loss(kind):
    x = data(300)
    model = {"vae": vae(), "ae": tv.Autoencoder(784, hidden=(32,), latent_dim=4, rng=0),
             "dae": tv.DenoisingAutoencoder(784, hidden=(32,), latent_dim=4, noise_level=0.3, rng=0)}[kind]
    before = evaluate(model, x)["loss"]
    history = fit(model, x, 3, batch_size=50, lr=3e-3, progress=False)
    assert history.train_loss[-1] < 0.8 * history.train_loss[0]
    assert evaluate(model, x)["loss"] < 0.8 * before


def test_history_lengths_and_validation_only_with_x_val():
    x, xv = data(200), data(100, "test")
    h = fit(vae(), x, 3, batch_size=64, progress=False)
    assert h.epochs == [1, 2, 3]
    assert [len(h[k]) for k in History.KEYS] == [3, 3, 3, 0, 0, 0, 3]
    h = fit(vae(), x, 2, batch_size=64, x_val=xv, progress=False)
    assert [len(h[k]) for k in History.KEYS] == [2] * 7
    assert all(t > 0 for t in h.epoch_time)
    # The train figures add up: loss = recon + beta * kl, batch by batch and so on average.
    assert np.allclose(h.train_loss, np.add(h.train_recon, h.train_kl), rtol=1e-6)
    assert np.allclose(h.val_loss, np.add(h.val_recon, h.val_kl), rtol=1e-6)
    back = History.from_dict(json.loads(json.dumps(h.to_dict())))
    assert back.to_dict() == h.to_dict()
    with pytest.raises(ValueError, match="unknown keys"):
        History.from_dict({"epochs": [1], "loss": [1.0]})


def test_same_seed_same_run_different_seed_different_run():
    x = data(200)
    a, b, c = vae(), vae(), vae()
    ha = fit(a, x, 2, batch_size=64, seed=3, progress=False)
    hb = fit(b, tv.asarray(x), 2, batch_size=64, seed=3, progress=False)  # a device array: the same run
    hc = fit(c, x, 2, batch_size=64, seed=4, progress=False)
    assert figures(ha) == figures(hb)
    assert same_params(a, b)
    assert figures(ha) != figures(hc)
    assert not any(np.array_equal(p, q) for p, q in zip(params(a), params(c), strict=True))


def test_continuing_with_the_history_replays_the_uninterrupted_run():
    x = data(200)
    straight = vae()
    h_straight = fit(straight, x, 3, batch_size=64, progress=False)
    resumed = vae()
    opt = tv.Adam(resumed.parameters())
    h = fit(resumed, x, 1, batch_size=64, optimizer=opt, progress=False)
    h = fit(resumed, x, 2, batch_size=64, optimizer=opt, history=h, progress=False)  # start_epoch = len(h) = 1
    assert same_params(straight, resumed)
    assert figures(h) == figures(h_straight)


def test_kl_warmup_ramps_beta_and_restores_it():
    x = data(200)
    model = vae(beta=2.0)
    seen = []
    h = fit(model, x, 3, batch_size=64, kl_warmup=4, progress=False, callback=lambda e, hist: seen.append(model.beta))
    # train_loss = recon + beta_e * kl for every batch, so the epoch's beta can be read back from the history.
    betas = (np.array(h.train_loss) - np.array(h.train_recon)) / np.array(h.train_kl)
    assert np.allclose(betas, [0.5, 1.0, 1.5], rtol=1e-4)
    assert model.beta == 2.0 and seen == [2.0, 2.0, 2.0]

    original, calls = model.loss, []

    def interrupted(xb, rng=None):  # stopped in the middle of an epoch, while beta is lowered
        calls.append(model.beta)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(xb, rng=rng)

    model.loss = interrupted
    with pytest.raises(KeyboardInterrupt):
        fit(model, x, 3, batch_size=64, kl_warmup=10, progress=False)
    assert calls == [0.2, 0.2] and model.beta == 2.0


def test_gradient_clipping_bounds_each_step():
    x = data(128)
    model = vae()
    start = params(model)
    lr, clip, steps = 0.1, 1e-3, 4
    fit(model, x, 1, batch_size=32, optimizer=tv.SGD(model.parameters(), lr=lr), clip=clip, progress=False)
    moved = math.sqrt(sum(float(np.sum((p.astype(np.float64) - q) ** 2))
                          for p, q in zip(params(model), start, strict=True)))
    assert 0 < moved <= steps * lr * clip * 1.001  # each SGD step moves by lr * ||g|| <= lr * clip
    unclipped = vae()
    fit(unclipped, x, 1, batch_size=32, optimizer=tv.SGD(unclipped.parameters(), lr=lr), progress=False)
    assert not same_params(model, unclipped)


def test_nan_weight_stops_training_at_the_first_step():
    model = vae()
    model.decoder[0].W.data[0, 0] = math.nan
    with pytest.raises(FloatingPointError, match=r"epoch 1, step 1 of 4"):
        fit(model, data(128), 2, batch_size=32, progress=False)


def test_a_loss_that_turns_infinite_names_epoch_and_step_and_skips_the_update(monkeypatch):
    model = vae()
    original, calls, snapshot = model.loss, [], []

    def loss(x, rng=None):
        calls.append(1)
        if len(calls) == 7:  # epoch 2 (4 steps each), step 3
            snapshot.extend(params(model))
            return LossParts(math.inf, math.inf, 0.0)
        return original(x, rng=rng)

    monkeypatch.setattr(model, "loss", loss)
    with pytest.raises(FloatingPointError, match=r"inf at epoch 2, step 3 of 4"):
        fit(model, data(128), 3, batch_size=32, progress=False, check_every=1)  # CuPy's default defers checks
    assert all(np.array_equal(p, q) for p, q in zip(params(model), snapshot, strict=True))


def test_evaluate_matches_the_batch_losses_for_the_autoencoders():
    x = data(250)
    ae = tv.Autoencoder(784, hidden=(32,), latent_dim=4, rng=1)
    by_batch = sum(ae.loss(x[a:a + 100]).total * len(x[a:a + 100]) for a in range(0, 250, 100)) / 250
    assert evaluate(ae, x, batch_size=64)["loss"] == pytest.approx(by_batch, rel=1e-5)
    assert evaluate(ae, x)["kl"] == 0.0
    # The denoising autoencoder is evaluated on clean inputs (eval mode), then left in the mode it was in.
    dae = tv.DenoisingAutoencoder(784, hidden=(32,), latent_dim=4, noise_level=0.5, rng=1)
    h = fit(dae, x, 2, batch_size=50, lr=3e-3, x_val=x, progress=False)
    assert dae.training
    clean = dae.eval().loss(x).total
    assert h.val_loss[-1] == pytest.approx(clean, rel=1e-5)
    assert evaluate(dae, x)["loss"] == pytest.approx(clean, rel=1e-5)
    assert not dae.training  # it was in eval mode, and stays there
    modes, per_example = [], dae.loss_per_example

    def spy(xb, rng=None):
        modes.append(dae.training)
        return per_example(xb, rng=rng)

    dae.loss_per_example = spy
    dae.train()
    # The training loss is the loss on the corrupted input (whatever the size of the change a backend's draws make).
    noisy = dae.corrupt(x, rng=0)
    assert float(tv.get_xp().max(tv.get_xp().abs(noisy - tv.asarray(x)))) > 0.1
    on_noisy = dae.recon_per_example(dae.decoder.forward(dae.encoder.forward(noisy)), dae._input(x))
    training_loss = dae.loss(x, rng=0).total
    assert training_loss == pytest.approx(float(tv.get_xp().mean(on_noisy)), rel=1e-6) and training_loss != clean
    evaluate(dae, x, batch_size=100)
    assert dae.training and modes == [False] * 3  # in eval mode while it evaluates, back in training mode after


def test_evaluate_vae_is_seeded_and_consistent():
    x = data(200)
    model = vae(beta=0.5)
    a, b, c = evaluate(model, x, seed=1), evaluate(model, x, seed=1), evaluate(model, x, seed=2)
    assert a == b and a["loss"] != c["loss"]
    assert a["loss"] == pytest.approx(a["recon"] + 0.5 * a["kl"], rel=1e-6)


def _single_sample_nll(model, x, eps):
    """-log w for one z = mu + sigma * eps per example: recon + log q(z|x) - log p(z), written out here."""
    xp = tv.get_xp()
    mu, logvar = model.encode(x)
    z = mu + xp.exp(0.5 * logvar) * eps
    recon = model.loss_per_example(x, eps=eps)["recon"]
    log_q = -0.5 * xp.sum(eps * eps + logvar + math.log(2 * math.pi), axis=1)
    log_p = -0.5 * xp.sum(z * z + math.log(2 * math.pi), axis=1)
    return tv.to_numpy(recon + log_q - log_p)


def test_iwae_with_one_sample_is_the_elbo_estimate_with_the_same_eps():
    x = tv.asarray(data(40), dtype="float64")
    model = vae(latent=5, dtype="float64")
    eps = tv.Generator(9).standard_normal((40, 1, 5), "float64")
    reference = _single_sample_nll(model, x, tv.get_xp().reshape(eps, (40, 5)))
    assert iwae_bound(model, x, k=1, eps=eps) == pytest.approx(float(np.mean(reference)), rel=1e-12)


def test_iwae_one_sample_estimates_the_negative_elbo():
    # Averaged over many draws, -log w (sampled KL) and the analytic-KL loss estimate the same negative ELBO.
    model = vae(latent=5, dtype="float64")
    x = tv.asarray(np.tile(data(20), (100, 1)), dtype="float64")
    eps = tv.Generator(3).standard_normal((2000, 5), "float64")
    sampled = _single_sample_nll(model, x, eps)
    analytic = tv.to_numpy(model.loss_per_example(x, eps=eps)["loss"])
    diff = sampled - analytic
    assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(len(diff))
    # And iwae_bound's own draws agree with evaluate within the Monte Carlo error.
    se = sampled.std() / math.sqrt(len(sampled))
    assert iwae_bound(model, x, k=1) == pytest.approx(evaluate(model, x)["loss"], abs=6 * se)


def test_iwae_bound_tightens_with_k_and_stays_below_the_elbo():
    x = data(60, "test")
    model = vae(latent=4)
    fit(model, data(300), 2, batch_size=50, lr=3e-3, progress=False)
    b1, b10, b100 = (iwae_bound(model, x, k=k) for k in (1, 10, 100))
    assert b1 > b10 > b100
    assert b100 < evaluate(model, x)["loss"]
    assert 50 < b100 < 800  # nats per image: a bound of the right magnitude, not log-probabilities summed wrongly


def test_iwae_chunking_does_not_change_the_bound(backend):
    x = tv.asarray(data(30), dtype="float64")
    model = vae(latent=3, dtype="float64")
    whole = iwae_bound(model, x, k=20, seed=5)
    # The noise is one stream drawn in (example, sample) order: on the host generators the same numbers whatever
    # the chunks. CuPy's device generator fills each block in parallel, so there only the Monte Carlo figure agrees.
    rel = 1e-12 if backend != "cupy" else 2e-2
    for batch_size in (7, 20, 45, 601):  # part of an example's samples, one example, several, all at once
        assert iwae_bound(model, x, k=20, seed=5, batch_size=batch_size) == pytest.approx(whole, rel=rel)
    assert iwae_bound(model, x, k=20, seed=6) != pytest.approx(whole, rel=1e-9)


def test_iwae_rejects_non_vae_and_bad_eps():
    x = data(10)
    with pytest.raises(TypeError, match="needs a VAE"):
        iwae_bound(tv.Autoencoder(784, hidden=(8,), latent_dim=2, rng=0), x)
    with pytest.raises(ValueError, match=r"eps must have shape \(N, k, K\)"):
        iwae_bound(vae(), x, k=2, eps=tv.Generator(0).standard_normal((10, 3, 4)))


def test_active_units_counts_dimensions_that_vary_with_x():
    x = data(200)
    model = vae(latent=6)
    model.mu_head.W.data[:, :2] = 0.0  # mu_0 and mu_1 = b: constant over x, so inactive
    variances = tv.to_numpy(latent_variances(model, x, batch_size=64))
    reference = np.var(tv.to_numpy(model.encode(x)[0]).astype(np.float64), axis=0)
    assert np.allclose(variances, reference, rtol=1e-4, atol=1e-9)
    assert np.all(variances[:2] < 1e-12)  # zero up to roundoff
    threshold = float(np.median(variances[2:]))
    assert active_units(model, x, threshold=threshold) == int(np.sum(reference > threshold))
    assert active_units(model, x, threshold=1e-9) == 4


def test_progress_false_is_silent_and_true_shows_a_bar(capsys):
    fit(vae(), data(64), 1, batch_size=32, x_val=data(32), progress=False)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    fit(vae(), data(64), 1, batch_size=32, progress=True)
    assert "epoch 1/1" in capsys.readouterr().err


def test_bad_arguments_are_clear_errors():
    model, x = vae(), data(20)
    with pytest.raises(ValueError, match=r"x_train: expected a non-empty array of shape \(N, 784\).*\(20, 100\)"):
        fit(model, x[:, :100], 1, progress=False)
    with pytest.raises(TypeError, match="divide integer images by 255"):
        fit(model, (x * 255).astype(np.uint8), 1, progress=False)
    with pytest.raises(ValueError, match="optimizer does not hold this model's parameters"):
        fit(model, x, 1, optimizer=tv.Adam(vae().parameters()), progress=False)
    with pytest.raises(ValueError, match="epochs must be an int >= 0"):
        fit(model, x, -1, progress=False)
    with pytest.raises(ValueError, match="clip must be a positive number"):
        fit(model, x, 1, clip=0, progress=False)
    with pytest.raises(ValueError, match=r"x_val: expected .*got shape \(5, 3\)"):
        fit(model, x, 1, x_val=np.zeros((5, 3), np.float32), progress=False)


def test_fit_with_binarize_draws_new_binary_pixels_for_every_batch(monkeypatch):
    """Dynamic binarization: each batch the model sees is 0/1, drawn afresh (a pixel of 0.5 is on about half the
    time), and the same seed gives the same draws."""
    x = np.full((40, 6), 0.5, dtype=np.float32)
    seen = []

    def run(binarize):
        model = tv.VAE(6, (5,), 2, rng=0)
        loss = model.loss
        monkeypatch.setattr(model, "loss", lambda xb, **kw: (seen.append(tv.to_numpy(xb)), loss(xb, **kw))[1])
        fit(model, x, 2, batch_size=10, progress=False, binarize=binarize)
        return [p.copy() for p in (tv.to_numpy(q.data) for q in model.parameters())]

    first = run(True)
    batches, seen[:] = list(seen), []
    assert len(batches) == 8 and all(set(np.unique(b)) <= {0.0, 1.0} for b in batches)
    assert 0.35 < np.mean(batches) < 0.65 and not all((b == batches[0]).all() for b in batches[1:])
    again = run(True)
    assert all((a == b).all() for a, b in zip(first, again))
    seen[:] = []
    run(False)
    assert all((b == 0.5).all() for b in seen)
