"""``tinyvae train --model vaegan``: its own loop through the TRAINERS registry, figures, honest units, exact resume,
and one-line errors for the options its loop does not have."""
import json

import numpy as np
import pytest

import tinyvae
from tinyvae import datasets, gan, optim
from tinyvae.cli import main

pytestmark = pytest.mark.backends("numpy")
TINY = ["train", "--model", "vaegan", "--hidden", "32", "--latent", "3", "--disc-hidden", "32,16", "--quiet"]


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_vaegan_writes_its_run_and_resumes_exactly(tmp_path, capsys):
    """One epoch with figures, then --resume for one more: the same weights, bit for bit, as two epochs of
    gan.fit with the CLI's defaults (seed 0, batch 128, gan.make_optimizers at --lr 1e-3)."""
    out = tmp_path / "run"
    code, stdout, err = run_cli([*TINY, "--epochs", "1", "--gamma", "0.5", "--out", out], capsys)
    assert code == 0, err
    assert "VAEGAN" in stdout and "not on this ELBO" in stdout
    assert {"samples.png", "reconstructions.png", "curves.png"} <= {p.name for p in out.glob("*.png")}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["model"] == "vaegan" and metrics["config"]["gamma"] == 0.5
    assert metrics["config"]["disc_hidden"] == [32, 16]
    assert set(metrics["history"]) >= {"train_gan", "train_disc", "train_llike", "train_pixel"}

    code, stdout, err = run_cli(["train", "--resume", out, "--epochs", "1", "--quiet", "--no-figures"], capsys)
    assert code == 0, err
    assert "after 1" in stdout
    ckpt = tinyvae.load(out / "model.npz")
    assert isinstance(ckpt.optimizer, optim.PerNetwork)
    assert set(ckpt.optimizer.optimizers) == {"encoder", "decoder", "discriminator"}
    assert ckpt.meta["history"]["epochs"] == [1, 2]

    code, stdout, err = run_cli(["score", out / "model.npz", "--n", "50"], capsys)  # a VAE-GAN has a prior
    assert code == 0, err
    assert "Frechet distance" in stdout and "digit shares" in stdout

    straight = gan.VAEGAN(784, [32], 3, disc_hidden=[32, 16], gamma=0.5, rng=0)
    history = gan.fit(straight, datasets.load("mnist-small").x_train, 2, seed=0, progress=False)
    assert ckpt.meta["history"]["train_disc"] == history.train_disc
    for a, b in zip(straight.parameters(), ckpt.model.parameters()):
        assert np.array_equal(tinyvae.to_numpy(a.data), tinyvae.to_numpy(b.data))


@pytest.mark.parametrize("flag", [["--clip", "5"], ["--kl-warmup", "2"]])
def test_options_its_loop_lacks_are_one_line_errors(flag, tmp_path, capsys):
    code, _, err = run_cli([*TINY, "--epochs", "1", *flag, "--out", tmp_path / "run"], capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert flag[0] in err and "vaegan" in err
    assert not (tmp_path / "run").exists()
