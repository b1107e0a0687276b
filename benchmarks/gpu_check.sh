#!/usr/bin/env bash
# The project's checks that need a GPU, in one script (about 9 minutes at most on one H200):
#   1. the test suite under CuPy (the tests marked gpu run only here; the CPU CI already runs it under numpy,
#      strict and the CuPy stand-in), with each test's duration and a per-test timeout,
#   2. benchmarks/bench_gpu.py in full: tinyvae on CuPy against PyTorch CUDA, the table and its ratios,
#   3. benchmarks/bench_cs236.py: a training step of each CS236 model on CuPy against PyTorch CUDA.
#
# Needs a CUDA GPU, CuPy and a CUDA build of PyTorch:
#     pip install -e ".[test,gpu,bench]"     (CUDA 13: pip install -e ".[test,bench]" cupy-cuda13x)
#     bash benchmarks/gpu_check.sh           (PYTHON=... picks the interpreter; python3 by default)
# Writes nvidia-smi.txt, pytest.txt, bench_gpu.txt, bench_gpu.json and bench_cs236.txt into $OUT if it is set,
# else into ./gpu_check_out. Exits non-zero if any of the three failed (each still runs if another fails).
set -u
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # this checkout's tinyvae, installed or not
export MPLBACKEND=Agg
python="${PYTHON:-python3}"

{ date -u; nvidia-smi 2>&1 || echo "(nvidia-smi not found)"; } > "$out/nvidia-smi.txt"

# A per-test limit where pytest-timeout is installed (a hung kernel then fails one test, not the whole run).
per_test=()
if "$python" -c "import pytest_timeout" 2>/dev/null; then
    per_test=(-p timeout --timeout 120)
fi
# -p no:xdist: the suite's parametrized ids include a gzip header with a timestamp, which xdist's workers
# would collect differently.
timeout 330 "$python" -m pytest --backends cupy -q -p no:cacheprovider -p no:xdist -rfEs --durations=25 \
    "${per_test[@]}" 2>&1 | tee "$out/pytest.txt"
tests=${PIPESTATUS[0]}

timeout 150 "$python" benchmarks/bench_gpu.py --epochs 4 --iwae-repeats 2 --json "$out/bench_gpu.json" 2>&1 | tee "$out/bench_gpu.txt"
bench=${PIPESTATUS[0]}

timeout 120 "$python" benchmarks/bench_cs236.py --backend cupy --no-plain --steps 40 --repeats 3 2>&1 | tee "$out/bench_cs236.txt"
cs236=${PIPESTATUS[0]}

echo "gpu_check: pytest exit $tests, bench_gpu exit $bench, bench_cs236 exit $cs236 (124: stopped by the time limit);" \
     "outputs in $out"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ] && [ "$cs236" -eq 0 ]
