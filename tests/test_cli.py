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
TEST_LOSS = "test loss (nats/image)"


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


def assert_usage_error(code, err, *fragments):
    """Exit code 2 and exactly one line on stderr that names the problem, never a traceback."""
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("tinyvae")
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


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
    assert ckpt.meta == {"dataset": "mnist-small", "epochs": 1, "seed": 0}
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
    args = build_parser().parse_args(["train"])
    assert (args.model, args.dataset) == ("vae", "mnist-small")
