"""The benchmark scripts run from a clone: --help works, and the reference benchmark trains one epoch on the
bundled data (no shared data folder, no PyTorch needed) and prints its table."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.backends("numpy")
ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("bench_*.py"))


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A copy of the repository's package and benchmarks in a folder with no ../shared beside it."""
    dest = tmp_path_factory.mktemp("clone") / "tinyvae-repo"
    shutil.copytree(ROOT / "tinyvae", dest / "tinyvae", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "benchmarks", dest / "benchmarks", ignore=shutil.ignore_patterns("__pycache__"))
    assert not (dest.parent / "shared").exists()
    return dest


def _run(clone, args, timeout=300):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYVAE_")}
    env.update(PYTHONPATH=str(clone), MPLBACKEND="Agg", OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_help_from_a_clone(script, clone):
    proc = _run(clone, [f"benchmarks/{script}", "--help"])
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


def test_reference_benchmark_defaults_to_the_bundled_data_in_a_clone(clone):
    proc = _run(clone, ["benchmarks/bench_vae_mnist.py", "--help"])
    assert "mnist-small" in proc.stdout


@pytest.mark.slow
def test_reference_benchmark_runs_one_epoch_on_the_bundled_data(clone):
    proc = _run(clone, ["benchmarks/bench_vae_mnist.py", "--epochs", "1", "--no-torch", "--iwae-k", "2",
                        "--iwae-n", "20"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "10000 training images" in proc.stdout


def test_docs_speak_of_the_project_and_state_the_training_prefix():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    for phrase in ("the issue asks", "lent to", "this session"):
        assert phrase not in text, f"docs/benchmarks.md says {phrase!r}: speak of the project and its users"
    assert "22,699-image PREFIX" in text
    readme = (ROOT / "README.md").read_text()
    assert "download.pytorch.org/whl/cpu" in readme
    assert "at every latent size" not in readme  # a claim the measurements do not support (PCA wins at k = 64)


def test_cs236_step_benchmark_prints_both_columns_and_a_projection(clone):
    proc = _run(clone, ["benchmarks/bench_cs236.py", "--steps", "2", "--repeats", "1", "--models", "gmvae,classifier",
                        "--no-torch"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()
            if line.split() and line.split()[0] in ("gmvae", "classifier")}
    assert set(rows) == {"gmvae", "classifier"}, proc.stdout
    for kind, steps in (("gmvae", 20000), ("classifier", 30000)):
        fast, plain, theirs, _, _, iterations, projected, _ = (float(v) for v in rows[kind][1:])
        assert fast > 0 and plain > 0 and theirs != theirs and iterations == steps  # no PyTorch column: nan
        assert abs(projected - fast * steps / 1e3) <= 1, rows[kind]  # the projection is ms/step times the steps
    assert "projected training time" in proc.stdout
    bad = _run(clone, ["benchmarks/bench_cs236.py", "--models", "vea"])
    assert bad.returncode == 2 and "unknown ['vea']" in bad.stderr


def test_the_pytorch_cs236_models_are_tinyvaes_networks(monkeypatch):
    """bench_cs236's PyTorch column times the same models: the same parameter counts, and with tinyvae's weights
    copied in and the noise at 0, the same M2 objective (the enumeration, both KL terms, the weighted CE)."""
    torch = pytest.importorskip("torch", reason="needs the optional package torch (pip install -e '.[bench]')")
    import tinyvae as tv
    from tinyvae import reproduce
    from tinyvae.layers import Dense

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import torch_cs236

    settings, arch = reproduce.FULL, dict(hidden=(300, 300), activation="elu", rng=0)
    ours = {"vae": tv.VAE(latent_dim=10, **arch), "gmvae": tv.GMVAE(latent_dim=10, components=500, **arch),
            "ssvae": tv.SSVAE(latent_dim=64, **arch)}
    for kind, model in ours.items():
        theirs, params = torch_cs236.build(kind, settings)
        assert torch_cs236.parameter_count(theirs) == sum(p.data.size for p in model.parameters()), kind
    _, params = torch_cs236.build("classifier", settings)
    assert sum(p.numel() for p in params) == sum(p.data.size for p in ours["ssvae"].classifier.parameters())

    small = tv.SSVAE(input_dim=12, hidden=(7, 5), latent_dim=3, num_classes=4, dtype="float64", rng=1)
    twin = torch_cs236.M2(input_dim=12, hidden=(7, 5), latent=3, classes=4).double()
    pairs = [(small.classifier, twin.classifier), (small.encoder, twin.encoder), (small.decoder, twin.decoder)]
    denses = [d for ours_seq, _ in pairs for d in ours_seq.layers if isinstance(d, Dense)]
    linears = [m for _, their_seq in pairs for m in their_seq if isinstance(m, torch.nn.Linear)]
    for dense, linear in zip(denses + [small.mu_head, small.logvar_head], linears + [twin.mu, twin.logvar]):
        with torch.no_grad():
            linear.weight.copy_(torch.tensor(tv.to_numpy(dense.W.data).T))
            linear.bias.copy_(torch.tensor(tv.to_numpy(dense.b.data)))
    gen = tv.Generator(2)
    x, xl = (tv.asarray(gen.random(shape, "float64") < 0.5, dtype="float64") for shape in ((5, 12), (4, 12)))
    yl = tv.asarray([0, 1, 2, 3])
    expected = float(small.loss(x, xl, yl, eps=tv.backend.zeros((5, 4, 3), "float64")).total)
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)  # the twin's noise, 0 like ours
    got = float(twin.loss(*(torch.tensor(tv.to_numpy(a)) for a in (x, xl, yl))).detach())
    assert got == pytest.approx(expected, rel=1e-12)


def test_cs236_step_benchmark_runs_tinyvaes_cupy_paths_under_the_stand_in(monkeypatch, capsys):
    """gpu_check.sh runs bench_cs236 with --backend cupy on a card; here the CuPy stand-in runs the same code, and
    PyTorch, with no CUDA device here, is left out in a line that says why."""
    import tinyvae as tv
    from tinyvae import backend
    from tinyvae.testing import fakecupy

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_cs236

    undo = fakecupy.install(backend)
    try:
        bench_cs236.main(["--backend", "cupy", "--data", "mnist-small", "--steps", "2", "--repeats", "1",
                          "--no-plain", "--models", "ssvae"])
    finally:
        undo()
        tv.use("numpy")
    printed = capsys.readouterr().out
    row = next(line.split() for line in printed.splitlines() if line.startswith("ssvae "))
    assert float(row[1]) > 0 and row[3] == "nan"  # tinyvae timed; no PyTorch column without CUDA
    assert "backend cupy" in printed and "no PyTorch column" in printed
