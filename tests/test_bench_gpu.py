"""benchmarks/bench_gpu.py runs here: both halves on the CPU (--device cpu --smoke), and without CuPy or a CUDA
PyTorch it refuses in one line naming what is missing (exit 2). Its GPU figures need a GPU (benchmarks/gpu_check.sh).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.backends("numpy")
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"


def _run(args, cwd, blocked=()):
    """Run the script in a fresh Python where the modules in ``blocked`` cannot be imported."""
    code = ("import runpy, sys\n"
            f"for name in {list(blocked)!r}: sys.modules[name] = None  # import name raises ImportError\n"
            f"sys.path.insert(0, {str(SCRIPT.parent)!r})\n"
            f"sys.argv = [{str(SCRIPT)!r}] + {list(args)!r}\n"
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYVAE_")}
    env.update(PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("device, blocked, named", [
    ("cuda", ("cupy", "torch"), ("CuPy (pip install -e '.[gpu]'", "PyTorch (pip install -e '.[bench]', a CUDA")),
    ("cuda", ("cupy",), ("CuPy (pip install -e '.[gpu]'",)),
    ("cpu", ("torch",), ("PyTorch (pip install -e '.[bench]')",)),
])
def test_refuses_in_one_line_naming_what_is_missing(device, blocked, named, tmp_path):
    proc = _run(["--device", device, "--smoke"], tmp_path, blocked)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bench_gpu.py: --device {device} needs "), proc.stderr
    for words in named:
        assert words in lines[0]
    assert "CuPy" not in lines[0] if device == "cpu" else "--device cpu runs both halves on the CPU" in lines[0]
    assert proc.stdout == ""


def test_cpu_smoke_run_prints_the_table_and_writes_the_json(tmp_path):
    pytest.importorskip("torch", reason="needs the optional package torch (pip install -e '.[bench]')")
    proc = _run(["--device", "cpu", "--smoke", "--data", "mnist-small", "--json", "out.json"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "on the CPU (--device cpu): no GPU" in out and "PyTorch 2." in out
    for row in ("epoch, batch 128 (s)", "epoch, batch 1024 (s)", "forward + backward, batch 128 (ms)",
                "forward + backward, batch 1024 (ms)", "Adam step (ms)", "Adam as the plain formula (ms)",
                "IWAE k=20, 40 test images (s)"):
        assert row in out, f"no row {row!r} in:\n{out}"
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["device"] == "cpu" and result["n_train"] == 512 and result["smoke"] is True
    figures = result["figures"]
    for batch in (128, 1024):
        assert set(figures[f"epoch {batch}"]) == {"tinyvae", "foreach", "fused"}
        assert set(figures[f"fwd+bwd {batch}"]) == {"tinyvae", "foreach"}
    assert set(figures["adam"]) == {"tinyvae", "foreach", "fused"}
    assert all(v > 0 for fig in figures.values() for v in fig.values())
    # The two halves compute the same bound with the same weights (different noise): close, not equal.
    ours, theirs = result["iwae_bounds"]["tinyvae"], result["iwae_bounds"]["foreach"]
    assert 100 < ours < 1000 and abs(ours - theirs) < 0.03 * ours
    assert set(result["targets_met"]) == {"epoch <= 1.0x PyTorch fused, both batch sizes", "Adam step <= 0.1 ms",
                                          "IWAE <= 1.0x PyTorch", "launches per VAE step < 35 (stand-in count)"}
    assert 10 < result["launches_per_step"] < 100 and "counted on the CPU by the CuPy stand-in" in out
    assert not list(tmp_path.glob(".out.json.*"))  # written atomically, no temporary left behind
