"""`tinyvae score`: its figures for a tiny VAE, and one-line errors on bad input."""
import json

import pytest

from tinyvae.cli import main

pytestmark = pytest.mark.backends("numpy")


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def vae_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae")
    assert main(["train", "--model", "vae", "--epochs", "1", "--hidden", "32", "--latent", "2", "--quiet",
                 "--out", str(out)]) == 0
    return out / "model.npz"


def test_score_prints_every_figure(vae_checkpoint, capsys, tmp_path):
    code, out, err = run_cli(["score", vae_checkpoint, "--n", 300, "--json", tmp_path / "s.json"], capsys)
    assert code == 0, err
    assert "not comparable to published FIDs" in out and "sharpness" in out and "digit shares" in out
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["frechet_distance"] > 0 and result["sharpness"] < result["sharpness_real"]
    assert sum(result["digit_shares"]) == pytest.approx(1.0)


def test_score_is_reproducible_with_a_seed(vae_checkpoint, capsys):
    outs = [run_cli(["score", vae_checkpoint, "--n", 100, "--seed", 3], capsys)[1] for _ in range(2)]
    assert outs[0] == outs[1]


@pytest.mark.parametrize("argv, message", [
    (["score", "missing.npz"], "does not exist"),
    (["score", "CKPT", "--n", "1"], "expected an integer >= 2"),
    (["score", "CKPT", "--dataset", "nope"], "unknown dataset"),
])
def test_score_errors_are_one_line(argv, message, vae_checkpoint, capsys):
    argv = [vae_checkpoint if a == "CKPT" else a for a in argv]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_score_refuses_a_model_without_a_prior(tmp_path, capsys):
    assert main(["train", "--model", "ae", "--epochs", "1", "--hidden", "16", "--latent", "2", "--quiet",
                 "--out", str(tmp_path)]) == 0
    code, _, err = run_cli(["score", tmp_path / "model.npz"], capsys)
    assert code == 2 and "no prior" in err and len(err.strip().splitlines()) == 1
