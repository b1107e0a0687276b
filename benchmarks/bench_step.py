"""Time one training step of the 784-400-20-400-784 VAE at batch 128 in float32: forward+backward, then Adam.

    python benchmarks/bench_step.py [--repeats 300] [--backend numpy|cupy] [--no-torch]

Prints the median of each part for tinyvae, for Adam written as the plain formula (optim.adam_reference, the
"naive NumPy" update with a temporary per operation), and for the same model in PyTorch on the CPU when torch
is installed (pip install -e ".[bench]"), all measured in this one process, with ratios against PyTorch.
"""
import argparse
import statistics
import time

import machine
import tinyvae as tv
from tinyvae.optim import adam_reference


def median_ms(fn, repeats, warmup=20, sync=None):
    """Median milliseconds of fn() after ``warmup`` untimed calls; ``sync`` waits for queued device work (default:
    the active backend's), before the clock starts and before it stops."""
    sync = sync or tv.backend.synchronize
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def tinyvae_parts(x, repeats):
    model = tv.VAE(784, (400,), 20, rng=0)
    opt = tv.Adam(model.parameters(), lr=1e-3)
    xb, rng = tv.asarray(x, dtype="float32"), tv.Generator(0)

    def forward_backward():
        model.zero_grad()
        model.loss(xb, rng=rng)
        model.backward()

    forward_backward()
    params = model.parameters()
    m = [tv.get_xp().zeros_like(p.data) for p in params]
    v = [tv.get_xp().zeros_like(p.data) for p in params]

    def reference_adam():  # the same update, written as the formula with a new array per operation
        for i, p in enumerate(params):
            p.data, m[i], v[i] = adam_reference(p.data, p.grad, m[i], v[i], t=10)

    return {"forward+backward": median_ms(forward_backward, repeats), "Adam step": median_ms(opt.step, repeats),
            "Adam (plain formula)": median_ms(reference_adam, repeats)}


def torch_parts(x, repeats):
    import torch
    from torch_vae import TorchVAE

    torch.manual_seed(0)
    model = TorchVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xb = torch.from_numpy(x)

    def forward_backward():
        opt.zero_grad()
        model.neg_elbo(xb).mean().backward()

    forward_backward()
    return {"forward+backward": median_ms(forward_backward, repeats), "Adam step": median_ms(opt.step, repeats)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()
    tv.use(args.backend)
    print("\n".join(machine.describe()))
    x = tv.datasets.load("mnist-small").x_train[:128]
    ours = tinyvae_parts(x, args.repeats)
    theirs = {}
    if not args.no_torch:
        try:
            theirs = torch_parts(x, args.repeats)
        except ImportError:
            print("(torch is not installed: pip install -e '.[bench]' for the PyTorch column)")
    ours["step (fwd+bwd+Adam)"] = ours["forward+backward"] + ours["Adam step"]
    if theirs:
        theirs["step (fwd+bwd+Adam)"] = theirs["forward+backward"] + theirs["Adam step"]
    print(f"one training step, VAE 784-400-20-400-784, batch 128, float32, backend {args.backend}, "
          f"median of {args.repeats}")
    print(f"{'part':<22} {'tinyvae ms':>11} {'PyTorch ms':>11} {'tinyvae/PyTorch':>16}")
    for part, ms in ours.items():
        ref = theirs.get(part)
        ratio = f"{ms / ref:.2f}" if ref else "-"
        print(f"{part:<22} {ms:>11.3f} {ref if ref else float('nan'):>11.3f} {ratio:>16}")


if __name__ == "__main__":
    main()
