"""The IWAE bound's speed: tinyvae.iwae_bound against the same bound computed in plain PyTorch, in one process.

    python benchmarks/bench_iwae.py [--data DIR] [--n 200] [--k 1000] [--repeats 5]

Both compute the bound for the reference VAE 784-400-20-400-784 with the SAME weights (tinyvae's initialisation
copied into PyTorch; the time does not depend on the weights) on the first n test images, both in tinyvae's
chunks (``iwae_chunk_rows``: 5,349 (example, sample) rows on the CPU, 16 MB of decoder output). The runs
alternate, tinyvae then PyTorch, so a slower spell of a shared machine hits both; the table gives each run and
the medians.
"""
import argparse
import statistics
import time

import machine
import tinyvae as tv
from tinyvae.iwae import iwae_bound, iwae_chunk_rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    machine.add_data_argument(parser)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import torch  # the bench extra: pip install -e ".[bench]"
    from torch_vae import TorchVAE, torch_iwae_bound

    print("\n".join(machine.describe()))
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads")
    x = tv.datasets.load(args.data).x_test[:args.n]
    model = tv.VAE(rng=0)
    twin = TorchVAE().copy_from(model)
    tx = torch.from_numpy(x)
    rows = []
    print(f"IWAE bound, k={args.k}, {args.n} test images")
    print(f"{'run':>4} {'tinyvae s':>10} {'PyTorch s':>10} {'ratio':>6} {'tinyvae nats':>13} {'PyTorch nats':>13}")
    for run in range(args.repeats):
        start = time.perf_counter()
        ours = iwae_bound(model, x, k=args.k)
        mid = time.perf_counter()
        theirs = torch_iwae_bound(twin, tx, k=args.k, rows=iwae_chunk_rows(model))
        end = time.perf_counter()
        rows.append((mid - start, end - mid))
        print(f"{run + 1:>4} {mid - start:>10.3f} {end - mid:>10.3f} {(mid - start) / (end - mid):>6.2f} "
              f"{ours:>13.3f} {theirs:>13.3f}")
    a, b = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
    print(f"median: tinyvae {a:.3f} s, PyTorch {b:.3f} s, ratio {a / b:.2f} "
          f"(median of the per-run ratios {statistics.median(r[0] / r[1] for r in rows):.2f})")


if __name__ == "__main__":
    main()
