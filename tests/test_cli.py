"""The ``tinyvae`` command: every subcommand on tiny runs, its mistakes (one line on stderr, exit code 2, no
traceback), its two entry points (``python -m tinyvae`` and the console script), and the README's Quickstart.

The CLI picks its own backend (--backend), so these tests run once, under the numpy fixture.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tinyvae
from tinyvae.cli import build_parser, main

pytestmark = pytest.mark.backends("numpy")

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--epochs", "1", "--hidden", "32", "--latent", "2", "--quiet"]
COMMON_PNGS = {"curves.png", "reconstructions.png", "latent_space.png", "interpolation.png"}
EXTRA_PNGS = {"vae": {"samples.png"}, "ae": set(), "dae": {"denoising.png"}}
TEST_LOSS = "test loss"


def run_cli(argv, capsys):
    """main(argv) in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_png(path):
    assert path.is_file(), f"{path} was not written"
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC, f"{path} is not a PNG"


def table_value(out, name):
    """The value column of the printed table's row ``name``."""
    rows = [line for line in out.splitlines() if line.startswith(name + "  ")]
    assert len(rows) == 1, f"no single row {name!r} in:\n{out}"
    return rows[0][len(name):].strip()


def assert_usage_error(code, err, *fragments, lines=1):
    """Exit code 2 and ``lines`` lines on stderr (one, unless the reason itself has more) that name the problem,
    never a traceback."""
    assert code == 2
    assert "Traceback" not in err
    got = err.strip().splitlines()
    assert len(got) == lines, f"expected {lines} line(s) on stderr, got:\n{err}"
    assert got[0].startswith("tinyvae")
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"



@pytest.mark.parametrize("kind, extra, pngs", [
    ("gmvae", ["--components", "4"], COMMON_PNGS | {"samples.png", "manifold.png"}),  # a prior to draw, 2-D codes
    ("ssvae", [], {"curves.png", "samples.png"}),  # a decoder p(x|z, y): one row of samples per digit
])
def test_train_writes_the_figures_of_the_cs236_models(kind, extra, pngs, tmp_path, capsys):
    """The figures are chosen by what a model can do: M2 has no single-argument encoder to reconstruct with, but
    decodes each label (it once crashed here after training, with its checkpoint already written)."""
    out = tmp_path / kind
    code, _, err = run_cli(["train", "--model", kind, *TINY, *extra, "--dataset", "mnist-small", "--out", out], capsys)
    assert code == 0, err
    assert {p.name for p in out.glob("*.png")} == pngs
    for name in pngs:
        assert_png(out / name)


def test_a_binarized_run_is_evaluated_on_the_test_images_it_was_measured_on(tmp_path, capsys):
    """A run trained with --binarize names its data set "(dynamically binarized)"; the commands that read its
    checkpoint once took that display name for a data set to load, and failed."""
    out = tmp_path / "bin"
    code, _, err = run_cli(["train", "--model", "vae", *TINY, "--binarize", "dynamic", "--no-figures", "--out", out],
                           capsys)
    assert code == 0, err
    trained = json.loads((out / "metrics.json").read_text())["test"]["test loss"]
    code, stdout, err = run_cli(["evaluate", out / "model.npz", "--n", "20", "--k", "2"], capsys)
    assert code == 0, err
    assert "mnist-small (dynamically binarized)" in stdout
    assert float(table_value(stdout, "test loss")) == pytest.approx(trained, abs=0.006)  # printed to 2 decimals
    for argv in (["reconstruct", out / "model.npz", "--out", tmp_path / "r.png"],
                 ["interpolate", out / "model.npz", "--out", tmp_path / "i.png"],
                 ["score", out / "model.npz", "--n", "50"]):
        code, _, err = run_cli(argv, capsys)
        assert code == 0, err


def test_an_ssvae_checkpoint_reports_its_accuracy_and_draws_digits_but_is_not_reconstructed(tmp_path, capsys):
    out = tmp_path / "m2"
    code, _, err = run_cli(["train", "--model", "ssvae", *TINY, "--no-figures", "--out", out], capsys)
    assert code == 0, err
    assert 0 <= json.loads((out / "metrics.json").read_text())["test"]["test accuracy (%)"] <= 100
    code, stdout, err = run_cli(["evaluate", out / "model.npz", "--n", "20", "--k", "2"], capsys)
    assert code == 0, err
    assert 0 <= float(table_value(stdout, "test accuracy (%)")) <= 100
    code, stdout, err = run_cli(["score", out / "model.npz", "--n", "50"], capsys)
    assert code == 0 and "conditional accuracy" in stdout, err  # each digit drawn in turn and checked
    for command in ("reconstruct", "interpolate"):
        code, _, err = run_cli([command, out / "model.npz", "--out", tmp_path / "x.png"], capsys)
        assert_usage_error(code, err, "conditional model (SSVAE)", "sample --digit")

@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """The output folder of a 784-32-2 VAE trained for one epoch by the CLI (shared: training is the slow part)."""
    out = tmp_path_factory.mktemp("vae") / "run"
    argv = ["train", "--model", "vae", *TINY, "--out", str(out)]
    assert main(argv) == 0
    return out


# ---------------------------------------------------------------------------------------------------------- train
@pytest.mark.parametrize("model", ["vae", "ae", "dae"])
def test_train_writes_checkpoint_metrics_and_figures(model, tmp_path, capsys):
    # latent 3, not 2: the manifold figure belongs to 2-D VAEs only (its presence is tested on vae_run).
    out = tmp_path / "run"
    argv = ["train", "--model", model, "--epochs", "1", "--hidden", "32", "--latent", "3", "--quiet", "--out", out]
    code, stdout, _ = run_cli(argv, capsys)
    assert code == 0

    assert {p.name for p in out.glob("*.png")} == COMMON_PNGS | EXTRA_PNGS[model]
    for png in out.glob("*.png"):
        assert_png(png)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["command"] == "tinyvae " + " ".join(map(str, argv))
    assert metrics["dataset"] == "mnist-small"
    assert metrics["config"]["model"] == model
    assert metrics["config"]["hidden"] == [32] and metrics["config"]["latent_dim"] == 3
    assert metrics["history"]["epochs"] == [1]
    assert len(metrics["history"]["train_loss"]) == len(metrics["history"]["val_loss"]) == 1
    test = metrics["test"]
    assert test[TEST_LOSS] > 0
    assert ("test KL" in test) == (model == "vae")
    # The printed table reports the same test loss as metrics.json.
    assert table_value(stdout, TEST_LOSS) == f"{test[TEST_LOSS]:.2f}"
    assert "on mnist-small (10000 images) for 1 epoch," in stdout

    ckpt = tinyvae.load(out / "model.npz")
    assert ckpt.model.kind == model


def test_train_latent_2_checkpoint_reloads_the_trained_model(vae_run):
    out = vae_run
    assert {p.name for p in out.glob("*.png")} == COMMON_PNGS | {"samples.png", "manifold.png"}
    assert_png(out / "manifold.png")

    ckpt = tinyvae.load(out / "model.npz")
    assert isinstance(ckpt.model, tinyvae.VAE)
    assert (ckpt.model.input_dim, ckpt.model.hidden, ckpt.model.latent_dim) == (784, [32], 2)
    assert {k: ckpt.meta[k] for k in ("dataset", "epochs", "seed")} == {"dataset": "mnist-small", "epochs": 1,
                                                                        "seed": 0}
    assert len(ckpt.meta["history"]["epochs"]) == 1 and ckpt.meta["train"]["batch_size"] == 128  # for --resume
    assert isinstance(ckpt.optimizer, tinyvae.Adam)
    # The reloaded weights give exactly the test loss the run reported (evaluate draws its noise from a fixed seed).
    data = tinyvae.datasets.load("mnist-small")
    saved = json.loads((out / "metrics.json").read_text())["test"][TEST_LOSS]
    assert tinyvae.evaluate(ckpt.model, data.x_test)["loss"] == pytest.approx(saved, rel=1e-6)


@pytest.mark.needs("array_api_strict")
def test_train_under_the_strict_backend(tmp_path, capsys):
    out = tmp_path / "strict"
    code, stdout, _ = run_cli(["train", "--model", "vae", "--backend", "strict", "--epochs", "1", "--hidden", "16",
                               "--latent", "2", "--quiet", "--out", out], capsys)
    assert code == 0
    assert "backend strict" in stdout
    test_loss = json.loads((out / "metrics.json").read_text())["test"][TEST_LOSS]
    assert table_value(stdout, TEST_LOSS) == f"{test_loss:.2f}"
    assert_png(out / "samples.png")
    assert tinyvae.load(out / "model.npz").model.latent_dim == 2


# ---------------------------------------------------------------------------------- sample, reconstruct, interpolate
@pytest.mark.parametrize("command, extra", [("sample", ["--n", "16"]), ("reconstruct", ["--n", "5"]),
                                            ("interpolate", ["--steps", "6", "--a", "3", "--b", "7"])])
def test_figure_commands_write_their_png(command, extra, vae_run, tmp_path, capsys):
    png = tmp_path / f"{command}.png"
    code, stdout, err = run_cli([command, vae_run / "model.npz", *extra, "--out", png], capsys)
    assert code == 0, err
    assert_png(png)
    assert stdout.strip().startswith("wrote ") and stdout.strip().endswith(str(png))


def test_sample_from_an_autoencoder_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "ae.npz"
    tinyvae.save(tinyvae.Autoencoder(784, (8,), 2, rng=0), path)
    code, _, err = run_cli(["sample", path, "--out", tmp_path / "s.png"], capsys)
    assert_usage_error(code, err, str(path), "an Autoencoder", "--model vae")
    assert not (tmp_path / "s.png").exists()


# ------------------------------------------------------------------------------------------ compare-pca, gradcheck
def test_compare_pca_prints_the_table_and_writes_the_figure(tmp_path, capsys):
    png = tmp_path / "pca.png"
    code, stdout, _ = run_cli(["compare-pca", "--latents", "2,4", "--epochs", "1", "--hidden", "32", "--quiet",
                               "--out", png], capsys)
    assert code == 0
    assert_png(png)
    rows = [line.split() for line in stdout.splitlines() if re.fullmatch(r"\s*\d+(\s+\d+\.\d\d){3}", line)]
    assert [r[0] for r in rows] == ["2", "4"]
    for _, pca, ae, ratio in rows:
        assert float(pca) > 0 and float(ae) > 0
        assert float(ratio) == pytest.approx(float(ae) / float(pca), abs=0.01)
    # More principal components never reconstruct worse (PCA is optimal for each k, nested in k).
    assert float(rows[1][1]) <= float(rows[0][1])
    # Whether the autoencoder beats PCA is NOT asserted: after one epoch with 32 hidden units it usually does not.


@pytest.mark.parametrize("backend_name", ["numpy", pytest.param("strict", marks=pytest.mark.needs("array_api_strict"))])
def test_gradcheck_passes_everywhere(backend_name, capsys):
    code, stdout, _ = run_cli(["gradcheck", "--backend", backend_name], capsys)
    assert code == 0
    assert f"backend {backend_name}" in stdout
    summary = re.search(r"(\d+) of (\d+) passed", stdout)
    assert summary and summary.group(1) == summary.group(2) and int(summary.group(2)) > 20
    results = [line.split()[-1] for line in stdout.splitlines() if line.rstrip().endswith(("pass", "FAIL", "fail"))]
    assert len(results) == int(summary.group(2)) and set(results) == {"pass"}


# ------------------------------------------------------------------------------------------------------ mistakes
def test_unknown_option(capsys):
    code, _, err = run_cli(["train", "--bogus"], capsys)
    assert_usage_error(code, err, "unrecognized arguments: --bogus")


def test_unknown_model(capsys):
    code, _, err = run_cli(["train", "--model", "gan"], capsys)
    assert_usage_error(code, err, "--model", "'gan'", "vae")


def test_unknown_dataset(tmp_path, capsys):
    code, _, err = run_cli(["train", "--dataset", "no-such-set", *TINY, "--out", tmp_path / "r"], capsys)
    assert_usage_error(code, err, "unknown dataset 'no-such-set'", "mnist-small")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", ["sample", "reconstruct", "interpolate"])
def test_missing_checkpoint(command, tmp_path, capsys):
    missing = tmp_path / "nowhere.npz"
    code, _, err = run_cli([command, missing, "--out", tmp_path / "x.png"], capsys)
    assert_usage_error(code, err, str(missing), "does not exist")


@pytest.mark.parametrize("content", [b"not a checkpoint at all\n", PNG_MAGIC + bytes(100)])
def test_corrupt_checkpoint(content, tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(content)
    code, _, err = run_cli(["sample", bad, "--out", tmp_path / "x.png"], capsys)
    assert_usage_error(code, err, str(bad), "corrupt")


def test_truncated_checkpoint(vae_run, tmp_path, capsys):
    bad = tmp_path / "truncated.npz"
    bad.write_bytes((vae_run / "model.npz").read_bytes()[:5000])
    code, _, err = run_cli(["reconstruct", bad, "--out", tmp_path / "x.png"], capsys)
    assert_usage_error(code, err, str(bad), "truncated")


BAD_OPTIONS = [
    (["train", "--hidden", "abc"], ["--hidden", "'abc'", "integers"]),
    (["train", "--hidden", "0"], ["--hidden", "positive"]),
    (["train", "--epochs", "0"], ["--epochs", "'0'"]),
    (["train", "--latent", "2.5"], ["--latent", "'2.5'"]),
    (["compare-pca", "--latents", "2,x"], ["--latents", "'2,x'"]),
    (["sample", "model.npz", "--n", "0"], ["--n", "'0'"]),
    (["reconstruct", "model.npz", "--n", "-1"], ["--n", "'-1'"]),
    (["interpolate", "model.npz", "--steps", "1"], ["--steps", "'1'"]),
    (["train", "--backend", "tpu"], ["--backend", "'tpu'", "numpy"]),
    (["sample"], ["checkpoint"]),
]


@pytest.mark.parametrize("argv, fragments", BAD_OPTIONS, ids=[" ".join(argv) for argv, _ in BAD_OPTIONS])
def test_bad_option_values(argv, fragments, capsys):
    code, _, err = run_cli(argv, capsys)
    assert_usage_error(code, err, *fragments)


def test_invalid_model_setting_leaves_no_output_folder(tmp_path, capsys):
    out = tmp_path / "r"
    code, _, err = run_cli(["train", "--beta", "-1", *TINY, "--out", out], capsys)
    assert_usage_error(code, err, "beta", "-1")
    assert not out.exists()


def test_interpolate_index_out_of_range(vae_run, tmp_path, capsys):
    code, _, err = run_cli(["interpolate", vae_run / "model.npz", "--b", "2000", "--out", tmp_path / "i.png"],
                           capsys)
    assert_usage_error(code, err, "index 2000", "2000 images")


def test_cupy_backend_without_cupy(tmp_path, capsys):
    try:
        import cupy  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("CuPy is importable: this tests the message for a machine without it")
    code, _, err = run_cli(["train", "--backend", "cupy", *TINY, "--out", tmp_path / "r"], capsys)
    assert_usage_error(code, err, "CuPy is not installed", "tinyvae[gpu]")


def test_out_that_is_a_file(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    code, _, err = run_cli(["train", *TINY, "--out", taken], capsys)
    assert_usage_error(code, err, "--out", str(taken), "not a folder")
    assert taken.read_text() == "keep me"


def test_figure_out_in_a_missing_folder(vae_run, tmp_path, capsys):
    target = tmp_path / "no" / "such" / "folder" / "s.png"
    code, _, err = run_cli(["sample", vae_run / "model.npz", "--out", target], capsys)
    assert_usage_error(code, err, str(target), "does not exist")


# --------------------------------------------------------------------------------------------------- entry points
def _subprocess(args, cwd):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("TINYVAE_DEBUG", None)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_python_dash_m_help(tmp_path):
    proc = _subprocess([sys.executable, "-m", "tinyvae", "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for command in ("train", "sample", "reconstruct", "interpolate", "compare-pca", "gradcheck"):
        assert command in proc.stdout


def test_python_dash_m_usage_error_exits_2(tmp_path):
    # In-process tests see main()'s return value; this proves a real process exits with it.
    proc = _subprocess([sys.executable, "-m", "tinyvae", "train", "--model", "gan"], tmp_path)
    assert_usage_error(proc.returncode, proc.stderr, "--model")
    assert proc.stdout == ""


def test_console_script_gradcheck(tmp_path):
    script = Path(sys.executable).parent / ("tinyvae.exe" if os.name == "nt" else "tinyvae")
    if not script.exists():
        pytest.skip(f"no console script {script}: the package is not installed in this environment")
    proc = _subprocess([str(script), "gradcheck"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = re.search(r"(\d+) of (\d+) passed", proc.stdout)
    assert summary and summary.group(1) == summary.group(2)


# --------------------------------------------------------------------------------------------------------- README
def _quickstart_commands():
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## Quickstart\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    assert section, "README.md has no '## Quickstart' section"
    blocks = re.findall(r"^```bash\n(.*?)^```", section.group(1), re.S | re.M)
    return [[line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            for block in blocks]


def test_readme_quickstart_is_two_commands_and_ci_runs_the_second():
    blocks = _quickstart_commands()
    assert len(blocks) == 2, f"the Quickstart should hold two ```bash blocks, found {len(blocks)}"
    assert all(len(lines) == 1 for lines in blocks), f"each block should be one command: {blocks}"
    train, test = blocks[0][0], blocks[1][0]
    assert train.endswith("tinyvae train")
    assert "pytest" in test
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci, f".ci/run does not run the README's test command verbatim: {test!r}"


def test_plain_tinyvae_train_is_the_readme_promise():
    # "Train a VAE on the bundled MNIST subset (works offline)": the defaults of `tinyvae train` must say so.
    from tinyvae.cli.train import TRAINING

    args = build_parser().parse_args(["train"])  # None: not given, so the default below applies (and --resume
    assert (args.model, args.dataset) == (None, None)  # can tell a given option from a default)
    assert (TRAINING["model"][1], TRAINING["dataset"][1]) == ("vae", "mnist-small")


# ------------------------------------------------------------------------------------------- issue 9: a new user
def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"tinyvae {tinyvae.__version__}"


def test_every_option_has_help_and_shows_its_default():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    for name in ("train", "evaluate", "sample", "reconstruct", "interpolate", "compare-pca", "gradcheck"):
        for action in subparsers[name]._actions:
            assert action.help, f"tinyvae {name} {action.option_strings or action.dest} has no help text"
    text = subparsers["train"].format_help()
    for shown in ("(default: vae)", "(default: 20)", "(default: 0.001)", "(default: 128)", "(default: 0)"):
        assert shown in " ".join(text.split()), f"{shown} missing from tinyvae train --help"


def test_seed_error_names_the_option(capsys):
    code, _, err = run_cli(["train", "--seed", "-1"], capsys)
    assert_usage_error(code, err, "--seed", "'-1'")


def test_failed_download_keeps_every_line_and_leaves_no_cache_folder(tmp_path, monkeypatch, capsys):
    from tinyvae.datasets import download

    monkeypatch.setenv("TINYVAE_DATA", str(tmp_path / "data"))
    monkeypatch.setitem(download.MIRRORS, "mnist", ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"])
    code, _, err = run_cli(["train", "--dataset", "mnist", *TINY, "--out", tmp_path / "r"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err and lines[0].startswith("tinyvae: error:")
    assert "every mirror failed" in lines[0]
    assert sum("http://127.0.0.1:9/" in line for line in lines[1:]) == 2, err  # each mirror and its reason
    assert "by hand" in err and "--dataset FOLDER" in err  # what a CLI user passes (root= is the Python API's)
    assert not (tmp_path / "data").exists() and not (tmp_path / "r").exists()


def test_huge_lr_stops_with_a_message_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "r"
    code, _, err = run_cli(["train", "--lr", "1e6", *TINY, "--out", out], capsys)
    assert code == 2 and "Traceback" not in err
    assert "loss became" in err and "--clip" in err
    assert "RuntimeWarning" not in err
    assert not out.exists()


@pytest.mark.parametrize("argv", [["train", "--help"], ["gradcheck"]])
def test_broken_pipe_ends_quietly(argv, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    env.pop("TINYVAE_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "tinyvae", *argv], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written, as with `tinyvae ... | head -0`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 141)  # argparse's help swallows the error itself; ours exits 141
    assert err == "", err


@pytest.mark.parametrize("env, expected, warning", [
    ({"TINYVAE_BACKEND": "foo"}, "numpy float32", "TINYVAE_BACKEND=foo ignored"),
    ({"TINYVAE_DTYPE": "float16"}, "numpy float32", "TINYVAE_DTYPE=float16 ignored"),
    ({"TINYVAE_DTYPE": "float64"}, "numpy float64", None),
])
def test_environment_variables_never_break_the_import(env, expected, warning, tmp_path):
    code = ("import tinyvae; from tinyvae.cli import build_parser; "
            "a = build_parser().parse_args(['train']); print(tinyvae.backend_name(), tinyvae.backend.dtype_name(None))")
    proc = _subprocess_env([sys.executable, "-c", code], tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected
    assert (warning in proc.stderr) if warning else "Warning" not in proc.stderr


def test_cupy_environment_without_a_gpu_warns_and_backend_overrides(tmp_path):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is importable: this tests a machine without it")
    except ImportError:
        pass
    proc = _subprocess_env([sys.executable, "-m", "tinyvae", "gradcheck", "--backend", "numpy"], tmp_path,
                           {"TINYVAE_BACKEND": "cupy"})
    assert proc.returncode == 0, proc.stderr
    assert "TINYVAE_BACKEND=cupy ignored" in proc.stderr and "Traceback" not in proc.stderr


def _subprocess_env(args, cwd, extra):
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT), **extra}
    for name in ("TINYVAE_DEBUG", "TINYVAE_BACKEND", "TINYVAE_DTYPE"):
        if name not in extra:
            env.pop(name, None)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_evaluate_prints_the_test_figures_with_their_units(vae_run, capsys):
    code, out, err = run_cli(["evaluate", vae_run / "model.npz", "--k", "5", "--n", "50"], capsys)
    assert code == 0, err
    saved = json.loads((vae_run / "metrics.json").read_text())["test"]
    assert float(table_value(out, TEST_LOSS)) == pytest.approx(saved[TEST_LOSS], abs=0.006)
    assert float(table_value(out, "test IWAE NLL bound (k=5, 50 images)")) > 0
    assert int(table_value(out, "active units")) == saved["active units"]
    assert "units: nats per image" in out and "Bernoulli" in out


def test_the_units_line_names_the_data_set_the_figures_were_measured_on(vae_run, capsys):
    code, out, err = run_cli(["evaluate", vae_run / "model.npz", "--k", "2", "--n", "20"], capsys)
    assert code == 0, err
    assert "grey-level pixels of mnist-small" in out and "--dataset mnist-small-binarized" in out
    code, out, err = run_cli(["evaluate", vae_run / "model.npz", "--k", "2", "--n", "20", "--dataset",
                              "mnist-small-binarized"], capsys)
    assert code == 0, err
    assert "pixels of mnist-small-binarized, thresholded at 0.5" in out and "grey-level" not in out


def test_gaussian_units_put_loss_and_iwae_bound_on_the_same_footing(tmp_path, capsys):
    import math

    code, out, err = run_cli(["train", "--likelihood", "gaussian", *TINY, "--no-figures", "--out", tmp_path / "g"],
                             capsys)
    assert code == 0, err
    loss, recon = float(table_value(out, TEST_LOSS)), float(table_value(out, "test recon"))
    squared, kl = float(table_value(out, "test squared error")), float(table_value(out, "test KL"))
    assert recon == pytest.approx(squared + 392 * math.log(math.pi), abs=0.02)
    assert loss == pytest.approx(recon + kl, abs=0.02)
    iwae = float(table_value(out, "test IWAE NLL bound (k=100, 1000 images)"))
    assert iwae <= loss + 1.0  # the tighter bound is below the -ELBO, not 12 times above it
    assert "D/2 log(pi)" in out
    assert not list((tmp_path / "g").glob("*.png"))  # --no-figures


def test_resume_continues_exactly(tmp_path, capsys):
    both = ["train", "--model", "ae", "--epochs", "2", "--hidden", "16", "--latent", "2", "--quiet", "--no-figures"]
    assert run_cli([*both, "--out", tmp_path / "straight"], capsys)[0] == 0
    once = [*both[:4], "1", *both[5:]]
    assert run_cli([*once, "--out", tmp_path / "split"], capsys)[0] == 0
    code, out, err = run_cli(["train", "--resume", tmp_path / "split", "--epochs", "1", "--quiet", "--no-figures"],
                             capsys)
    assert code == 0, err
    assert "after 1" in out
    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((tmp_path / "split" / "metrics.json").read_text())
    assert b["history"]["epochs"] == [1, 2]
    assert b["test"][TEST_LOSS] == pytest.approx(a["test"][TEST_LOSS], rel=1e-6)


def test_resume_from_a_folder_without_a_run(tmp_path, capsys):
    code, _, err = run_cli(["train", "--resume", tmp_path, "--quiet"], capsys)
    assert_usage_error(code, err, "--resume", "model.npz")


def test_interpolate_writes_the_figure_train_writes(vae_run, tmp_path, capsys):
    """One file name, one figure: train's interpolation.png is what interpolate draws by default, byte for byte."""
    code, _, err = run_cli(["interpolate", vae_run / "model.npz", "--out", tmp_path / "i.png"], capsys)
    assert code == 0, err
    assert (tmp_path / "i.png").read_bytes() == (vae_run / "interpolation.png").read_bytes()


@pytest.mark.parametrize("argv", [["reconstruct", "--n", "100"], ["interpolate", "--steps", "50"],
                                  ["sample", "--n", "400"]])
def test_figures_at_the_cap_grow_in_rows(argv, vae_run, tmp_path, capsys):
    """At the largest n each command allows, the PNG wraps into rows instead of a long thin strip."""
    code, _, err = run_cli([argv[0], vae_run / "model.npz", *argv[1:], "--out", tmp_path / "f.png"], capsys)
    assert code == 0, err
    width, height = _png_size(tmp_path / "f.png")
    assert width <= 800 and height >= 0.6 * width


@pytest.mark.parametrize("argv", [["sample", "m.npz", "--n", "100000"], ["reconstruct", "m.npz", "--n", "5000"],
                                  ["interpolate", "m.npz", "--steps", "1000"]])
def test_figures_too_large_to_draw_are_refused_with_the_cap(argv, capsys):
    code, _, err = run_cli(argv, capsys)
    assert_usage_error(code, err, argv[2], "at most")


def test_readme_lists_every_subcommand_and_the_figure_caps():
    from tinyvae.cli import SUBCOMMANDS

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text[text.index("## The command line"):text.index("## Data")]
    for name in SUBCOMMANDS:
        assert f"tinyvae {name} " in block, f"README's command-line section lacks tinyvae {name}"
    for cap in ("n <= 400", "n <= 100", "steps <= 50", "--resume RUN_DIR"):
        assert cap in block
