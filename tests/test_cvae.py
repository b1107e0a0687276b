"""The conditional VAE: its whole objective checked in float64, the labels it needs (and the errors without them),
sampling a chosen digit, checkpoints and exact resume, the per-digit figure and the command line."""
import json

import numpy as np
import pytest

import tinyvae as tv
from tinyvae import checkpoint, plots
from tinyvae.cli import main
from tinyvae.gradcheck import check_model
from tinyvae.iwae import iwae_bound
from tinyvae.kinds import MODELS
from tinyvae.models import ConditionalVAE
from tinyvae.train import fit


def _cvae(**kw):
    return ConditionalVAE(8, kw.pop("hidden", (6,)), 3, num_classes=4, dtype="float64", rng=1, **kw)


def _batch(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return tv.asarray(rng.random((n, 8)), dtype="float64"), tv.asarray(rng.integers(0, 4, size=n)), rng


# ------------------------------------------------------------------------------------------------ the objective
@pytest.mark.backends("numpy")  # the strict backend runs the batch-of-one and IWAE checks below
@pytest.mark.parametrize("kw", [dict(likelihood="bernoulli"), dict(likelihood="gaussian", beta=0.5),
                                dict(hidden=(), beta=2.0), dict(hidden=(5, 4), activation="tanh")],  # no kink
                         ids=str)
def test_the_whole_objective_is_gradient_checked(kw):
    x, y, rng = _batch()
    report = check_model(_cvae(**kw), x, y=y, eps=tv.asarray(rng.normal(size=(3, 3)), dtype="float64"))
    assert report.passed, str(report)


def test_a_batch_of_one_and_the_importance_weighted_objective_are_gradient_checked():
    x, y, rng = _batch(n=1, seed=1)
    report = check_model(_cvae(), x, y=y, eps=tv.asarray(rng.normal(size=(1, 3)), dtype="float64"))
    x, y, rng = _batch(n=3, seed=2)
    report += check_model(_cvae(k=3), x, y=y, eps=tv.asarray(rng.normal(size=(3, 3, 3)), dtype="float64"))
    assert report.passed, str(report)


def test_encoder_and_decoder_read_the_one_hot_label():
    model = _cvae()
    assert model.kind == "cvae" and MODELS["cvae"] is ConditionalVAE and model.needs_labels
    assert model.encoder[0].W.shape == (8 + 4, 6) and model.decoder[0].W.shape == (3 + 4, 6)
    x, y, rng = _batch(n=4)
    z = tv.asarray(rng.normal(size=(4, 3)), dtype="float64")
    a, b = model.decode(z, y), model.decode(z, (y + 1) % 4)
    assert not np.allclose(tv.to_numpy(a), tv.to_numpy(b))  # the same code, another label: another image
    assert model.encode(x, y)[0].shape == (4, 3) and model.reconstruct(x, y).shape == (4, 8)


def test_missing_or_bad_labels_are_clear_errors():
    model = _cvae()
    x, y, _ = _batch()
    with pytest.raises(ValueError, match="ConditionalVAE.loss: a conditional VAE needs the labels y"):
        model.loss(x)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        model.loss(x, y=tv.asarray([0, 1, 4]))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        model.loss(x, y=tv.asarray([0, 1]))
    with pytest.raises(ValueError, match="fit: y_train: ConditionalVAE needs labels"):
        fit(model, x, 1, progress=False)
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        ConditionalVAE(8, (6,), 3, num_classes=1)


# --------------------------------------------------------------------------------------------------- sampling
def test_sample_draws_the_digits_asked_for():
    model = _cvae()
    seven = model.sample(5, rng=0, digits=3)
    same = model.decode(tv.Generator(0).standard_normal((5, 3), "float64"), tv.asarray([3] * 5))
    assert np.allclose(tv.to_numpy(seven), tv.to_numpy(same))
    mixed = model.sample(4, rng=0, digits=tv.asarray([0, 1, 2, 3]))
    assert np.allclose(tv.to_numpy(model.sample(4, rng=0)), tv.to_numpy(mixed))  # default: 0, 1, 2, ... cycling
    for bad, match in ((4, r"digits: labels must lie in \[0, 4\)"), (-1, r"lie in \[0, 4\)"),
                       (tv.asarray([0, 1]), r"must have shape \(4,\)"), (1.5, "must be integers")):
        with pytest.raises((ValueError, TypeError), match=match):
            model.sample(4, rng=0, digits=bad)


def test_interpolate_keeps_the_digit_and_walks_the_style():
    model = _cvae()
    x, y, _ = _batch(n=2)
    path = model.interpolate(x[0, :], int(y[0]), x[1, :], int(y[1]), digit=2, steps=5)
    assert path.shape == (5, 8)
    assert np.allclose(tv.to_numpy(path[-1, :]),
                       tv.to_numpy(model.decode(model.encode(x[1:2, :], y[1:2])[0], tv.asarray([2])))[0])


# --------------------------------------------------------------------------------- training, checkpoints, figures
@pytest.mark.backends("numpy")
def test_checkpoint_round_trip_and_exact_resume(tmp_path):
    data = tv.datasets.load("mnist-small")
    x, y = data.x_train[:300], data.y_train[:300]
    model = ConditionalVAE(784, (16,), 2, rng=0)
    fit(model, x, 2, y_train=y, progress=False)
    half = ConditionalVAE(784, (16,), 2, rng=0)
    opt = tv.Adam(half.parameters())
    history = fit(half, x, 1, optimizer=opt, y_train=y, progress=False)
    checkpoint.save(half, tmp_path / "c.npz", opt, history=history.to_dict())
    ckpt = checkpoint.load(tmp_path / "c.npz")
    assert ckpt.model.config() == half.config() and ckpt.model.config()["num_classes"] == 10
    fit(ckpt.model, x, 1, optimizer=ckpt.optimizer, y_train=y, progress=False,
        history=tv.train.History.from_dict(ckpt.meta["history"]))
    for a, b in zip(model.parameters(), ckpt.model.parameters()):
        assert np.array_equal(tv.to_numpy(a.data), tv.to_numpy(b.data))
    bound = iwae_bound(model, data.x_test[:20], k=5, labels=data.y_test[:20])
    assert np.isfinite(bound) and bound > 0


@pytest.mark.backends("numpy")
def test_conditional_samples_has_one_labelled_row_per_digit(tmp_path):
    model = ConditionalVAE(784, (8,), 2, num_classes=10, rng=0)
    fig = plots.conditional_samples(model, per_digit=3, rng=0, path=tmp_path / "grid.png")
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels == [str(d) for d in range(10)]
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(TypeError, match="needs a conditional model"):
        plots.conditional_samples(tv.VAE(784, (8,), 2, rng=0))


# -------------------------------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cvae") / "run"
    assert main(["train", "--model", "cvae", "--epochs", "1", "--hidden", "16", "--latent", "2", "--quiet",
                 "--out", str(out)]) == 0
    return out


def _cli(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.backends("numpy")
def test_train_cvae_writes_the_per_digit_grid_and_labelled_figures(cvae_run):
    assert {p.name for p in cvae_run.glob("*.png")} == {"curves.png", "samples.png"}
    metrics = json.loads((cvae_run / "metrics.json").read_text())
    assert metrics["config"]["model"] == "cvae" and metrics["config"]["num_classes"] == 10
    assert any(name.startswith("test IWAE NLL bound given the label") for name in metrics["test"])
    assert tv.load(cvae_run / "model.npz").model.num_classes == 10


@pytest.mark.backends("numpy")
def test_sample_digit_and_its_errors(cvae_run, vae_ckpt, tmp_path, capsys):
    png = tmp_path / "seven.png"
    code, out, err = _cli(["sample", cvae_run / "model.npz", "--digit", "7", "--n", "8", "--out", png], capsys)
    assert code == 0 and "8 samples of the digit 7" in out and png.is_file()
    code, out, _ = _cli(["sample", cvae_run / "model.npz", "--n", "20", "--out", tmp_path / "all.png"], capsys)
    assert code == 0 and "2 samples of each of the 10 digits" in out
    for argv, fragment in (([cvae_run / "model.npz", "--digit", "10"], "--digit 10 is out of range"),
                           ([vae_ckpt, "--digit", "3"], "which is not conditional")):
        code, _, err = _cli(["sample", *argv, "--out", tmp_path / "x.png"], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err
    code, _, err = _cli(["reconstruct", cvae_run / "model.npz", "--out", tmp_path / "r.png"], capsys)
    assert code == 2 and "holds a conditional model" in err and len(err.strip().splitlines()) == 1


@pytest.mark.backends("numpy")
def test_resume_a_cvae_run(cvae_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "resumed"
    shutil.copytree(cvae_run, run)
    code, out, err = _cli(["train", "--resume", run, "--epochs", "1", "--quiet", "--no-figures"], capsys)
    assert code == 0, err
    assert tv.load(run / "model.npz").meta["epochs"] == 2


@pytest.fixture(scope="module")
def vae_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae") / "run"
    assert main(["train", "--epochs", "1", "--hidden", "8", "--latent", "2", "--quiet", "--no-figures",
                 "--out", str(out)]) == 0
    return out / "model.npz"
