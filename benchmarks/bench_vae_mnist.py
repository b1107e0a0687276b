"""The reference VAE on MNIST, trained by tinyvae and by PyTorch side by side, epochs interleaved.

    python benchmarks/bench_vae_mnist.py [--data ../shared/data/mnist] [--epochs 10] [--iwae-k 1000] [--no-torch]

Model 784-400-20-400-784, ReLU, Bernoulli logits, Adam(lr=1e-3), batch 128, float32, seed 0. Both models start
from the same weights (tinyvae's initialisation copied into torch.nn.Linear) and are trained on the same
minibatches in the same order with the same eps draws (PyTorch's are tinyvae's, made before its epoch starts and
handed in), so the two runs differ only in floating-point rounding. After each epoch both are scored on the test
set (t10k, never trained on) by one scorer, ``tinyvae.evaluate`` with the same eps for both (PyTorch's weights
loaded into a tinyvae VAE): the negative ELBO in nats per image, one z per image. At the end: the IWAE bound on
-log p(x) with k samples for both models, scored the same way, and the peak memory of a tinyvae training run
(measured in a fresh subprocess without torch).
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import machine
import tinyvae as tv
from tinyvae.iwae import iwae_bound, iwae_chunk_rows
from tinyvae.train import evaluate, fit


SEED, BATCH, LR = 0, 128, 1e-3


def tinyvae_draws(n, epoch, latent):
    """The permutation and the eps of each step that ``fit`` draws in epoch ``epoch``, in the order it draws them."""
    gen = tv.Generator((SEED, epoch))
    perm = tv.to_numpy(gen.permutation(n))
    eps = [tv.to_numpy(gen.standard_normal((min(n, i + BATCH) - i, latent), "float32")) for i in range(0, n, BATCH)]
    return perm, eps


def torch_epoch(twin, opt, x, perm, eps):
    """One epoch of the same minibatch steps in PyTorch; its seconds."""
    start = time.perf_counter()
    for step, i in enumerate(range(0, x.shape[0], BATCH)):
        xb = x[perm[i:i + BATCH]]
        opt.zero_grad()
        loss = twin.neg_elbo(xb, eps[step]).mean()
        loss.backward()
        opt.step()
        loss.item()  # tinyvae reads its loss every step (NaN check, progress bar): so does this loop
    return time.perf_counter() - start


def torch_self_scored(twin, x):
    """PyTorch's own figure for its model: its forward pass, its eps draws."""
    import torch

    torch.manual_seed(SEED)
    with torch.no_grad():
        return float(twin.neg_elbo(x).mean())


PEAK_RSS = ("import re, resource\n"
            "def peak_mb():\n"
            "    try:  # VmHWM is this process's own high-water mark; ru_maxrss may carry the parent's across exec\n"
            "        return int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024\n"
            "    except OSError:\n"
            "        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n")


def peak_memory(data_dir, epochs):
    """Run a tinyvae-only training in a fresh process: (its peak resident MB, the MB after importing tinyvae)."""
    train = (f"import tinyvae as tv\nfrom tinyvae.train import fit\nd = tv.datasets.load({str(data_dir)!r})\n"
             f"fit(tv.VAE(rng=0), d.x_train, {epochs}, x_val=d.x_test, progress=False)\n")
    run = lambda code: float(subprocess.run([sys.executable, "-c", code], check=True,  # noqa: E731
                                            capture_output=True, text=True).stdout.strip())
    return (run(PEAK_RSS + train + "print(peak_mb())"),
            run(PEAK_RSS + "import tinyvae\nprint(peak_mb())"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    machine.add_data_argument(parser)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--iwae-k", type=int, default=1000)
    parser.add_argument("--iwae-n", type=int, default=None, help="test images for the IWAE bound (default: all)")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()

    data = tv.datasets.load(args.data)
    print("\n".join(machine.describe()))
    print(f"data: {data.x_train.shape[0]} training images, {data.x_test.shape[0]} test images from {args.data}")
    model = tv.VAE(784, (400,), 20, rng=SEED)
    opt = tv.Adam(model.parameters(), lr=LR)
    twin = None
    if not args.no_torch:
        try:
            import torch

            from torch_vae import TorchVAE, torch_iwae_bound

            torch.manual_seed(SEED)
            twin = TorchVAE().copy_from(model)
            scorer = tv.VAE(784, (400,), 20, rng=SEED)  # holds PyTorch's weights whenever tinyvae scores its model
            topt = torch.optim.Adam(twin.parameters(), lr=LR)
            tx, tx_test = torch.from_numpy(data.x_train), torch.from_numpy(data.x_test)
            print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads")
        except ImportError:
            print("(torch is not installed: pip install -e '.[bench]' for the PyTorch columns)")

    rows = []
    print(f"{'epoch':>5} {'tinyvae -ELBO':>14} {'PyTorch -ELBO':>14} {'tinyvae s':>10} {'PyTorch s':>10}")
    for epoch in range(args.epochs):
        history = fit(model, data.x_train, 1, batch_size=BATCH, optimizer=opt, seed=SEED, start_epoch=epoch,
                      progress=False)
        ours = {"epoch": epoch + 1, "seconds": history.epoch_time[-1], "test": evaluate(model, data.x_test)["loss"]}
        if twin is not None:
            perm, eps = tinyvae_draws(data.x_train.shape[0], epoch, model.latent_dim)
            eps = [torch.from_numpy(e) for e in eps]
            ours["torch_seconds"] = torch_epoch(twin, topt, tx, torch.from_numpy(perm), eps)
            ours["torch_test"] = evaluate(twin.copy_to(scorer), data.x_test)["loss"]
        rows.append(ours)
        print(f"{epoch + 1:>5} {ours['test']:>14.2f} {ours.get('torch_test', float('nan')):>14.2f} "
              f"{ours['seconds']:>10.3f} {ours.get('torch_seconds', float('nan')):>10.3f}")

    summary = {"epochs": args.epochs, "final_test": rows[-1]["test"],
               "median_epoch_s": statistics.median(r["seconds"] for r in rows), "per_epoch": rows}
    if twin is not None:
        summary["torch_final_test"] = rows[-1]["torch_test"]
        summary["torch_self_scored"] = torch_self_scored(twin, tx_test)
        summary["torch_median_epoch_s"] = statistics.median(r["torch_seconds"] for r in rows)
        summary["final_gap"] = summary["final_test"] - summary["torch_final_test"]
        summary["epoch_time_ratio"] = summary["median_epoch_s"] / summary["torch_median_epoch_s"]
    print(f"\nfinal test -ELBO: tinyvae {summary['final_test']:.2f}"
          + (f", PyTorch {summary['torch_final_test']:.2f} (difference {summary['final_gap']:+.2f} nats); PyTorch "
             f"scoring its own model with its own eps: {summary['torch_self_scored']:.2f}" if twin is not None else ""))
    print(f"median epoch time: tinyvae {summary['median_epoch_s']:.3f} s"
          + (f", PyTorch {summary['torch_median_epoch_s']:.3f} s (ratio {summary['epoch_time_ratio']:.2f})"
             if twin is not None else ""))

    if args.iwae_k:
        x_iwae = data.x_test if args.iwae_n is None else data.x_test[:args.iwae_n]
        start = time.perf_counter()
        summary["iwae"] = iwae_bound(model, x_iwae, k=args.iwae_k)
        summary["iwae_seconds"] = time.perf_counter() - start
        line = (f"IWAE bound on -log p(x), k={args.iwae_k}, {x_iwae.shape[0]} test images: tinyvae "
                f"{summary['iwae']:.2f} ({summary['iwae_seconds']:.1f} s)")
        if twin is not None:
            summary["torch_iwae"] = iwae_bound(twin.copy_to(scorer), x_iwae, k=args.iwae_k)
            line += f", PyTorch's model {summary['torch_iwae']:.2f}"
            start = time.perf_counter()
            summary["torch_iwae_own"] = torch_iwae_bound(twin, torch.from_numpy(x_iwae), k=args.iwae_k,
                                                         rows=iwae_chunk_rows(model))
            summary["torch_iwae_seconds"] = time.perf_counter() - start
            summary["iwae_time_ratio"] = summary["iwae_seconds"] / summary["torch_iwae_seconds"]
            line += (f"; PyTorch computing the bound itself (torch_vae.torch_iwae_bound): "
                     f"{summary['torch_iwae_own']:.2f} ({summary['torch_iwae_seconds']:.1f} s, time ratio "
                     f"{summary['iwae_time_ratio']:.2f})")
        print(line)

    summary["peak_rss_mb"], summary["baseline_rss_mb"] = peak_memory(args.data, 1)
    print(f"peak memory of a tinyvae training run (1 epoch + validation, fresh process): "
          f"{summary['peak_rss_mb']:.0f} MB resident ({summary['baseline_rss_mb']:.0f} MB after importing tinyvae)")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
