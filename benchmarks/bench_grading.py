"""How long grading takes: one submission, and a batch (measured on --batch copies; 300 extrapolated or measured).

    nice -n 10 python benchmarks/bench_grading.py [--repeats 3] [--batch 20] [--sandbox auto|bwrap|none]

Prints medians of wall time. Grading one submission starts one student process per graded function (17), so the
time is mostly process start-up and imports (Python, NumPy, the student's tinyvae); the batch reuses the expected
values and runs --workers submissions at once. With --batch 300 the 300-submission figure is measured, otherwise
it is extrapolated linearly from the measured batch (the per-submission cost does not grow with the batch).
"""
import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinyvae.instructor import batch, grading, sandbox  # noqa: E402
from tinyvae.instructor.handout import make, paste_solution  # noqa: E402
from tinyvae.instructor.manifest import MANIFEST  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=20, help="submissions in the measured batch")
    parser.add_argument("--sandbox", default=None)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    mode = sandbox.mode(args.sandbox)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, sandbox {mode}, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        blank = make(tmp / "hw")
        solved = tmp / "solved"
        shutil.copytree(blank, solved)
        for e in MANIFEST:
            paste_solution(solved, e.id)
        rows = []
        for name, root in (("blank handout", blank), ("full solution", solved)):
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                report = grading.grade(root, seed=1, sandbox_mode=mode)
                times.append(time.perf_counter() - start)
            rows.append((name, statistics.median(times), min(times), report.score))
        print(f"\none submission ({len(MANIFEST)} functions, one process each), {args.repeats} runs")
        print(f"{'submission':<16}{'median s':>10}{'min s':>8}{'score':>7}")
        for name, med, low, score in rows:
            print(f"{name:<16}{med:>10.2f}{low:>8.2f}{score:>7}")

        subs = tmp / "subs"
        subs.mkdir()
        for i in range(args.batch):
            shutil.copytree(solved if i % 2 else blank, subs / f"student{i:03d}")
        start = time.perf_counter()
        summary = batch.grade_folder(subs, tmp / "grades", seed=1, sandbox_mode=mode, workers=args.workers)
        seconds = time.perf_counter() - start
        per = seconds / args.batch
        kind = "measured" if args.batch >= 300 else f"extrapolated from {args.batch}"
        print(f"\nbatch of {args.batch}: {seconds:.1f} s ({per:.2f} s per submission); {summary}")
        print(f"300 submissions: {per * 300 / 60:.1f} min ({kind})")


if __name__ == "__main__":
    main()
