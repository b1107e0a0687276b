"""What misleads a new user on the command line (issue 19): runs that overwrite each other, --resume that ignores
changed options, options that do not apply to the model, a beta-weighted loss printed as a bound, reST in help,
and a library bug turned into a one-line message."""
import json
import os
import re

import pytest

import tinyvae
from tinyvae.cli import build_parser, main

pytestmark = pytest.mark.backends("numpy")  # the CLI picks its own backend
TINY = ["--epochs", "1", "--hidden", "16", "--latent", "2", "--quiet"]


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, *fragments):
    assert code == 2 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def table_value(out, name):
    line = next(line for line in out.splitlines() if line.startswith(name))
    return float(line.split()[-1])


# ------------------------------------------------------------------------------------------------ run folders
def test_each_train_writes_a_fresh_run_folder_and_latest_points_at_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli(["train", "--model", "vae", *TINY, "--no-figures"], capsys)[0] == 0
    assert run_cli(["train", "--model", "ae", *TINY, "--no-figures"], capsys)[0] == 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir() if p.name != "latest")
    assert len(runs) == 2 and runs[0].startswith("ae-") and runs[1].startswith("vae-")
    latest = tmp_path / "runs" / "latest"
    assert latest.is_symlink() and os.readlink(latest) == runs[0]
    assert tinyvae.load(latest / "model.npz").model.kind == "ae"
    assert tinyvae.load(tmp_path / "runs" / runs[1] / "model.npz").model.kind == "vae"  # the first run is intact
    assert not [p for p in (tmp_path / "runs").iterdir() if p.name.startswith(".")]  # no temporary link left


def test_out_holding_a_run_is_refused_and_force_leaves_no_old_figure(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["train", "--model", "ae", *TINY, "--out", out], capsys)[0] == 0
    assert (out / "reconstructions.png").exists()
    code, _, err = run_cli(["train", "--model", "vae", *TINY, "--no-figures", "--out", out], capsys)
    one_line_error(code, err, f"--out {out}", "--resume", "--force")
    assert tinyvae.load(out / "model.npz").model.kind == "ae"
    code, _, err = run_cli(["train", "--model", "vae", *TINY, "--no-figures", "--force", "--out", out], capsys)
    assert code == 0, err
    assert tinyvae.load(out / "model.npz").model.kind == "vae"
    assert not list(out.glob("*.png"))  # the autoencoder's figures are gone with it


# ------------------------------------------------------------------------------------------------------ resume
@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ae") / "run"
    assert main(["train", "--model", "ae", *TINY, "--lr", "0.01", "--batch-size", "64", "--no-figures",
                 "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("argv, fragments", [
    (["--lr", "0.001"], ["--lr 0.001", "--lr 0.01"]),
    (["--batch-size", "128"], ["--batch-size 128", "--batch-size 64"]),
    (["--model", "vae"], ["--model vae", "--model ae"]),
    (["--hidden", "32"], ["--hidden 32", "--hidden 16"]),
    (["--dataset", "mnist-small-binarized"], ["--dataset mnist-small-binarized", "--dataset mnist-small"]),
    (["--beta", "2"], ["--beta 2", "--model ae has no KL term"]),
])
def test_resume_refuses_a_changed_option_naming_both_values(argv, fragments, ae_run, capsys):
    before = (ae_run / "model.npz").read_bytes()
    code, _, err = run_cli(["train", "--resume", ae_run, "--epochs", "1", "--quiet", *argv], capsys)
    one_line_error(code, err, *fragments)
    assert (ae_run / "model.npz").read_bytes() == before


def test_resume_keeps_the_runs_learning_rate_and_accepts_the_same_values(tmp_path, ae_run, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(ae_run, run)
    code, out, err = run_cli(["train", "--resume", run, "--epochs", "1", "--quiet", "--no-figures", "--lr", "0.01",
                              "--hidden", "16"], capsys)
    assert code == 0, err
    ckpt = tinyvae.load(run / "model.npz")
    assert ckpt.meta["train"]["lr"] == 0.01 and ckpt.meta["train"]["batch_size"] == 64
    assert ckpt.optimizer.lr == 0.01 and ckpt.meta["history"]["epochs"] == [1, 2]


# ------------------------------------------------------------------------------------- options the model lacks
@pytest.mark.parametrize("model, option, fragments", [
    ("ae", ["--beta", "4"], ["--beta 4", "--model ae", "vae"]),
    ("vae", ["--gamma", "0.5"], ["--gamma 0.5", "--model vae", "vaegan"]),
    ("ae", ["--train-k", "3"], ["--train-k 3", "--model ae has no importance-weighted objective"]),
    ("vaegan", ["--likelihood", "gaussian"], ["--likelihood gaussian", "--model vaegan"]),
    ("vae", ["--channels", "8,16"], ["--channels 8,16", "--model vae", "convvae"]),
    ("convvae", ["--hidden", "64"], ["--hidden 64", "--model convvae"]),
    ("vae", ["--noise", "masking"], ["--noise masking", "--model vae", "dae"]),
    ("vae", ["--disc-hidden", "8"], ["--disc-hidden 8", "--model vae", "vaegan"]),
    ("vaegan", ["--kl-warmup", "2"], ["--kl-warmup", "--model vaegan", "own loop"]),
])
def test_an_option_the_model_does_not_take_is_refused_by_name(model, option, fragments, tmp_path, capsys):
    code, _, err = run_cli(["train", "--model", model, "--epochs", "1", "--quiet", *option, "--out",
                            tmp_path / "r"], capsys)
    one_line_error(code, err, *fragments)
    assert not (tmp_path / "r").exists()


def test_every_model_option_is_taken_by_some_kind_and_every_kind_option_has_a_flag():
    from tinyvae.kinds import KINDS, OPTIONS

    assert set(OPTIONS) == {k for kind in KINDS.values() for k in kind.options}


def test_a_new_kind_is_one_registry_entry_and_the_cli_offers_it(tmp_path, capsys):
    """A kind registered with an option of its own: tinyvae train takes it, refuses it elsewhere, and trains."""
    from tinyvae import kinds
    from tinyvae.models import VAE

    class WideVAE(VAE):  # a stand-in for a new model: a VAE whose hidden width is given as one number
        kind = "widevae"
        _config_keys = tuple(k for k in VAE._config_keys if k != "hidden") + ("width",)

        def __init__(self, width=8, **kwargs):
            self.width = width
            super().__init__(hidden=(width,), **kwargs)

    tables = (kinds.KINDS, kinds.MODELS, kinds.OPTIONS)
    saved = [dict(t) for t in tables]
    try:
        kinds.register(kinds.Kind(WideVAE, ("latent_dim", "width", "beta"),
                                  new_options=(kinds.Option("--width", "width", 8, "int", "hidden width", "width"),)))
        code, out, err = run_cli(["train", "--model", "widevae", "--width", "12", "--latent", "2", "--epochs", "1",
                                  "--quiet", "--no-figures", "--out", tmp_path / "w"], capsys)
        assert code == 0, err
        assert kinds.build(tinyvae.load(tmp_path / "w" / "model.npz").model.config()).width == 12
        code, _, err = run_cli(["train", "--model", "vae", "--width", "12", "--epochs", "1", "--quiet"], capsys)
        one_line_error(code, err, "--width 12", "--model vae has no width (it applies to --model widevae)")
    finally:
        for table, before in zip(tables, saved):
            table.clear()
            table.update(before)


# ------------------------------------------------------------------------------------------ -ELBO vs the loss
def test_cvae_prints_the_negative_elbo_as_the_bound_and_the_beta_loss_under_its_own_name(tmp_path, capsys):
    out = tmp_path / "cvae"
    code, stdout, err = run_cli(["train", "--model", "cvae", *TINY, "--no-figures", "--out", out], capsys)
    assert code == 0, err
    code, evaluated, err = run_cli(["evaluate", out / "model.npz", "--k", "5", "--n", "50"], capsys)
    assert code == 0, err
    for text in (stdout, evaluated):
        loss = table_value(text, "test loss = recon + 4 KL (the training objective)")
        nelbo = table_value(text, "test -ELBO = recon + KL (a bound on -log p(x | y))")
        recon, kl = table_value(text, "test recon"), table_value(text, "test KL")
        assert nelbo == pytest.approx(recon + kl, abs=0.02) and loss == pytest.approx(recon + 4 * kl, abs=0.02)
        assert kl > 0.1 and nelbo < loss
        assert len(re.findall(r"bound on -log p\(x", text)) == 1  # the bound is named once, on the -ELBO's row


def test_a_beta_1_vae_prints_a_loss_equal_to_its_negative_elbo(tmp_path, capsys):
    code, out, err = run_cli(["train", "--model", "vae", *TINY, "--no-figures", "--out", tmp_path / "v"], capsys)
    assert code == 0, err
    assert table_value(out, "test loss") == table_value(out, "test -ELBO = recon + KL (a bound on -log p(x))")
    metrics = json.loads((tmp_path / "v" / "metrics.json").read_text())["test"]
    assert "test -ELBO = recon + KL (a bound on -log p(x))" in metrics


# --------------------------------------------------------------------------------------------- help and errors
def _parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(getattr(action, "choices", None), dict):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_help_text_shows_no_rest_markup():
    for parser in _parsers(build_parser()):
        text = parser.format_help()
        assert "``" not in text and ":func:" not in text, f"{parser.prog} --help shows reST markup"


def test_a_library_bug_shows_its_traceback(monkeypatch, tmp_path):
    from tinyvae.cli import evaluate

    def broken(*args, **kwargs):
        raise KeyError("a bug")  # a bug, not a mistake of the user's: main must not make it one line

    monkeypatch.setattr(evaluate, "checkpoint_and_data", broken)
    with pytest.raises(KeyError):
        main(["evaluate", str(tmp_path / "m.npz")])


def test_tinyvae_errors_are_one_line_messages(capsys):
    from tinyvae.errors import CheckpointError, InputError, MissingFileError, TinyVAEError

    assert issubclass(InputError, ValueError) and issubclass(CheckpointError, TinyVAEError)
    assert issubclass(MissingFileError, FileNotFoundError) and issubclass(tinyvae.BackendUnavailable, TinyVAEError)
    code, _, err = run_cli(["evaluate", "no-such.npz"], capsys)
    one_line_error(code, err, "no-such.npz", "does not exist")


# ------------------------------------------------------------------------------------------------- --binarize
def test_binarize_dynamic_trains_on_binary_draws_and_is_recorded_and_kept_on_resume(tmp_path, capsys):
    out = tmp_path / "run"
    code, printed, err = run_cli(["train", "--model", "vae", *TINY, "--no-figures", "--binarize", "dynamic",
                                  "--out", out], capsys)
    assert code == 0, err
    assert "dynamically binarized" in printed and "BINARY pixels" in printed and "grey-level" not in printed
    ckpt = tinyvae.load(out / "model.npz")
    assert ckpt.meta["train"]["binarize"] == "dynamic" and ckpt.meta["dataset"].endswith("(dynamically binarized)")
    metrics = json.loads((out / "metrics.json").read_text())
    assert "BINARY pixels" in metrics["units"]
    code, _, err = run_cli(["train", "--resume", out, "--epochs", "1", "--quiet", "--binarize", "none"], capsys)
    one_line_error(code, err, "--binarize none", "--binarize dynamic")
    code, _, err = run_cli(["train", "--resume", out, "--epochs", "1", "--quiet", "--no-figures"], capsys)
    assert code == 0, err
    assert tinyvae.load(out / "model.npz").meta["train"]["binarize"] == "dynamic"


def test_binarize_defaults_to_none_and_to_dynamic_for_the_ssvae_and_the_vaegan_refuses_it(tmp_path, capsys):
    code, _, err = run_cli(["train", "--model", "ae", *TINY, "--no-figures", "--out", tmp_path / "ae"], capsys)
    assert code == 0, err
    assert tinyvae.load(tmp_path / "ae" / "model.npz").meta["train"]["binarize"] == "none"
    code, _, err = run_cli(["train", "--model", "ssvae", "--epochs", "1", "--hidden", "16", "--latent", "2",
                            "--quiet", "--no-figures", "--dataset", "mnist-small", "--out", tmp_path / "m2"], capsys)
    assert code == 0, err
    assert tinyvae.load(tmp_path / "m2" / "model.npz").meta["train"]["binarize"] == "dynamic"
    code, _, err = run_cli(["train", "--model", "vaegan", *TINY, "--binarize", "static"], capsys)
    one_line_error(code, err, "--binarize", "--model vaegan", "own loop")
