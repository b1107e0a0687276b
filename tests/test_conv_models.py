"""Tests for ConvVAE and ConvAutoencoder: the whole objective gradient-checked in float64 (threshold 1e-7), the
objective and its gradients against PyTorch's for the same weights, exact resumption from a checkpoint, the command
line (train, sample, reconstruct, interpolate) and clear errors for impossible shapes."""
import json

import numpy as np
import pytest

import tinyvae as tv
from tinyvae import backend as B
from tinyvae import datasets
from tinyvae.checkpoint import load, save
from tinyvae.cli import main
from tinyvae.gradcheck import check_model
from tinyvae.kinds import MODELS, build
from tinyvae.train import History, fit

X = datasets.load("mnist-small").x_train[:96]


def small(kind, dtype=None, **kwargs):
    return MODELS[kind](image_shape=(1, 28, 28), channels=(3, 4), latent_dim=2, dtype=dtype, rng=1, **kwargs)


def assert_passes(report, count):
    assert len(report) == count and report.passed, "\n" + str(report)


@pytest.mark.parametrize("likelihood, beta", [("bernoulli", 1.0), ("gaussian", 0.5)])
def test_convvae_objective_passes_its_gradient_check(likelihood, beta):
    model = tv.ConvVAE((1, 9, 9), channels=(3, 2), latent_dim=3, likelihood=likelihood, beta=beta, kernel_size=3,
                       dtype="float64", rng=0)
    x = B.Generator(1).random((2, 81), "float64")
    eps = B.Generator(2).standard_normal((2, 3), "float64")
    assert_passes(check_model(model, x, eps=eps), 14)


def test_convae_objective_passes_its_gradient_check_on_a_non_square_two_channel_image():
    model = tv.ConvAutoencoder((2, 6, 5), channels=(3,), latent_dim=2, kernel_size=3, dtype="float64", rng=0)
    assert [m.output_padding for m in model.decoder if isinstance(m, tv.ConvTranspose2d)] == [(1, 0)]
    assert_passes(check_model(model, B.Generator(1).random((1, 60), "float64")), 8)


def test_default_convvae_has_the_issues_shapes():
    model = tv.ConvVAE(rng=0)
    shapes = [tuple(m.W.shape) for m in (*model.encoder, *model.decoder) if hasattr(m, "W")]
    assert shapes == [(32, 1, 4, 4), (64, 32, 4, 4), (20, 3136), (64, 32, 4, 4), (32, 1, 4, 4)]
    assert tuple(model.decode(B.zeros((3, 20))).shape) == (3, 784)
    assert tuple(model.encode(X[:5])[0].shape) == (5, 20)


@pytest.mark.backends("numpy")
def test_objective_and_gradients_match_torch_for_the_same_weights():
    torch = pytest.importorskip("torch")
    model = tv.ConvVAE((1, 12, 12), channels=(3, 4), latent_dim=3, dtype="float64", rng=0)
    x = B.Generator(1).random((4, 144), "float64")
    eps = B.Generator(2).standard_normal((4, 3), "float64")
    model.zero_grad()
    total = model.loss(x, eps=eps).total
    model.backward()

    def twin(seq):
        out = []
        for m in seq:
            if isinstance(m, tv.Dense):
                layer = torch.nn.Linear(m.in_features, m.out_features).double()
                weight = B.to_numpy(m.W.data).T
            elif isinstance(m, (tv.Conv2d, tv.ConvTranspose2d)):
                cls = torch.nn.Conv2d if isinstance(m, tv.Conv2d) else torch.nn.ConvTranspose2d
                extra = {} if cls is torch.nn.Conv2d else {"output_padding": m.output_padding}
                layer = cls(m.in_channels, m.out_channels, m.kh, m.stride, m.padding, **extra).double()
                weight = B.to_numpy(m.W.data)
            else:
                out.append({tv.ReLU: torch.nn.ReLU(), tv.Flatten: torch.nn.Flatten()}.get(type(m))
                           or torch.nn.Unflatten(1, m.shape))
                continue
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(weight.copy()))
                layer.bias.copy_(torch.from_numpy(B.to_numpy(m.b.data)))
            out.append(layer)
        return out

    parts = [twin(model.encoder), twin([model.mu_head]), twin([model.logvar_head]), twin(model.decoder)]
    enc, mu_head, logvar_head, dec = (torch.nn.Sequential(*p) for p in parts)
    tx, teps = torch.from_numpy(B.to_numpy(x)), torch.from_numpy(B.to_numpy(eps))
    h = enc(tx)
    mu, logvar = mu_head(h), logvar_head(h)
    logits = dec(mu + torch.exp(0.5 * logvar) * teps)
    recon = torch.nn.functional.binary_cross_entropy_with_logits(logits, tx, reduction="sum") / 4
    kl = 0.5 * torch.sum(mu * mu + logvar.exp() - 1 - logvar) / 4
    (recon + kl).backward()
    assert total == pytest.approx(float((recon + kl).detach()), rel=1e-12)
    theirs = [p.grad.numpy() for seq in (enc, dec) for p in seq.parameters()]
    mine = [B.to_numpy(p.grad) for seq in (model.encoder, model.decoder) for p in seq.parameters()]
    for a, b in zip(mine, theirs):
        np.testing.assert_allclose(a, b.T if a.ndim == 2 else b, rtol=1e-9, atol=1e-12)


def test_resuming_from_a_checkpoint_replays_the_uninterrupted_run_exactly(tmp_path):
    straight = small("convvae", beta=0.7)
    h_straight = fit(straight, X, 2, batch_size=32, seed=7, x_val=X[:20], progress=False)
    first = small("convvae", beta=0.7)
    opt = tv.Adam(first.parameters(), lr=1e-3)
    h = fit(first, X, 1, batch_size=32, seed=7, optimizer=opt, x_val=X[:20], progress=False)
    save(first, tmp_path / "run.npz", opt, epoch=1, history=h.to_dict())
    ckpt = load(tmp_path / "run.npz")
    assert isinstance(ckpt.model, tv.ConvVAE) and ckpt.model.channels == [3, 4]
    h = History.from_dict(ckpt.meta["history"])
    fit(ckpt.model, X, 1, batch_size=32, seed=7, optimizer=ckpt.optimizer, x_val=X[:20], progress=False,
        start_epoch=1, history=h)
    for (name, a), (_, b) in zip(straight.named_parameters(), ckpt.model.named_parameters()):
        assert np.array_equal(B.to_numpy(a.data), B.to_numpy(b.data)), name
    assert h["val_loss"] == h_straight["val_loss"]


@pytest.mark.parametrize("kind", ["convvae", "convae"])
def test_config_rebuilds_the_same_architecture(kind):
    model = small(kind)
    twin = build(json.loads(json.dumps(model.config())))
    assert type(twin) is type(model) and repr(twin) == repr(model)
    assert [p.shape for p in twin.parameters()] == [p.shape for p in model.parameters()]


@pytest.mark.backends("numpy")
def test_cli_trains_a_convvae_and_every_figure_command_works(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "convvae", "--channels", "4,8", "--epochs", "1", "--latent", "2", "--quiet",
            "--out", str(out)]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "training ConvVAE 784-4-8-2 on mnist-small" in stdout and "test IWAE NLL bound" in stdout
    assert {p.name for p in out.glob("*.png")} == {"curves.png", "reconstructions.png", "latent_space.png",
                                                   "interpolation.png", "samples.png", "manifold.png"}
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert config["model"] == "convvae" and config["channels"] == [4, 8] and config["image_shape"] == [1, 28, 28]
    for command in ("sample", "reconstruct", "interpolate"):
        png = tmp_path / f"{command}.png"
        assert main([command, str(out / "model.npz"), "--out", str(png)]) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.backends("numpy")
def test_cli_trains_a_conv_autoencoder(tmp_path, capsys):
    assert main(["train", "--model", "convae", "--channels", "4", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "ae")]) == 0
    assert tv.load(tmp_path / "ae" / "model.npz").model.kind == "convae"
    assert main(["sample", str(tmp_path / "ae" / "model.npz"), "--out", str(tmp_path / "s.png")]) == 2
    assert "has no prior to sample from" in capsys.readouterr().err


def test_clear_errors_for_impossible_shapes():
    with pytest.raises(ValueError, match=r"image_shape \(1, 3, 3\) is too small for 3 stride-2 convolutions"):
        tv.ConvVAE((1, 3, 3), channels=(2, 2, 2))
    with pytest.raises(ValueError, match=r"image_shape must be \(channels, height, width\)"):
        tv.ConvVAE((28, 28))
    with pytest.raises(ValueError, match="channels must name at least one convolution"):
        tv.ConvAutoencoder(channels=())
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 784\); got shape \(2, 100\)"):
        small("convvae").loss(np.zeros((2, 100), np.float32))
