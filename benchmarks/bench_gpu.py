"""tinyvae on CuPy against the same VAE in PyTorch CUDA, on one card, in one process.

    python benchmarks/bench_gpu.py [--data DIR] [--epochs 6] [--iwae-k 1000] [--json PATH]
    python benchmarks/bench_gpu.py --device cpu --smoke        # both halves on the CPU, tiny sizes (seconds)

The reference VAE 784-400-20-400-784 (652,824 parameters), float32, Adam(lr=1e-3), three trainers side by side:
tinyvae (``tv.fit`` with ``tv.Adam``: one fused kernel over the flat parameter buffer on CuPy), PyTorch eager with
``Adam(foreach=True)`` (its default on CUDA) and PyTorch with ``Adam(fused=True)``. Each starts from tinyvae's
initial weights. For batch 128 and batch 1024: one warm-up epoch each, then ``--epochs`` epochs taken in turn
(tinyvae, PyTorch, PyTorch fused), and the median epoch of each. tinyvae reads its losses as ``fit`` does on the
device (every 50 steps on CuPy, every step on the CPU); the PyTorch loops sum their loss on the device and read it
once per epoch. Then the step split (median milliseconds of forward + backward at each batch size, and of one Adam
step), and the IWAE bound with k samples on the test images, tinyvae's ``iwae_bound`` against the same bound in
plain PyTorch (``torch_vae.torch_iwae_bound``) with the same weights.

``--device cuda`` (the default) needs CuPy with a CUDA device and PyTorch built for CUDA, and refuses in one line,
naming what is missing, where either is absent. ``--device cpu`` runs the same code with NumPy and PyTorch on the
CPU, so that the script itself can be tested on any machine; its figures are CPU figures.
"""
import argparse
import json
import platform
import statistics
import sys
import time

import bench_step
import machine

import tinyvae as tv
from tinyvae.files import atomic_write
from tinyvae.optim import adam_reference
from tinyvae.iwae import iwae_bound, iwae_chunk_rows
from tinyvae.train import fit

SEED, LR, BATCHES = 0, 1e-3, (128, 1024)
SMOKE = {"n_train": 512, "n_test": 40, "epochs": 1, "repeats": 3, "iwae_k": 20, "iwae_repeats": 1}


def missing(device):
    """What this machine lacks for ``--device device``, in words (an empty list: nothing)."""
    lacks = []
    if device == "cuda":
        try:
            import cupy  # noqa: F401
        except ImportError:
            lacks.append("CuPy (pip install -e '.[gpu]', or cupy-cuda13x for CUDA 13)")
        else:
            try:
                tv.use("cupy")
            except tv.BackendUnavailable:
                lacks.append("a CUDA device that CuPy can use (CuPy is installed but finds none)")
            finally:
                tv.use("numpy")
    try:
        import torch
    except ImportError:
        lacks.append("PyTorch (pip install -e '.[bench]'" + (", a CUDA build)" if device == "cuda" else ")"))
    else:
        if device == "cuda" and not torch.cuda.is_available():
            lacks.append(f"PyTorch with CUDA (torch {torch.__version__} sees no CUDA device)")
    return lacks


def sync():
    """Wait for both libraries' queued device work (no-ops on the CPU)."""
    import torch

    tv.backend.synchronize()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def median_ms(fn, repeats):
    return bench_step.median_ms(fn, repeats, warmup=min(10, repeats), sync=sync)


def describe(device):
    """Lines naming the card (or CPU) and the library versions, and a dict of the same for --json."""
    import numpy
    import torch

    info = {"tinyvae": tv.__version__, "numpy": numpy.__version__, "torch": torch.__version__,
            "python": platform.python_version()}
    if device == "cuda":
        cp = tv.get_xp()
        name = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"]
        info.update(card=name.decode() if isinstance(name, bytes) else name, torch_card=torch.cuda.get_device_name(),
                    cupy=cp.__version__, cuda_runtime=cp.cuda.runtime.runtimeGetVersion(),
                    torch_cuda=torch.version.cuda)
        lines = [f"card: {info['card']} (PyTorch sees {info['torch_card']})",
                 f"tinyvae {info['tinyvae']}, NumPy {info['numpy']}, CuPy {info['cupy']} (CUDA runtime "
                 f"{info['cuda_runtime']}), PyTorch {info['torch']} (CUDA {info['torch_cuda']}), "
                 f"Python {info['python']}"]
    else:
        lines = machine.describe() + [f"tinyvae {info['tinyvae']}, PyTorch {info['torch']} "
                                      f"({torch.get_num_threads()} threads), on the CPU (--device cpu): no GPU"]
        info["card"] = machine.cpu()[0]
    return lines, info


def trainers(device):
    """Fresh (tinyvae model, its Adam) and the two PyTorch twins with their Adams, all from the same weights."""
    import torch
    from torch_vae import TorchVAE

    model = tv.VAE(784, (400,), 20, rng=SEED)
    opt = tv.Adam(model.parameters(), lr=LR)
    twins = {}
    for kind, kwargs in (("foreach", {"foreach": True}), ("fused", {"fused": True})):
        twin = TorchVAE().copy_from(model).to(device)
        twins[kind] = (twin, torch.optim.Adam(twin.parameters(), lr=LR, **kwargs))
    return (model, opt), twins


def torch_epoch(twin, opt, x, batch):
    """One epoch of minibatch steps in PyTorch, its loss summed on the device and read once; its seconds."""
    import torch

    n = x.shape[0]
    sync()
    start = time.perf_counter()
    perm = torch.randperm(n, device=x.device)
    total = torch.zeros((), device=x.device)
    for i in range(0, n, batch):
        xb = x[perm[i:i + batch]]
        opt.zero_grad()
        loss = twin.neg_elbo(xb).mean()
        loss.backward()
        opt.step()
        total += loss.detach() * xb.shape[0]
    float(total)
    sync()
    return time.perf_counter() - start


def epochs(x_dev, tx, batch, n_epochs, device):
    """Median seconds per epoch of the three trainers at one batch size (a warm-up epoch each, then in turn)."""
    (model, opt), twins = trainers(device)
    times = {"tinyvae": [], "foreach": [], "fused": []}
    for epoch in range(n_epochs + 1):
        history = fit(model, x_dev, 1, batch_size=batch, optimizer=opt, seed=SEED, start_epoch=epoch,
                      progress=False)
        seconds = {"tinyvae": history.epoch_time[-1]}
        for kind, (twin, topt) in twins.items():
            seconds[kind] = torch_epoch(twin, topt, tx, batch)
        if epoch > 0:  # epoch 0 is the warm-up: kernels compiled, memory pools filled
            for kind, s in seconds.items():
                times[kind].append(s)
    return {kind: statistics.median(t) for kind, t in times.items()}, model


def step_parts(x, device, repeats):
    """Median ms of forward + backward at each batch size, of one Adam step, and of Adam as the plain formula."""
    import torch

    (model, opt), twins = trainers(device)
    twin, _ = twins["foreach"]
    parts = {}
    rng = tv.Generator(SEED)
    for batch in BATCHES:
        xb, tb = tv.asarray(x[:batch]), torch.from_numpy(x[:batch]).to(device)

        def ours(xb=xb):
            model.zero_grad()
            model.loss(xb, rng=rng)
            model.backward()

        def theirs(tb=tb):
            twin.zero_grad()
            twin.neg_elbo(tb).mean().backward()

        parts[f"fwd+bwd {batch}"] = {"tinyvae": median_ms(ours, repeats), "foreach": median_ms(theirs, repeats)}
    (buf,) = opt.flat  # the gradients of the last batch are in place for the optimizer steps below
    m, v = tv.get_xp().zeros_like(buf.data), tv.get_xp().zeros_like(buf.data)
    parts["adam"] = {"tinyvae": median_ms(opt.step, repeats)}
    parts["adam plain"] = {"tinyvae": median_ms(lambda: adam_reference(buf.data, buf.grad, m, v, t=10), repeats)}
    for kind, (twin_k, topt) in twins.items():
        twin_k.zero_grad()
        twin_k.neg_elbo(tb).mean().backward()
        parts["adam"][kind] = median_ms(topt.step, repeats)
    return parts


def iwae(model, x_test, device, k, repeats):
    """Median seconds of the IWAE bound in tinyvae and in PyTorch (same weights), runs in turn; and the bounds."""
    import torch
    from torch_vae import TorchVAE, torch_iwae_bound

    twin = TorchVAE().copy_from(model).to(device)
    x_dev, tx = tv.asarray(x_test), torch.from_numpy(x_test).to(device)
    iwae_bound(model, x_dev[:4], k=k)  # warm-up: compile, fill the memory pools
    rows = iwae_chunk_rows(model)  # the same chunks for both: on CuPy, 256 MB of decoder output
    torch_iwae_bound(twin, tx[:4], k=k, rows=rows)
    times, bounds = {"tinyvae": [], "foreach": []}, {}
    for _ in range(repeats):
        for kind, run in (("tinyvae", lambda: iwae_bound(model, x_dev, k=k)),
                          ("foreach", lambda: torch_iwae_bound(twin, tx, k=k, rows=rows))):
            sync()
            start = time.perf_counter()
            bounds[kind] = run()
            sync()
            times[kind].append(time.perf_counter() - start)
    return {kind: statistics.median(t) for kind, t in times.items()}, bounds


def table(rows):
    """The printed table: each figure for tinyvae, PyTorch, PyTorch fused, and the two ratios."""
    ratio = lambda a, b: f"{a / b:.2f}" if a is not None and b else "-"  # noqa: E731
    cell = lambda v, fmt: format(v, fmt) if v is not None else "-"  # noqa: E731
    lines = [f"{'figure':<38} {'tinyvae':>9} {'PyTorch':>9} {'fused':>9} {'/PyTorch':>9} {'/fused':>7}"]
    for label, fmt, fig in rows:
        ours, foreach, fused = fig.get("tinyvae"), fig.get("foreach"), fig.get("fused")
        lines.append(f"{label:<38} {cell(ours, fmt):>9} {cell(foreach, fmt):>9} {cell(fused, fmt):>9} "
                     f"{ratio(ours, foreach):>9} {ratio(ours, fused):>7}")
    return lines


def targets(figures, launches):
    """The project's GPU targets, each with whether this run met it."""
    fused = [figures[f"epoch {b}"]["tinyvae"] / figures[f"epoch {b}"]["fused"] for b in BATCHES]
    return {"epoch <= 1.0x PyTorch fused, both batch sizes": max(fused) <= 1.0,
            "Adam step <= 0.1 ms": figures["adam"]["tinyvae"] <= 0.1,
            "IWAE <= 1.0x PyTorch": figures["iwae"]["tinyvae"] <= figures["iwae"]["foreach"],
            "launches per VAE step < 35 (stand-in count)": launches < 35}


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                        help="cuda: tinyvae on CuPy, PyTorch on CUDA (default); cpu: NumPy and PyTorch on the CPU")
    machine.add_data_argument(parser)
    parser.add_argument("--epochs", type=int, default=6, help="timed epochs after the warm-up (default 6)")
    parser.add_argument("--repeats", type=int, default=300, help="timed repeats of each step part (default 300)")
    parser.add_argument("--iwae-k", type=int, default=1000)
    parser.add_argument("--iwae-n", type=int, default=None, help="test images for the IWAE bound (default: all)")
    parser.add_argument("--iwae-repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check that the script runs (seconds)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def stand_in_launches():
    """The launches of one step of the reference VAE at batch 128, counted on the CPU by the CuPy stand-in
    (tinyvae.testing.fakecupy runs tinyvae's own CuPy code paths on NumPy and counts each kernel, ufunc, reduction,
    matmul and copy). Not a GPU measurement: the same count on any machine."""
    from tinyvae.testing import fakecupy

    undo = fakecupy.install(tv.backend)
    try:
        tv.use("cupy")
        return fakecupy.vae_step_launches(batch=128)
    finally:
        tv.use("numpy")
        undo()


def main(argv=None):
    args = parse(argv)
    lacks = missing(args.device)
    if lacks:
        print(f"bench_gpu.py: --device {args.device} needs {' and '.join(lacks)}; --device cpu runs both halves "
              "on the CPU", file=sys.stderr)
        return 2
    import torch

    launches = stand_in_launches()
    tv.use("cupy" if args.device == "cuda" else "numpy")
    tv.set_default_dtype("float32")
    lines, info = describe(args.device)
    print("\n".join(lines))
    size = SMOKE if args.smoke else {"n_train": None, "n_test": args.iwae_n, "epochs": args.epochs,
                                     "repeats": args.repeats, "iwae_k": args.iwae_k, "iwae_repeats": args.iwae_repeats}
    data = tv.datasets.load(args.data)
    x, x_test = data.x_train[:size["n_train"]], data.x_test[:size["n_test"]]
    print(f"data: {x.shape[0]} training images, {x_test.shape[0]} test images from {args.data}"
          + (" (--smoke: tiny sizes, the figures mean nothing)" if args.smoke else ""))
    x_dev, tx = tv.asarray(x), torch.from_numpy(x).to(args.device)
    figures = {}
    for batch in BATCHES:
        figures[f"epoch {batch}"], model = epochs(x_dev, tx, batch, size["epochs"], args.device)
    figures.update(step_parts(x, args.device, size["repeats"]))
    figures["iwae"], bounds = iwae(model, x_test, args.device, size["iwae_k"], size["iwae_repeats"])
    report(figures, bounds, info, args, size, x, x_test, launches)
    return 0


def report(figures, bounds, info, args, size, x, x_test, launches):
    """Print the table and the targets; write the JSON if asked."""
    k, n_test = size["iwae_k"], x_test.shape[0]
    print(f"\nmedians; epochs on {x.shape[0]} images after one warm-up epoch ({size['epochs']} timed), step parts "
          f"of {size['repeats']} repeats, IWAE of {size['iwae_repeats']} run(s)")
    rows = [(f"epoch, batch {b} (s)", ".3f", figures[f"epoch {b}"]) for b in BATCHES]
    rows += [(f"forward + backward, batch {b} (ms)", ".3f", figures[f"fwd+bwd {b}"]) for b in BATCHES]
    rows += [("Adam step (ms)", ".3f", figures["adam"]),
             ("Adam as the plain formula (ms)", ".3f", figures["adam plain"]),
             (f"IWAE k={k}, {n_test} test images (s)", ".2f", figures["iwae"])]
    print("\n".join(table(rows)))
    print(f"launches per VAE step (batch 128; counted on the CPU by the CuPy stand-in, tinyvae only): "
          f"{launches} (target < 35)")
    print(f"IWAE bound (nats, same weights, different noise): tinyvae {bounds['tinyvae']:.2f}, "
          f"PyTorch {bounds['foreach']:.2f}")
    met = targets(figures, launches)
    print("targets: " + "; ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in met.items())
          + (" (CPU figures: the targets are for the GPU)" if args.device == "cpu" else ""))
    if args.json:
        out = {"device": args.device, "smoke": args.smoke, "data": args.data, "n_train": x.shape[0],
               "n_test": n_test, "iwae_k": k, "versions": info, "figures": figures, "iwae_bounds": bounds,
               "launches_per_step": launches, "targets_met": met}
        with atomic_write(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
