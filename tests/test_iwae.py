"""The IWAE as a training objective: losses.iwae_loss (value, normalized-weight gradient), VAE(k=...) checked in
float64 against finite differences, its reduction to the VAE at k = 1, the bound it shares with iwae_bound, and
training, checkpoints and the command line with --train-k."""
import json

import numpy as np
import pytest

import tinyvae as tv
from tinyvae import checkpoint, losses
from tinyvae.cli import main
from tinyvae.gradcheck import check_model, numerical_gradient, rel_error
from tinyvae.iwae import importance_weighted_loss, iwae_bound
from tinyvae.train import fit


def _x(rng, n=3, d=8):
    return tv.asarray(rng.random((n, d)), dtype="float64")


def _grads(model):
    return {name: np.array(tv.to_numpy(p.grad), copy=True) for name, p in model.named_parameters()}


# ------------------------------------------------------------------------------------------------ losses.iwae_loss
def test_iwae_loss_is_minus_the_log_mean_weight_and_its_gradient_the_normalized_weights():
    rng = np.random.default_rng(0)
    log_w = tv.asarray(rng.normal(size=(4, 5)) * 3.0, dtype="float64")
    value, grad = losses.iwae_loss(log_w)
    w = np.exp(tv.to_numpy(log_w))
    per_example = -np.log(w.mean(axis=1))  # the definition, fine at these values
    assert value == pytest.approx(per_example.mean(), rel=1e-12)
    assert rel_error(losses.iwae_loss_per_example(log_w), tv.asarray(per_example)) < 1e-12
    # -N * gradient = the normalized importance weights: positive, each row summing to 1
    weights = -4 * tv.to_numpy(grad)
    assert np.allclose(weights, w / w.sum(axis=1, keepdims=True), rtol=1e-12) and np.all(weights > 0)
    numeric = numerical_gradient(lambda a: losses.iwae_loss(a)[0], log_w)
    assert rel_error(grad, numeric) < 1e-8


def test_iwae_loss_is_stable_at_huge_log_weights_and_is_minus_log_w_at_k_1():
    big = tv.asarray([[1e4, -1e4, 1e4], [-1e4, -1e4 + 1.0, -2e4]], dtype="float64")
    value, grad = losses.iwae_loss(big)
    expected = (np.log(3) - (1e4 + np.log(2)) + np.log(3) - (-1e4 + 1.0 + np.log1p(np.exp(-1.0)))) / 2
    assert value == pytest.approx(expected, rel=1e-12)
    assert np.all(np.isfinite(tv.to_numpy(grad)))
    assert np.allclose(-2 * tv.to_numpy(grad).sum(axis=1), 1.0)
    one = tv.asarray([[-3.0], [2.0]], dtype="float64")
    value, grad = losses.iwae_loss(one)
    assert value == pytest.approx(0.5, rel=1e-12) and np.allclose(tv.to_numpy(grad), -0.5)


def test_iwae_loss_rejects_a_bad_shape():
    with pytest.raises(ValueError, match=r"log_w must be a floating \(N, k\) array"):
        losses.iwae_loss(tv.asarray(np.zeros(3)))


# --------------------------------------------------------------------------------------------- the VAE with k > 1
@pytest.mark.backends("numpy")  # the strict backend runs the batch-of-one check below
@pytest.mark.parametrize("likelihood, hidden, beta", [("bernoulli", (6,), 1.0), ("gaussian", (5, 4), 0.5),
                                                      ("bernoulli", (), 2.0)])
def test_the_whole_importance_weighted_objective_is_gradient_checked_at_k_5(likelihood, hidden, beta):
    rng = np.random.default_rng(1)
    model = tv.VAE(8, hidden, 3, likelihood=likelihood, beta=beta, k=5, dtype="float64", rng=2)
    report = check_model(model, _x(rng), eps=tv.asarray(rng.normal(size=(3, 5, 3)), dtype="float64"))
    assert report.passed, str(report)


def test_a_batch_of_one_with_k_2_is_gradient_checked():
    rng = np.random.default_rng(3)
    model = tv.VAE(8, (6,), 2, k=2, dtype="float64", rng=4)
    report = check_model(model, _x(rng, n=1), eps=tv.asarray(rng.normal(size=(1, 2, 2)), dtype="float64"))
    assert report.passed, str(report)


def test_k_1_is_the_vae_exactly():
    rng = np.random.default_rng(5)
    x, eps = _x(rng), tv.asarray(rng.normal(size=(3, 3)), dtype="float64")
    a, b = tv.VAE(8, (6,), 3, dtype="float64", rng=6), tv.VAE(8, (6,), 3, k=1, dtype="float64", rng=6)
    for model in (a, b):
        model.zero_grad()
        model.loss(x, eps=eps)
        model.backward()
    assert a.loss(x, eps=eps) == b.loss(x, eps=eps)
    assert all(np.array_equal(g, h) for g, h in zip(_grads(a).values(), _grads(b).values()))


def test_the_weighted_objective_at_one_sample_reduces_to_the_vae():
    """With one code per example the normalized weight is 1: the objective is the one-sample ELBO with a SAMPLED KL
    term, log q(z|x) - log p(z), where the VAE has the exact KL. The decoder's gradients are the VAE's exactly.
    The sampled KL and its gradient at (mu, logvar) are linear in eps and eps^2, so on codes of ONE image drawn
    with balanced noise (antithetic pairs +-eps, each dimension scaled to mean square 1) their batch means equal the
    exact KL and its gradient: then the value and every gradient equal the VAE's to rounding."""
    rng = np.random.default_rng(7)
    model = tv.VAE(8, (6,), 2, dtype="float64", rng=8)
    half = rng.normal(size=(100, 2))
    eps = np.concatenate([half, -half])
    eps /= np.sqrt(np.mean(eps ** 2, axis=0))
    x = tv.asarray(np.repeat(rng.random((1, 8)), 200, axis=0), dtype="float64")
    model.zero_grad()
    vae = model.loss(x, eps=tv.asarray(eps))
    model.backward()
    exact = _grads(model)
    model.zero_grad()
    weighted = importance_weighted_loss(model, x, eps=tv.asarray(eps[:, None, :]))
    model.backward()
    assert weighted.recon == pytest.approx(vae.recon, rel=1e-10)
    assert weighted.total == pytest.approx(vae.total, rel=1e-10)
    for name, grad in _grads(model).items():
        assert rel_error(tv.asarray(grad), tv.asarray(exact[name])) < 1e-9, name
    # On unbalanced noise the two differ (the sampled KL is only right on average): the test above is not vacuous.
    assert importance_weighted_loss(model, x[:100, :], eps=tv.asarray(half[:, None, :])).total != pytest.approx(
        model.loss(x[:100, :], eps=tv.asarray(half)).total, rel=1e-6)


def test_the_training_bound_is_iwae_bound_on_the_same_eps_and_tighter_than_the_elbo():
    data = tv.datasets.load("mnist-small")
    x = data.x_test[:200]
    model = tv.VAE(784, (32,), 4, k=5, rng=0, dtype="float64")
    fit(model, data.x_train[:500], 1, progress=False)
    eps = np.random.default_rng(9).normal(size=(200, 5, 4))
    # one log-weight computation (iwae.log_weights) behind both the objective and the evaluation bound
    assert model.loss(x, eps=eps).total == pytest.approx(iwae_bound(model, x, k=5, eps=eps), rel=1e-10)
    elbo = tv.VAE(784, (32,), 4, rng=0, dtype="float64")
    elbo.load_state_dict(model.state_dict())
    assert model.loss(x, rng=1).total < elbo.loss(x, rng=1).total  # Jensen: the k = 5 bound is tighter


def test_iwae_training_history_checkpoint_and_bad_eps(tmp_path):
    x = tv.datasets.load("mnist-small").x_train[:256]
    model = tv.VAE(784, (16,), 3, k=3, rng=0)
    history = fit(model, x, 2, x_val=x[:64], progress=False)
    assert history.train_loss[1] < history.train_loss[0] and np.isfinite(history.val_loss[-1])
    assert model.config()["k"] == 3
    checkpoint.save(model, tmp_path / "m.npz")
    loaded = checkpoint.load(tmp_path / "m.npz").model
    assert loaded.k == 3 and loaded.loss(x[:8], rng=0) == model.loss(x[:8], rng=0)
    with pytest.raises(ValueError, match=r"eps for the importance-weighted loss must have shape \(N, k, K\)"):
        model.loss(x[:2], eps=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="k .importance samples per example. must be an int >= 1"):
        tv.VAE(784, (16,), 3, k=0)


@pytest.mark.backends("numpy")  # the convolution itself is checked under every backend in test_conv
def test_conv_vae_trains_on_the_weighted_objective_too():
    model = tv.ConvVAE(image_shape=(1, 8, 8), channels=(2,), latent_dim=2, k=3, rng=0, dtype="float64")
    assert model.config()["k"] == 3
    rng = np.random.default_rng(10)
    report = check_model(model, _x(rng, n=2, d=64), eps=tv.asarray(rng.normal(size=(2, 3, 2)), dtype="float64"))
    assert report.passed, str(report)


# -------------------------------------------------------------------------------------------------- command line
@pytest.mark.backends("numpy")
def test_train_k_trains_the_iwae_and_is_refused_for_an_autoencoder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--train-k", "3", "--epochs", "1", "--hidden", "16", "--latent", "3", "--quiet",
                 "--no-figures", "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["config"]["k"] == 3
    assert tv.load(out / "model.npz").model.k == 3
    capsys.readouterr()
    assert main(["train", "--model", "ae", "--train-k", "3", "--epochs", "1", "--quiet", "--out",
                 str(tmp_path / "ae")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--train-k 3: --model ae has no importance-weighted objective" in err[0]


@pytest.mark.backends("numpy")
def test_train_options_reach_a_model_that_passes_them_on():
    """ConvVAE takes the objective's options (beta, k) through **objective: --beta and --train-k reach it."""
    from tinyvae.cli import build_parser
    from tinyvae.cli.train import model_kwargs
    from tinyvae.kinds import KINDS

    data = tv.datasets.load("mnist-small")
    args = build_parser().parse_args(["train", "--model", "convvae", "--beta", "2", "--train-k", "3"])
    kwargs = model_kwargs(args, KINDS["convvae"], data)
    assert kwargs["beta"] == 2.0 and kwargs["k"] == 3 and kwargs["channels"] == [32, 64]
    model = tv.kinds.MODELS["convvae"](**{**kwargs, "channels": [2], "image_shape": (1, 28, 28)})
    assert (model.beta, model.k) == (2.0, 3)


@pytest.mark.backends("numpy")  # the rule itself, on the CPU; the GPU's budget is checked by patching the name
def test_the_bound_decodes_16_mb_chunks_on_the_cpu_and_256_mb_on_a_gpu(monkeypatch):
    from tinyvae import iwae

    assert iwae.iwae_chunk_rows(tv.VAE(784, (8,), 2, dtype="float32", rng=0)) == 2**24 // (784 * 4) == 5349
    assert iwae.iwae_chunk_rows(tv.VAE(784, (8,), 2, dtype="float64", rng=0)) == 2**24 // (784 * 8)
    conv = tv.ConvVAE(rng=0)
    assert iwae.iwae_chunk_rows(conv) == conv.decode_rows  # its intermediate images, not its output, set the size
    model = tv.VAE(784, (8,), 2, dtype="float32", rng=0)
    monkeypatch.setattr(iwae.B, "backend_name", lambda: "cupy")  # the rule only: no GPU is touched
    assert iwae.iwae_chunk_rows(model) == 2**28 // (784 * 4)


def test_the_iwae_objective_lives_in_its_own_file_and_the_elbo_backward_knows_nothing_of_it(monkeypatch):
    """VAE.elbo_backward (the graded function) has no IWAE branch: with it broken, k > 1 still trains (iwae.backward
    through VAE.backward's dispatch) and k = 1 fails; the IWAE's gradient is checked in float64 in the tests above."""
    import inspect

    from tinyvae import iwae

    source = inspect.getsource(tv.VAE.elbo_backward)
    assert "iwae" not in source and "Weighted" not in source and "k > 1" not in source

    def broken(self, saved):
        raise AssertionError("the ELBO backward ran")

    monkeypatch.setattr(tv.VAE, "elbo_backward", broken)
    rng = np.random.default_rng(3)
    x = _x(rng)
    model = tv.VAE(8, (6,), 2, k=3, dtype="float64", rng=0)
    model.loss(x, eps=rng.normal(size=(3, 3, 2)))
    model.backward()
    assert isinstance(model._loss_grads, iwae.Weighted)
    assert all(np.any(tv.to_numpy(p.grad) != 0) for p in model.parameters() if p is not model.encoder[0].W)
    with pytest.raises(AssertionError, match="the ELBO backward ran"):
        plain = tv.VAE(8, (6,), 2, dtype="float64", rng=0)
        plain.loss(x, eps=rng.normal(size=(3, 2)))
        plain.backward()
